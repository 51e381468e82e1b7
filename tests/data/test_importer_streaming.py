"""The DeepFashion importer streams: a stand-in tree from ``benchmarks/deepfashion.py`` imports into the
manifest an in-memory import would write (same bytes in one row group, same table in several), the
listings are joined line by line with their order checked, and images are copied in bounded batches.
Peak memory and time at DeepFashion's size are measured by ``benchmarks/deepfashion.py``."""

from __future__ import annotations

import io
import json
import uuid

import pandas as pd
import pyarrow.parquet as pq
import pytest

from amnet.data import importers
from amnet.data.importers import import_deepfashion
from amnet.data.validate import validate_dataset
from amnet.errors import DatasetError
from tests.helpers import load_benchmark

ROWS = 2_000


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("deepfashion")


@pytest.fixture(scope="module")
def tree(bench, tmp_path_factory):
    """A 2,000-image stand-in in the DeepFashion layout (the benchmark's own generator)."""
    root = tmp_path_factory.mktemp("deepfashion") / "tree"
    bench.write_tree(root, ROWS, unique=12)
    return root


def expected_manifest(bench, n: int) -> pd.DataFrame:
    """The manifest computed straight from the generator's labels, not from its listing files."""
    labels = bench.draw_labels(n, seed=0)
    names = [f"img/Item_{i // 50:06d}/img_{i % 50 + 1:08d}.jpg" for i in range(n)]
    held_out = n * 40_000 // bench.PAPER_ROWS
    partition = ["train"] * (n - 2 * held_out) + ["val", "test"] * held_out
    columns = {"image_id": names, "image": names, "category": [f"Category_{c:02d}" for c in labels[:, 0]]}
    for t, (kind, _) in bench.TYPES.items():
        columns[kind] = [f"{kind} {v:03d}" if v >= 0 else "" for v in labels[:, t]]
    columns["partition"] = partition
    return pd.DataFrame(columns)


def test_stand_in_imports_to_the_in_memory_manifest_byte_for_byte(bench, tree, tmp_path):
    out = tmp_path / "out"
    summary = import_deepfashion(str(tree), str(out), progress=False)
    expected = expected_manifest(bench, ROWS)
    assert summary["rows"] == ROWS and summary["copied"] == ROWS and summary["dropped_attributes"] == []

    buf = io.BytesIO()
    expected.to_parquet(buf, index=False)  # what a whole-table write gives; the stand-in fits one row group
    assert (out / "manifest.parquet").read_bytes() == buf.getvalue()

    vocab = json.loads((out / "attributes.json").read_text())["attributes"]
    assert [a["name"] for a in vocab] == ["category", "texture", "fabric", "shape", "part", "style"]
    for attribute in vocab:  # observed values only, in the listing's order (zero-padded numbers sort)
        assert attribute["values"] == sorted(set(expected[attribute["name"]]) - {""})
    assert (out / expected["image"][123]).read_bytes() == (tree / expected["image"][123]).read_bytes()


def test_row_groups_join_into_the_same_table(bench, tree, tmp_path, monkeypatch):
    monkeypatch.setattr(importers, "CHUNK_ROWS", 300)  # 2,000 rows: six full row groups and a partial one
    out = tmp_path / "out"
    import_deepfashion(str(tree), str(out), progress=False)
    assert pq.ParquetFile(out / "manifest.parquet").num_row_groups == 7
    pd.testing.assert_frame_equal(pd.read_parquet(out / "manifest.parquet"), expected_manifest(bench, ROWS))
    result = validate_dataset(str(out), progress=False)
    assert len(result.kept) == ROWS and result.quarantine.empty


def copy_tree(tree, tmp_path):
    """A copy of the listings that links to the tree's images (the listings are what the cases edit)."""
    root = tmp_path / "tree"
    (root / "Anno").mkdir(parents=True)
    (root / "Eval").mkdir()
    for rel in importers.DEEPFASHION_FILES.values():
        (root / rel).write_bytes((tree / rel).read_bytes())
    (root / "img").symlink_to(tree / "img")
    return root


def test_listings_out_of_order_name_the_file_and_line(tree, tmp_path):
    root = copy_tree(tree, tmp_path)
    path = root / "Anno" / "list_attr_img.txt"
    lines = path.read_text().splitlines(keepends=True)
    lines[500], lines[501] = lines[501], lines[500]  # file lines 501 and 502: rows 498 and 499
    path.write_text("".join(lines))
    with pytest.raises(DatasetError, match=r"list_attr_img.txt:501: names 'img/Item_000009/img_00000050.jpg' "
                                           r"where .*list_category_img.txt:501 names 'img/Item_000009/img_00000049.jpg'"
                                           "; the per-image listings must name the same images in the same order"):
        import_deepfashion(str(root), str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_a_listing_that_ends_early_is_named(tree, tmp_path):
    root = copy_tree(tree, tmp_path)
    path = root / "Eval" / "list_eval_partition.txt"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(f"{ROWS - 1}\n" + "".join(lines[1:-1]))  # one image short, with a matching count
    with pytest.raises(DatasetError, match=r"list_eval_partition.txt: ends before .*list_category_img.txt:2002 "
                                           r"\('img/Item_000039/img_00000050.jpg'\)"):
        import_deepfashion(str(root), str(tmp_path / "out"), progress=False)


def test_a_name_listed_twice_stays_a_row_for_validation_to_quarantine(tmp_path):
    """Each listing line is one row, so nothing is dropped silently; validation keeps the first."""
    from tests.data.test_importers import IMAGES, fake_deepfashion

    root = fake_deepfashion(tmp_path / "df", images=[*IMAGES, IMAGES[1]])
    summary = import_deepfashion(root, str(tmp_path / "out"), progress=False)
    assert summary["rows"] == 5
    result = validate_dataset(str(tmp_path / "out"), progress=False)
    assert len(result.kept) == 4 and result.quarantine["reason"].tolist() == ["duplicate image_id"]


def test_image_copies_run_in_bounded_batches(monkeypatch):
    """The copy jobs are a stream: job i is pulled once all but the two batches before it are copied."""
    monkeypatch.setattr(importers, "COPY_BATCH", 8)
    done: list[int] = []
    monkeypatch.setattr(importers, "_copy_one", lambda job: done.append(job[0]) or "copied")

    def jobs():
        for i in range(1_000):
            assert len(done) >= i - 2 * 8, f"job {i} pulled with only {len(done)} copies done"
            yield i, i

    counts = importers._copy_images(jobs(), 1_000, progress=False)
    assert counts["copied"] == 1_000 and sorted(done) == list(range(1_000))


def test_an_s3_tree_streams_into_the_same_dataset(s3_env, tmp_path, monkeypatch):
    """Listings read from S3 in pieces that split lines, CRLF pairs and a UTF-8 character give the
    dataset a local read gives."""
    from amnet import storage
    from tests.data.test_importers import IMAGES, fake_deepfashion

    renamed = [(name.replace("Blouse_A", "Blusé A"), *rest) for name, *rest in IMAGES]
    local = tmp_path / "df"
    fake_deepfashion(local, images=renamed)
    listing = local / "Anno" / "list_attr_img.txt"
    listing.write_bytes(listing.read_bytes().replace(b"\n", b"\r\n"))
    prefix = f"s3://{s3_env.bucket}/importer-tests/{uuid.uuid4().hex}"
    for path in local.rglob("*"):
        if path.is_file():
            storage.write_bytes(f"{prefix}/{path.relative_to(local).as_posix()}", path.read_bytes())

    monkeypatch.setattr(importers, "S3_CHUNK_BYTES", 7)
    import_deepfashion(str(local), str(tmp_path / "from-local"), progress=False)
    summary = import_deepfashion(prefix, str(tmp_path / "from-s3"), progress=False)
    assert summary["rows"] == 4 and summary["copied"] == 4
    for name in ("manifest.parquet", "attributes.json", "img/Blusé A/img_00000002.jpg"):
        assert (tmp_path / "from-s3" / name).read_bytes() == (tmp_path / "from-local" / name).read_bytes()
