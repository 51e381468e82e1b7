"""The dataset fingerprint (``amnet.data.fingerprint``): what changes it, what does not, local and S3, and
where it is recorded (split.json, model.pt, the split's row check)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from amnet import storage
from amnet.cli import main
from amnet.data.fingerprint import fingerprint_dataset
from amnet.errors import DatasetError
from amnet.model_store import load_payload
from amnet.names import TAG_DATASET_DIGEST
from tests.helpers import tiny_dataset


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A fresh copy of a tiny rendered dataset (tests change it)."""
    src = Path(tiny_dataset(tmp_path.parent / "fingerprint-src", num_images=60, image_size=32))
    dst = tmp_path / "ds"
    shutil.copytree(src, dst)
    return dst


def drop_rows(dataset: Path | str, n: int) -> None:
    """Remove the last ``n`` manifest rows in place (same URI: a catalogue update)."""
    uri = storage.join(str(dataset), "manifest.parquet")
    df = pd.read_parquet(io.BytesIO(storage.read_bytes(uri)))
    buf = io.BytesIO()
    df.iloc[: len(df) - n].to_parquet(buf, index=False)
    storage.write_bytes(uri, buf.getvalue())


def test_same_data_same_digest_wherever_it_lives(dataset, tmp_path):
    fp = fingerprint_dataset(str(dataset))
    assert (fp.rows, fp.images, fp.missing, fp.method) == (60, 60, 0, "sha256")
    assert len(fp.digest) == 64 and fp.image_bytes > 0
    assert fingerprint_dataset(str(dataset)).digest == fp.digest
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(dataset, copy)
    assert fingerprint_dataset(str(copy)).digest == fp.digest  # the location is not part of the data


def test_rows_images_and_vocabulary_each_change_the_digest(dataset):
    before = fingerprint_dataset(str(dataset))
    image = dataset / pd.read_parquet(dataset / "manifest.parquet")["image"].iloc[3]
    data = bytearray(image.read_bytes())
    data[-3] ^= 0xFF  # same size, other content
    image.write_bytes(bytes(data))
    changed_image = fingerprint_dataset(str(dataset))
    assert changed_image.digest != before.digest and changed_image.rows == 60

    drop_rows(dataset, 5)
    fewer = fingerprint_dataset(str(dataset))
    assert fewer.rows == 55 and fewer.digest not in (before.digest, changed_image.digest)

    attributes = dataset / "attributes.json"
    attributes.write_text(json.dumps(json.loads(attributes.read_text())) + "\n\n")
    assert fingerprint_dataset(str(dataset)).digest != fewer.digest


def test_missing_and_escaping_images_are_counted_not_fatal(dataset):
    df = pd.read_parquet(dataset / "manifest.parquet")
    (dataset / df["image"].iloc[0]).unlink()
    df.loc[1, "image"] = "../outside.jpg"
    df.to_parquet(dataset / "manifest.parquet", index=False)
    fp = fingerprint_dataset(str(dataset))
    assert (fp.rows, fp.images, fp.missing) == (60, 58, 2)


def test_a_folder_that_is_not_a_dataset_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(DatasetError, match="no manifest.parquet"):
        fingerprint_dataset(str(tmp_path))
    assert main(["step", "fingerprint", str(tmp_path / "nope")]) == 3
    err = capsys.readouterr().err
    assert err.startswith("amnet step fingerprint: error: ") and "nope" in err and "Traceback" not in err


def test_cli_prints_and_writes_the_fingerprint(dataset, tmp_path, capsys):
    out = tmp_path / "fp.json"
    assert main(["step", "fingerprint", str(dataset), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    assert printed.startswith(written["digest"]) and written["rows"] == 60


def test_s3_dataset_is_fingerprinted_by_etag(s3_env):
    from amnet.data.synth import generate

    dataset = f"s3://{s3_env.bucket}/fingerprint/ds"
    generate(dataset, num_images=40, seed=3, image_size=32, progress=False)
    fp = fingerprint_dataset(dataset)
    assert (fp.rows, fp.images, fp.missing, fp.method) == (40, 40, 0, "etag")
    assert fingerprint_dataset(dataset + "/").digest == fp.digest
    # one image object rewritten with other bytes: its ETag changes, so does the digest
    manifest = pd.read_parquet(io.BytesIO(storage.read_bytes(f"{dataset}/manifest.parquet")))
    key = f"{dataset}/{manifest['image'].iloc[0]}"
    storage.write_bytes(key, storage.read_bytes(key) + b"\0")
    changed = fingerprint_dataset(dataset)
    assert changed.digest != fp.digest
    drop_rows(dataset, 4)
    assert fingerprint_dataset(dataset).rows == 36


def test_split_records_the_digest_and_refuses_a_changed_row_count(dataset, tmp_path):
    from amnet.steps import split

    config = {"per_value": 2, "gallery_size": 15, "num_queries": 3, "shard_size": 20}
    fp = fingerprint_dataset(str(dataset))
    summary = split.run_step(str(dataset), str(tmp_path / "split"), config, progress=False)  # computes its own
    recorded = json.loads((tmp_path / "split" / "split.json").read_text())
    assert recorded["dataset_digest"] == summary["dataset_digest"] == fp.digest and recorded["rows_in"] == 60
    with pytest.raises(DatasetError, match="the dataset changed while the pipeline ran"):
        split.run_step(str(dataset), str(tmp_path / "split2"), config, progress=False, dataset_digest=fp.digest,
                       dataset_rows=61)


def test_every_model_records_the_digest_of_its_data(trained_chain):
    digest = json.loads((trained_chain.split / "split.json").read_text())["dataset_digest"]
    assert digest == fingerprint_dataset(str(trained_chain.dataset)).digest
    for model in (trained_chain.attr, trained_chain.model):
        assert load_payload(str(model / "model.pt"))["extra"][TAG_DATASET_DIGEST] == digest
