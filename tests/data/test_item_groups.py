"""Variant groups (manifest ``item_id``): validation, the CSV importer's --item-column, and the split's
exact-target queries (query and target from one group, target in the gallery, decoys, whole groups
reserved). Tiny hand-made datasets: one shared 8 px JPEG (the split depends on labels and order only)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from amnet import cli
from amnet import config as cfgmod
from amnet.config import SplitConfig
from amnet.data import importers, shards, validate
from amnet.data.schema import Attribute, Vocabulary, write_dataset
from amnet.data.split import label_matrix, plan_split, run_split, variant_groups
from amnet.errors import ConfigError, DatasetError
from amnet.names import MISSING
from amnet.steps import split as split_step

VOCAB = Vocabulary((Attribute("color", ("red", "green", "blue", "black")),
                    Attribute("sleeve", ("short", "long", "none")),
                    Attribute("pattern", ("plain", "stripe", "dot"))))
NAMES = VOCAB.names
CFG = SplitConfig(per_value=4, gallery_size=120, num_queries=10, num_val_queries=5, shard_size=64, seed=5)


def jpeg(color=(10, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "JPEG")
    return buf.getvalue()


def write(root: Path, rows: list[dict], item_column=True) -> str:
    """A dataset of ``rows`` ({image_id, labels: (codes, -1 = missing), item_id}) sharing one image."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images" / "one.jpg").write_bytes(jpeg())
    frame = {"image_id": [r["image_id"] for r in rows], "image": ["images/one.jpg"] * len(rows)}
    for m, attr in enumerate(VOCAB.attributes):
        frame[attr.name] = [attr.values[r["labels"][m]] if r["labels"][m] != MISSING else "" for r in rows]
    if item_column:
        frame["item_id"] = [r.get("item_id") for r in rows]
    write_dataset(str(root), pd.DataFrame(frame), VOCAB)
    return str(root)


def grouped_rows(num_groups=40, loose=400, seed=0, broken=5) -> list[dict]:
    """``num_groups`` items of 3 variants (base, one attribute changed, two changed: pairs at distance
    1 and 2), the first ``broken`` with a missing label on the two-change variant, and ``loose`` rows
    without a group ('' or null)."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(num_groups):
        base = [int(rng.integers(s)) for s in VOCAB.sizes]
        a, b = rng.choice(3, size=2, replace=False)
        one = list(base)
        one[a] = (one[a] + 1) % VOCAB.sizes[a]
        two = list(one)
        two[b] = (two[b] + 1) % VOCAB.sizes[b]
        if g < broken:
            two[b] = MISSING
        for v, labels in enumerate((base, one, two)):
            rows.append({"image_id": f"g{g:03d}-v{v}", "labels": labels, "item_id": f"item{g:03d}"})
    for i in range(loose):
        rows.append({"image_id": f"loose{i:04d}", "labels": [int(rng.integers(s)) for s in VOCAB.sizes],
                     "item_id": None if i % 2 else ""})
    order = rng.permutation(len(rows))  # groups not contiguous in the manifest
    return [rows[i] for i in order]


# ---------------------------------------------------------------- validation


def test_string_item_ids_group_rows_and_empty_is_no_group(tmp_path):
    rows = [{"image_id": "a", "labels": [0, 0, 0], "item_id": "x"},
            {"image_id": "b", "labels": [1, 0, 0], "item_id": " x "},  # stripped: same group
            {"image_id": "c", "labels": [2, 0, 0], "item_id": "alone"},  # alone: kept
            {"image_id": "d", "labels": [3, 0, 0], "item_id": ""},
            {"image_id": "e", "labels": [0, 1, 0], "item_id": None}]
    result = validate.validate_dataset(write(tmp_path / "ds", rows), progress=False)
    assert result.rows_in == 5 and result.num_kept == 5 and result.num_quarantined == 0
    assert result.groups.tolist() == [0, 0, 1, -1, -1]
    assert validate.group_stats(result.groups) == {"item_groups": 2, "grouped_rows": 3, "multi_groups": 1}
    assert "item groups          2  (1 with 2+ variants, 3 kept rows in a group)" in validate.summary_table(result)


def test_non_string_item_ids_are_quarantined_with_a_reason(tmp_path, capsys):
    ds = tmp_path / "ds"
    write(ds, [{"image_id": f"r{i}", "labels": [i % 4, 0, 0]} for i in range(4)], item_column=False)
    manifest = pd.read_parquet(ds / "manifest.parquet")
    manifest["item_id"] = pd.array([7, None, 7, 8], dtype="Int64")  # numbers are not cast to strings
    manifest.to_parquet(ds / "manifest.parquet", index=False)
    result = validate.validate_dataset(str(ds), progress=False)
    assert result.rows_in == result.num_kept + result.num_quarantined == 4
    assert list(result.kept["image_id"]) == ["r1"] and result.groups.tolist() == [-1]
    assert result.quarantine["row"].tolist() == [0, 2, 3]
    assert result.quarantine["reason"].tolist()[0] == "item_id is not a string (got int '7')"
    assert result.reason_counts() == {"item_id is not a string": 3}
    assert validate.main([str(ds), "--no-progress", "--max-quarantine-fraction", "1"]) == 0
    assert "item_id is not a string" in capsys.readouterr().out


def test_without_item_id_nothing_changes(tmp_path):
    result = validate.validate_dataset(write(tmp_path / "ds", [{"image_id": "a", "labels": [0, 0, 0]}],
                                             item_column=False), progress=False)
    assert result.groups is None and "item groups" not in validate.summary_table(result)
    assert list(result.kept.columns) == validate.KEPT_COLUMNS


# ---------------------------------------------------------------- CSV importer


def fake_csv(tmp_path: Path, rows: list[dict]) -> tuple[str, str]:
    root = tmp_path / "photos"
    root.mkdir()
    for r in rows:
        (root / r["file"]).write_bytes(jpeg())
    csv = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return str(csv), str(root)


CSV_ROWS = [{"file": "a.jpg", "sku": "S1", "color": "red", "sleeve": "long"},
            {"file": "b.jpg", "sku": "S1", "color": "blue", "sleeve": "long"},
            {"file": "c.jpg", "sku": "", "color": "red", "sleeve": "short"}]


def test_csv_item_column_becomes_item_id(tmp_path):
    csv, root = fake_csv(tmp_path, CSV_ROWS)
    out = str(tmp_path / "out")
    assert cli.main(["data", "import", "csv", "--csv", csv, "--image-column", "file", "--root", root,
                     "--out", out, "--item-column", "sku", "--no-progress"]) == 0
    manifest = pd.read_parquet(Path(out) / "manifest.parquet")
    assert manifest["item_id"].tolist() == ["S1", "S1", ""]
    assert "sku" not in manifest.columns  # not an attribute
    result = validate.validate_dataset(out, progress=False)
    assert result.num_quarantined == 0 and result.groups.tolist() == [0, 0, -1]


def test_csv_item_id_column_and_errors(tmp_path):
    rows = [{**{k: v for k, v in r.items() if k != "sku"}, "item_id": r["sku"]} for r in CSV_ROWS]
    csv, root = fake_csv(tmp_path, rows)
    summary = importers.import_csv(csv, "file", root, str(tmp_path / "out"), progress=False)
    assert summary["attributes"] == {"color": 2, "sleeve": 2}  # item_id is not an attribute
    assert pd.read_parquet(tmp_path / "out" / "manifest.parquet")["item_id"].tolist() == ["S1", "S1", ""]
    with pytest.raises(DatasetError, match="no item column 'sku'"):
        importers.import_csv(csv, "file", root, str(tmp_path / "out2"), item_column="sku")
    with pytest.raises(DatasetError, match="item column; it cannot also be an attribute"):
        importers.import_csv(csv, "file", root, str(tmp_path / "out2"), attributes=["color"], item_column="color")


def test_csv_without_item_column_has_no_item_id(tmp_path):
    csv, root = fake_csv(tmp_path, [{k: v for k, v in r.items() if k != "sku"} for r in CSV_ROWS])
    importers.import_csv(csv, "file", root, str(tmp_path / "out"), progress=False)
    assert "item_id" not in pd.read_parquet(tmp_path / "out" / "manifest.parquet").columns


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("bad", [-1, 2.5, "x", None])
def test_decoys_per_query_is_strict(bad):
    assert cfgmod.from_dict(SplitConfig, {}).decoys_per_query == 2
    assert cfgmod.from_dict(SplitConfig, {"decoys_per_query": 0}).decoys_per_query == 0
    with pytest.raises(ConfigError, match="decoys_per_query"):
        cfgmod.from_dict(SplitConfig, {"decoys_per_query": bad})


def test_decoys_flag_overrides_the_config():
    args = split_step.build_parser().parse_args(["ds", "--out", "o", "--decoys-per-query", "0"])
    assert args.decoys_per_query == 0


# ---------------------------------------------------------------- grouped split


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    root = tmp_path_factory.mktemp("groups")
    rows = grouped_rows()
    dataset = write(root / "ds", rows)
    out = root / "split"
    summary = run_split(dataset, str(out), CFG, progress=False)
    return rows, out, summary


def read(out: Path, name: str) -> pd.DataFrame:
    return shards.read_shards(str(out / name))


@pytest.mark.parametrize("name", ["queries", "val_queries"])
def test_exact_target_queries(grouped, name):
    rows, out, _ = grouped
    item = {r["image_id"]: r["item_id"] for r in rows}
    labels = {r["image_id"]: list(r["labels"]) for r in rows}
    queries, gallery = read(out, name), read(out, "gallery")
    gallery_ids = set(gallery["image_id"])
    exact = queries[queries["target_id"].notna()]
    assert len(exact) == len(queries) > 0  # 40 groups are enough for every slot here
    for q, t, target, changed, n in zip(exact["image_id"], exact["target_id"], exact["target"], exact["changed"],
                                        exact["num_changes"], strict=True):
        assert t in gallery_ids and q not in gallery_ids
        assert item[q] == item[t] and item[q]
        assert list(target) == labels[t]
        assert MISSING not in labels[q] and MISSING not in labels[t]
        diff = np.flatnonzero(np.asarray(labels[q]) != np.asarray(labels[t]))
        assert list(diff) == sorted(changed) and len(diff) == n
    assert list(queries["num_changes"]) == sorted(queries["num_changes"])
    assert len(set(item[q] for q in queries["image_id"])) == len(queries)  # one query per group


def test_query_groups_are_reserved_whole(grouped):
    rows, out, summary = grouped
    item = {r["image_id"]: r["item_id"] for r in rows}
    ids = {name: list(read(out, name)["image_id"])
           for name in ("attr_train", "gallery", "queries", "val_queries", "triplet_pool")}
    query_groups = {item[i] for i in ids["queries"] + ids["val_queries"]}
    members = {r["image_id"] for r in rows if r["item_id"] in query_groups}
    assert not members & set(ids["attr_train"]) and not members & set(ids["triplet_pool"])
    assert members <= set(ids["gallery"]) | set(ids["queries"]) | set(ids["val_queries"])  # variants: gallery
    all_ids = [i for v in ids.values() for i in v]
    assert len(all_ids) == len(set(all_ids)) == summary["kept"] == len(rows)
    assert len(ids["gallery"]) == CFG.gallery_size
    assert summary["exact_target_queries"] == 20 and summary["exact_target_val_queries"] == 10
    assert summary["query_groups"] == 30 and summary["item_groups"] == 40
    assert summary["variant_groups"] == 40  # the broken groups still have two fully labelled members
    assert summary["config"]["decoys_per_query"] == 2


def test_decoys_carry_the_target_labels(grouped):
    rows, out, summary = grouped
    item = {r["image_id"]: r["item_id"] for r in rows}
    gallery = read(out, "gallery")
    queries = pd.concat([read(out, "queries"), read(out, "val_queries")])
    query_groups = {item[q] for q in queries["image_id"]}
    unrelated = gallery[[item[i] not in query_groups for i in gallery["image_id"]]]
    vectors = [tuple(v) for v in unrelated["labels"]]
    with_decoy = sum(tuple(t) in vectors for t in queries["target"])
    assert summary["decoys"] > 0 and with_decoy > 0  # 400 loose rows over 36 label vectors: plenty
    assert summary["decoys"] <= 2 * len(queries)


def test_grouped_split_is_deterministic(grouped):
    rows, _, _ = grouped
    labels = np.asarray([r["labels"] for r in rows], dtype=np.int16)
    codes = validate.group_codes([r["item_id"] or "" for r in rows])
    a, b = plan_split(labels, VOCAB, CFG, codes), plan_split(labels, VOCAB, CFG, codes)
    for name in a.sets():
        assert np.array_equal(a.sets()[name], b.sets()[name])
    assert np.array_equal(a.test.target_rows, b.test.target_rows) and np.array_equal(a.val.targets, b.val.targets)
    other = plan_split(labels, VOCAB, SplitConfig(**{**CFG.__dict__, "seed": 6}), codes)
    assert not np.array_equal(a.test.rows, other.test.rows)


def test_no_decoys_and_missing_labels_never_query(grouped):
    rows, _, _ = grouped
    labels = np.asarray([r["labels"] for r in rows], dtype=np.int16)
    codes = validate.group_codes([r["item_id"] or "" for r in rows])
    plan = plan_split(labels, VOCAB, SplitConfig(**{**CFG.__dict__, "decoys_per_query": 0}), codes)
    assert plan.groups["decoys"] == 0
    for qplan in plan.query_plans().values():
        exact = qplan.exact_targets()
        assert (exact >= 0).all()
        assert (labels[qplan.rows] != MISSING).all() and (labels[exact] != MISSING).all()
        assert np.isin(exact, plan.gallery).all() and not np.isin(qplan.rows, plan.gallery).any()


def test_too_few_groups_fill_with_label_vector_queries(tmp_path, caplog):
    rows = grouped_rows(num_groups=6, broken=0, loose=500, seed=1)
    out = tmp_path / "split"
    with caplog.at_level(logging.WARNING, logger="amnet.data.split"):
        summary = run_split(write(tmp_path / "ds", rows), str(out), CFG, progress=False)
    queries, val = read(out, "queries"), read(out, "val_queries")
    assert summary["queries_by_changes"] == {"1": 10, "2": 10}  # filled up
    assert summary["exact_target_queries"] == queries["target_id"].notna().sum() == 6
    assert summary["exact_target_val_queries"] == 0 and val["target_id"].isna().all()
    assert "label-vector queries (target_id null)" in caplog.text and "6 usable groups" in caplog.text
    gallery_vectors = {tuple(v) for v in label_matrix(read(out, "gallery")["labels"], 3)}
    for target in queries[queries["target_id"].isna()]["target"]:
        assert tuple(target) in gallery_vectors  # today's rule for label-vector queries


def test_groups_too_big_for_the_gallery_are_skipped(tmp_path):
    rows = grouped_rows(num_groups=20, broken=0, loose=400, seed=2)
    labels = np.asarray([r["labels"] for r in rows], dtype=np.int16)
    codes = validate.group_codes([r["item_id"] or "" for r in rows])
    plan = plan_split(labels, VOCAB, SplitConfig(**{**CFG.__dict__, "gallery_size": 20}), codes)
    # each group needs 4 places (2 variants + 2 decoys); each query set and number of changes gets its share
    # of the 20 by its queries (10, 10, 5, 5 of 30): 6, 6, 3, 3 places -> one group per test slot, none for val
    assert plan.groups["query_groups"] == 2
    assert len(plan.gallery) == 20


def test_empty_item_ids_give_todays_split(tmp_path):
    """item_id present but every cell empty: exactly the split of the same rows without the column."""
    rows = [dict(r, item_id="") for r in grouped_rows(num_groups=0, loose=500, seed=3)]
    with_col, without = tmp_path / "with", tmp_path / "without"
    run_split(write(tmp_path / "a", rows), str(with_col), CFG, progress=False)
    run_split(write(tmp_path / "b", rows, item_column=False), str(without), CFG, progress=False)
    for name in ("attr_train", "gallery", "queries", "val_queries", "triplet_pool"):
        a, b = read(with_col, name), read(without, name)
        assert list(a["image_id"]) == list(b["image_id"]), name
    q = read(without, "queries")
    assert q["target_id"].isna().all() and "target_id" in q.columns


def test_variant_groups_order_and_filter():
    labels = np.asarray([[0, 0, 0], [1, 0, 0], [0, 0, -1], [2, 0, 0], [0, 1, 0]], dtype=np.int16)
    codes = np.asarray([0, 0, 1, 1, -1], dtype=np.int64)
    groups = variant_groups(labels, codes, np.asarray([4, 1, 0, 3, 2]))
    assert [g.tolist() for g in groups] == [[1, 0]]  # group 1 has one fully labelled member


def test_shards_carry_each_rows_item_group(grouped):
    """Every set's rows keep their variant group as one code per item_id (-1: none), so training can draw
    a reference's own variant as its positive."""
    rows, out, _ = grouped
    item = {r["image_id"]: r["item_id"] or "" for r in rows}
    code_of: dict[str, int] = {}
    for name in ("attr_train", "gallery", "queries", "val_queries", "triplet_pool"):
        frame = read(out, name)
        for image, code in zip(frame["image_id"], frame["item_group"], strict=True):
            if not item[image]:
                assert code == -1, image
                continue
            assert code >= 0 and code_of.setdefault(item[image], int(code)) == code, image
    assert len(set(code_of.values())) == len(code_of)  # distinct items, distinct codes
