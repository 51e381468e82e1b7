"""Paper-protocol splits (§5.1): disjoint, deterministic, counts add up, query targets in the gallery."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amnet.config import SplitConfig
from amnet.data import shards
from amnet.data.split import label_matrix, run_split
from amnet.data.triplets import TripletSampler
from amnet.errors import DatasetError
from tests.helpers import tiny_dataset

CFG = SplitConfig(per_value=10, gallery_size=300, num_queries=40, shard_size=128, seed=3)


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("split")
    dataset = tiny_dataset(root)
    out = root / "split"
    run_split(dataset, str(out), CFG, progress=False)
    return dataset, out


def read(split_dir, name):
    return shards.read_shards(str(split_dir / name))


def test_sets_are_disjoint_and_counts_add_up(split_dir):
    _, out = split_dir
    summary = json.loads((out / "split.json").read_text())
    ids = {name: set(read(out, name)["image_id"])
           for name in ("attr_train", "gallery", "queries", "val_queries", "triplet_pool")}
    names = list(ids)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not ids[a] & ids[b], (a, b)
    assert summary["rows_in"] == summary["kept"] + summary["quarantined"]
    assert summary["kept"] == sum(len(v) for v in ids.values())
    assert len(ids["gallery"]) == CFG.gallery_size
    assert summary["val_queries_by_changes"] == summary["queries_by_changes"] == {"1": 40, "2": 40}
    assert len(list((out / "gallery").glob("part-*.parquet"))) == 3  # 300 rows / 128 per shard


@pytest.mark.parametrize("name", ["queries", "val_queries"])
def test_every_query_target_exists_exactly_in_gallery(split_dir, name):
    _, out = split_dir
    queries, gallery = read(out, name), read(out, "gallery")
    vectors = {tuple(v) for v in label_matrix(gallery["labels"], 6)}
    assert set(queries["num_changes"]) == {1, 2}
    assert list(queries["num_changes"]) == sorted(queries["num_changes"])  # one-attribute queries first
    for labels, target, changed, n in zip(queries["labels"], queries["target"], queries["changed"],
                                          queries["num_changes"], strict=True):
        assert tuple(target) in vectors
        diff = np.flatnonzero(np.asarray(labels) != np.asarray(target))
        assert list(diff) == sorted(changed) and len(diff) == n


def test_validation_queries_leave_the_other_sets_as_they_were():
    """Drawn after the test queries with the same generator: the attribute-CNN set, gallery and test
    queries (with their targets) are those of a split without validation queries; only the pool shrinks."""
    from amnet.data.split import plan_split
    from amnet.data.synth import VOCAB

    rng = np.random.default_rng(5)
    labels = np.stack([rng.integers(0, n, 3000) for n in VOCAB.sizes], 1).astype(np.int16)
    cfg = SplitConfig(per_value=10, gallery_size=800, num_queries=50, seed=4)
    with_val = plan_split(labels, VOCAB, cfg)
    without = plan_split(labels, VOCAB, SplitConfig(**{**cfg.__dict__, "num_val_queries": 0}))
    for name in ("attr_train", "gallery", "queries"):
        np.testing.assert_array_equal(with_val.sets()[name], without.sets()[name])
    np.testing.assert_array_equal(with_val.test.targets, without.test.targets)
    assert with_val.test.changed == without.test.changed and len(without.val.rows) == 0
    assert len(with_val.val.rows) == 100 and list(with_val.val.num_changes) == [1] * 50 + [2] * 50
    np.testing.assert_array_equal(np.sort(np.concatenate([with_val.triplet_pool, with_val.val.rows])),
                                  without.triplet_pool)
    again = plan_split(labels, VOCAB, cfg)  # deterministic
    np.testing.assert_array_equal(again.val.rows, with_val.val.rows)
    np.testing.assert_array_equal(again.val.targets, with_val.val.targets)
    fewer = plan_split(labels, VOCAB, SplitConfig(**{**cfg.__dict__, "num_val_queries": 10}))
    assert len(fewer.val.rows) == 20 and set(fewer.val.rows) <= set(with_val.val.rows) | set(without.triplet_pool)


def test_evaluation_reads_the_query_set_it_is_told(split_dir, tmp_path):
    from amnet.data.split import query_set

    _, out = split_dir
    assert query_set(str(out), "test").endswith("/queries") and query_set(str(out), "val").endswith("/val_queries")
    (tmp_path / "old").mkdir()  # a split made before validation queries
    with pytest.raises(DatasetError, match="no validation queries"):
        query_set(str(tmp_path / "old"), "val")


def test_split_is_deterministic(split_dir, tmp_path):
    dataset, out = split_dir
    again = tmp_path / "again"
    run_split(dataset, str(again), CFG, progress=False)
    for name in ("attr_train", "gallery", "queries", "val_queries", "triplet_pool"):
        a, b = read(out, name), read(again, name)
        assert list(a["image_id"]) == list(b["image_id"])
    for a, b in zip(read(out, "val_queries")["target"], read(again, "val_queries")["target"], strict=True):
        assert list(a) == list(b)


def test_too_few_images_is_a_clear_error(split_dir, tmp_path):
    dataset, _ = split_dir
    with pytest.raises(DatasetError, match="too few images"):
        run_split(dataset, str(tmp_path / "x"), SplitConfig(per_value=10, gallery_size=5000), progress=False)


def test_triplets_are_valid_and_deterministic(split_dir):
    _, out = split_dir
    labels = label_matrix(read(out, "triplet_pool")["labels"], 6)
    sampler = TripletSampler(labels, seed=1, two_change_fraction=0.5)
    a = list(sampler.batches(epoch=0, steps=3, batch_size=16))
    b = list(sampler.batches(epoch=0, steps=3, batch_size=16))
    c = list(sampler.batches(epoch=1, steps=3, batch_size=16))
    assert all((x.ref == y.ref).all() and (x.neg == y.neg).all() for x, y in zip(a, b, strict=True))
    assert any((x.ref != y.ref).any() for x, y in zip(a, c, strict=True))
    sizes = set()
    for batch in a:
        for i in range(16):
            assert (labels[batch.pos[i]] == batch.target[i]).all()  # pos has exactly the target
            assert (labels[batch.neg[i]] != batch.target[i]).any()  # neg differs from the target
            changed = np.flatnonzero(labels[batch.ref[i]] != batch.target[i])
            assert [m for m, _ in batch.changes[i]] == list(changed)
            sizes.add(len(changed))
    assert sizes <= {1, 2} and 1 in sizes


def test_sampler_neighbour_lists_equal_a_brute_force_scan():
    """The cached neighbour lists (vector -> vectors that can be its positive after n changes: known where it
    is known, n of those attributes different) are exactly what a scan over all vectors gives, in the same
    order, so caching cannot change which triplets a seed draws."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=(400, 4)).astype(np.int16)
    labels[rng.random(labels.shape) < 0.03] = -1
    sampler = TripletSampler(labels, seed=0)
    vectors = sampler.vectors
    for u, vec in enumerate(vectors):
        known = vec != -1
        for n in (1, 2):
            cover = (vectors[:, known] != -1).all(1)
            want = np.flatnonzero(cover & ((vectors[:, known] != vec[known]).sum(1) == n))
            np.testing.assert_array_equal(sampler._targets(u, n), want)
    for row in range(len(labels)):
        u = sampler.vector_of_row[row]
        assert (vectors[u] == labels[row]).all() and row in sampler.members[u]
    usable = [r for r in range(len(labels)) if len(sampler._targets(int(sampler.vector_of_row[r]), 1))]
    np.testing.assert_array_equal(sampler.refs, usable)
    assert any((labels[r] == -1).any() for r in usable)  # a partly labelled image can be a reference


def test_data_split_honours_its_config_file_and_flags_override_only_when_given(split_dir, tmp_path, capsys):
    """The bug this pins: every flag default used to override the file (per_value 200, gallery 2000)."""
    from amnet.cli import main

    dataset, _ = split_dir
    cfg_file = tmp_path / "split.yaml"
    cfg_file.write_text("per_value: 10\ngallery_size: 123\nnum_queries: 20\nshard_size: 64\nseed: 3\n")
    assert main(["data", "split", dataset, "--out", str(tmp_path / "a"), "--config", str(cfg_file),
                 "--no-progress"]) == 0
    summary = json.loads((tmp_path / "a" / "split.json").read_text())
    assert summary["gallery"] == 123 and summary["config"]["per_value"] == 10
    assert summary["config"]["num_queries"] == 20 and summary["config"]["shard_size"] == 64
    # a flag given wins over the file; the file's other keys stay
    assert main(["data", "split", dataset, "--out", str(tmp_path / "b"), "--config", str(cfg_file),
                 "--gallery-size", "150", "--quiet"]) == 0
    summary = json.loads((tmp_path / "b" / "split.json").read_text())
    assert summary["gallery"] == 150 and summary["config"]["num_queries"] == 20


def test_stage_commands_read_their_section_of_a_run_file(split_dir, tmp_path):
    """`amnet data split --config configs-style-run-file` uses the file's `split:` section."""
    from amnet.cli import main

    dataset, _ = split_dir
    run_file = tmp_path / "run.yaml"
    run_file.write_text("variants: [amnet]\nsplit: {per_value: 10, gallery_size: 111, num_queries: 20}\n"
                        "train: {epochs: 1}\n")
    assert main(["data", "split", dataset, "--out", str(tmp_path / "c"), "--config", str(run_file), "--quiet"]) == 0
    assert json.loads((tmp_path / "c" / "split.json").read_text())["gallery"] == 111
