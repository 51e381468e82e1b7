"""The streamed validate + split gives exactly the split the in-memory one gave.

The expected digests below were recorded by running the split as it was *before* the streaming change
(commit 2996a62: ``validate_dataset`` held every kept image in a DataFrame, ``split_frames`` sliced it)
on the same datasets and configs as these tests build: ``split_digest`` of its output. The digest covers
each set's ``image_id`` list in shard order, every query's target / changed / num_changes, and the
quarantine table's (row, image_id, reason). For the demo, the stand-in dataset has the demo's 8,000
rows, ids and labels (``synth.sample_labels`` per seed and index, as ``amnet data synth --num-images
8000 --seed 0`` draws them) but one shared tiny image: the split depends on labels and row order only
(the old code on the real rendered demo dataset, ``.amnet/.../synth-8000-64px-seed0``, gave the same
digest).

The split also writes ``val_queries`` (drawn after the test queries, from rows the
triplet pool held before). What must not change is checked against the same old digests:
``split_digest(out, legacy=True)`` puts the validation queries back into the triplet pool (in kept
order, i.e. manifest order), so ``attr_train``, ``gallery``, ``queries`` and the old pool must hash
exactly as the old code's output did. The new output as a whole (``val_queries`` with its targets,
the smaller pool) is pinned by ``*_NEW_DIGEST``, recorded with this code.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from amnet import storage
from amnet.config import SplitConfig
from amnet.data import shards, validate
from amnet.data.schema import write_dataset
from amnet.data.split import query_set, run_split
from amnet.data.synth import VOCAB, generate, image_rng, sample_labels
from amnet.errors import DatasetError

SMALL_CFG = SplitConfig(per_value=8, gallery_size=200, num_queries=30, shard_size=64, seed=11)
SMALL_DIGEST = "566c71bf175c0e8e0b49892f03e033fc1e168093e891b2b76444e9b30a1d353d"
DEMO_DIGEST = "0daf29f83652ecb70686216ebddfe7495548b763a401fb3564c06758c0ba78bb"  # SplitConfig() = demo.yaml
# with validation queries, recorded with this code: the old sets + val_queries, the smaller pool
SMALL_NEW_DIGEST = "29f274406097b9d1363aad3a1400a1c6b4b4ff96908326257c35896a53707400"
DEMO_NEW_DIGEST = "760abba14ca718080a8c2dd9e50c6463b7333339e226c4cc77d79f96064330be"


def small_dataset(root: Path) -> str:
    """700 rendered garments (seed 7, 32 px) with one row of each quarantine kind and missing labels."""
    ds = root / "ds"
    generate(str(ds), num_images=700, seed=7, image_size=32, progress=False)
    m = pd.read_parquet(ds / "manifest.parquet")
    m.loc[3, "image_id"] = m.loc[2, "image_id"]  # duplicate id
    m.loc[10, "image"] = "images/nope.jpg"  # missing file
    (ds / "bad.jpg").write_bytes(b"\xff\xd8\xffgarbage")
    m.loc[20, "image"] = "bad.jpg"  # undecodable
    m.loc[30, "color"] = "mauve"  # unknown value
    m.loc[40:60, "collar"] = ""  # missing labels
    m.to_parquet(ds / "manifest.parquet", index=False)
    return str(ds)


def demo_labels_dataset(root: Path, n: int = 8000, seed: int = 0) -> str:
    ds = root / "demo"
    (ds / "images").mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="JPEG")
    (ds / "images" / "one.jpg").write_bytes(buf.getvalue())
    rows = [{"image_id": f"synth{seed}-{i:07d}", "image": "images/one.jpg", **sample_labels(image_rng(seed, i))}
            for i in range(n)]
    write_dataset(str(ds), pd.DataFrame(rows, columns=["image_id", "image", *VOCAB.names]), VOCAB)
    return str(ds)


def _query_digest(h, df: pd.DataFrame) -> None:
    for t, c, n in zip(df["target"], df["changed"], df["num_changes"], strict=True):
        h.update(json.dumps([list(map(int, t)), list(map(int, c)), int(n)]).encode())


def split_digest(out: str, legacy: str | None = None) -> str:
    """The digest of every set the split writes now or, with ``legacy`` = the dataset the split was made
    from, the old code's digest: the validation queries counted back into the triplet pool, which held
    them in kept (= manifest) order."""
    h = hashlib.sha256()
    val = shards.read_shards(storage.join(out, "val_queries"))
    for name in ("attr_train", "gallery", "queries", "triplet_pool", *(() if legacy else ("val_queries",))):
        df = val if name == "val_queries" else shards.read_shards(storage.join(out, name))
        ids = list(df["image_id"])
        if legacy and name == "triplet_pool":
            manifest = shards.read_table(storage.join(legacy, "manifest.parquet"))["image_id"]
            pool = set(ids) | set(val["image_id"])
            ids = [i for i in dict.fromkeys(manifest) if i in pool]
        h.update(name.encode())
        h.update("\n".join(ids).encode())
        if name in ("queries", "val_queries"):
            _query_digest(h, df)
    q = shards.read_table(storage.join(out, "quarantine.parquet"))
    h.update(json.dumps(q[["row", "image_id", "reason"]].values.tolist(), default=str).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> str:
    return small_dataset(tmp_path_factory.mktemp("stream"))


def test_streamed_split_equals_the_old_one(small, tmp_path):
    summary = run_split(small, str(tmp_path / "split"), SMALL_CFG, progress=False)
    assert split_digest(str(tmp_path / "split"), legacy=small) == SMALL_DIGEST
    assert split_digest(str(tmp_path / "split")) == SMALL_NEW_DIGEST
    assert (summary["rows_in"], summary["quarantined"], summary["kept"]) == (700, 4, 696)
    sizes = (summary["attr_train"], summary["gallery"], summary["queries"], summary["val_queries"],
             summary["triplet_pool"])
    assert sizes == (107, 200, 60, 60, 269)  # the old pool of 329 gave its 60 validation queries
    # the shards carry each kept image's file bytes as read
    gallery = shards.read_shards(str(tmp_path / "split" / "gallery"))
    manifest = pd.read_parquet(Path(small) / "manifest.parquet").set_index("image_id")
    for image_id, data in zip(gallery["image_id"][:20], gallery["image_bytes"][:20], strict=True):
        assert data == (Path(small) / manifest.loc[image_id, "image"]).read_bytes()
    assert len(shards.list_shards(str(tmp_path / "split" / "gallery"))) == 4  # 200 rows / 64 per shard


def test_decode_processes_give_the_same_split(small, tmp_path, monkeypatch):
    """Chunks of 64 rows checked in 2 spawned processes: same outputs as in-process checking."""
    monkeypatch.setattr(validate, "CHUNK", 64)
    staged = validate.validate_to_staging(small, str(tmp_path / "stage"), progress=False, workers=2)
    assert staged.worker_peak_rss_mb > 0 and len(staged.parts) == 11  # 700 rows / 64, every chunk kept some
    run_split(small, str(tmp_path / "split"), SMALL_CFG, progress=False, workers=2)
    assert split_digest(str(tmp_path / "split")) == SMALL_NEW_DIGEST


def test_demo_split_is_unchanged(tmp_path):
    dataset = demo_labels_dataset(tmp_path)
    summary = run_split(dataset, str(tmp_path / "split"), SplitConfig(), progress=False)
    assert split_digest(str(tmp_path / "split"), legacy=dataset) == DEMO_DIGEST
    assert split_digest(str(tmp_path / "split")) == DEMO_NEW_DIGEST
    assert summary["gallery"] == 2000 and summary["queries"] == 600 and summary["val_queries"] == 600
    assert summary["triplet_pool"] == 2279  # was 2879: the 600 validation queries came out of it


def test_no_validation_queries_gives_the_old_split_exactly(small, tmp_path):
    """num_val_queries: 0 writes an empty val_queries set and leaves every other set as the old code did."""
    out = str(tmp_path / "split")
    summary = run_split(small, out, SplitConfig(**{**SMALL_CFG.__dict__, "num_val_queries": 0}), progress=False)
    assert summary["val_queries"] == 0 and summary["triplet_pool"] == 329
    assert len(shards.read_shards(storage.join(out, "val_queries"))) == 0
    assert split_digest(out, legacy=small) == SMALL_DIGEST
    with pytest.raises(DatasetError, match="no validation queries"):  # evaluate.queries: val says why
        query_set(out, "val")


def test_streamed_split_on_s3_equals_the_old_one(small, s3_env, tmp_path, monkeypatch):
    dataset = f"s3://{s3_env.bucket}/datasets/stream-small"
    for path in Path(small).rglob("*"):
        if path.is_file():
            storage.write_bytes(f"{dataset}/{path.relative_to(small).as_posix()}", path.read_bytes())
    out = f"s3://{s3_env.bucket}/splits/stream-small"
    run_split(dataset, out, SMALL_CFG, progress=False)
    assert split_digest(out) == SMALL_NEW_DIGEST
    # decode processes reading from S3 themselves (they get the caller's AWS_* settings)
    monkeypatch.setattr(validate, "CHUNK", 64)
    run_split(dataset, f"{out}-pool", SMALL_CFG, progress=False, workers=2)
    assert split_digest(f"{out}-pool") == SMALL_NEW_DIGEST


def test_a_rerun_with_bigger_shards_leaves_no_stale_shards(small, tmp_path):
    out = tmp_path / "split"
    run_split(small, str(out), SplitConfig(**{**SMALL_CFG.__dict__, "shard_size": 32}), progress=False)
    assert len(shards.list_shards(str(out / "gallery"))) == 7  # 200 / 32
    run_split(small, str(out), SMALL_CFG, progress=False)
    assert len(shards.list_shards(str(out / "gallery"))) == 4 and split_digest(str(out)) == SMALL_NEW_DIGEST
