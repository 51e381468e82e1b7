"""The index artifact built from feature shards (library side)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from amnet.data import shards
from amnet.errors import AmnetError
from amnet.names import FEATURES_JSON
from amnet.retrieval.feature_index import build_feature_index, load_feature_index
from amnet.retrieval.index import build_index


def feature_artifact(root, n: int, dim: int = 32, shard: int = 100, seed: int = 0) -> tuple[str, np.ndarray]:
    """A feature artifact as run_featurize writes it: fp16 vectors as bytes, shard by shard."""
    x = np.random.default_rng(seed).random((n, dim), dtype=np.float32).astype(np.float16)
    root.mkdir(parents=True, exist_ok=True)
    for s, start in enumerate(range(0, n, shard)):
        rows = range(start, min(start + shard, n))
        shards.write_table(str(root / shards.shard_name(s)), pd.DataFrame({
            "image_id": [f"g{i:05d}" for i in rows], "labels": [[0, 1]] * len(rows),
            "feature": [x[i].tobytes() for i in rows]}))
    (root / FEATURES_JSON).write_text(json.dumps({"dim": dim, "count": n, "dtype": "float16"}))
    return str(root), x.astype(np.float32)


def test_exact_index_artifact_matches_in_memory_search(tmp_path):
    features, x = feature_artifact(tmp_path / "f", 350)
    summary = build_feature_index(features, str(tmp_path / "idx"))
    assert (summary["kind"], summary["count"], summary["shards"], summary["recall_at_20"]) == ("exact", 350, 4, None)
    index, ids, meta = load_feature_index(str(tmp_path / "idx"))
    assert ids == [f"g{i:05d}" for i in range(350)] and meta["kind"] == "exact"
    q = x[:5] + 0.01
    np.testing.assert_array_equal(index.search(q, 10)[1], build_index(x).search(q, 10)[1])


def test_pq_index_is_trained_on_a_sample_and_records_its_recall(tmp_path):
    features, x = feature_artifact(tmp_path / "f", 600, shard=128)
    queries = np.random.default_rng(1).random((20, 32), dtype=np.float32)
    summary = build_feature_index(features, str(tmp_path / "idx"), kind="pq", queries=queries, train_sample=300)
    assert summary["kind"] == "pq" and summary["count"] == 600 and summary["train_sample"] == 300
    assert 0.9 <= summary["recall_at_20"] <= 1.0
    index, ids, _ = load_feature_index(str(tmp_path / "idx"))
    assert index.kind == "pq" and index.ntotal == 600 and len(ids) == 600
    # re-ranked distances are exact: the top hit of a stored vector is itself
    assert (index.search(x[:10], 1)[1][:, 0] == np.arange(10)).all()


def test_empty_features_are_a_clear_error(tmp_path):
    features, _ = feature_artifact(tmp_path / "f", 0)
    shards.write_table(str(tmp_path / "f" / shards.shard_name(0)),
                       pd.DataFrame({"image_id": pd.Series([], dtype=str), "feature": pd.Series([], dtype=object)}))
    with pytest.raises(AmnetError, match="no feature vectors"):
        build_feature_index(features, str(tmp_path / "idx"))


def part_artifact(root, ids: range, x: np.ndarray, group: int, groups: int, first_shard: int, shard: int = 50,
                  variant: str = "amnet") -> str:
    """One group of the featurization fan-out: shards named by their gallery shard, meta with group/groups."""
    root.mkdir(parents=True)
    rows = list(ids)
    for s, start in enumerate(range(0, len(rows), shard)):
        chunk = rows[start : start + shard]
        shards.write_table(str(root / shards.shard_name(first_shard + s)), pd.DataFrame({
            "image_id": [f"g{i:05d}" for i in chunk], "labels": [[0, 1]] * len(chunk),
            "feature": [x[i].tobytes() for i in chunk]}))
    (root / FEATURES_JSON).write_text(json.dumps({
        "dim": x.shape[1], "count": len(rows), "dtype": "float16", "kind": "amnet", "variant": variant,
        "precision": "fp32", "seconds": 2.0, "images_per_s": len(rows) / 2.0, "device": "cpu", "group": group,
        "groups": groups}))
    return str(root)


def test_groups_cover_the_shards_once_in_order():
    uris = [f"s/part-{i:05d}.parquet" for i in range(7)]
    blocks = [shards.group_shards(uris, g, 3) for g in range(3)]
    assert [u for b in blocks for u in b] == uris and [len(b) for b in blocks] == [3, 3, 1]
    with pytest.raises(AmnetError, match="outside 0..2"):
        shards.group_shards(uris, 3, 3)


def test_merged_groups_are_one_feature_artifact_whose_stored_index_evaluation_uses(tmp_path):
    from amnet.retrieval.evaluate import stored_index
    from amnet.retrieval.feature_index import has_index, merge_parts
    from amnet.retrieval.featurize import load_features

    x = np.random.default_rng(3).random((250, 16), dtype=np.float32).astype(np.float16)
    parts = [part_artifact(tmp_path / "a", range(0, 150), x, 0, 2, 0),
             part_artifact(tmp_path / "b", range(150, 250), x, 1, 2, 3)]
    out = str(tmp_path / "merged")
    meta = merge_parts(parts, out)
    assert (meta["count"], meta["shards"], meta["seconds"], meta["wall_seconds"]) == (250, 5, 4.0, 2.0)
    assert "group" not in meta and [p["group"] for p in meta["parts"]] == [0, 1]
    frame, matrix = load_features(out)
    assert list(frame["image_id"]) == [f"g{i:05d}" for i in range(250)]
    np.testing.assert_array_equal(matrix, x.astype(np.float32))
    assert not has_index(out) and stored_index(out, "auto", 250) is None
    build_feature_index(out, out)
    index, info = stored_index(out, "auto", 250)
    assert info["kind"] == "exact" and index.ntotal == 250
    np.testing.assert_array_equal(index.search(matrix[:4], 5)[1], build_index(matrix).search(matrix[:4], 5)[1])
    assert stored_index(out, "pq", 250) is None  # another kind was asked for: the caller builds that one
    frame2, _ = load_features(out)  # the index files are not feature shards
    assert len(frame2) == 250


def test_groups_of_different_models_or_overlapping_shards_are_refused(tmp_path):
    from amnet.retrieval.feature_index import merge_parts

    x = np.random.default_rng(3).random((100, 16), dtype=np.float32).astype(np.float16)
    a = part_artifact(tmp_path / "a", range(0, 50), x, 0, 2, 0)
    b = part_artifact(tmp_path / "b", range(50, 100), x, 1, 2, 1, variant="no_memory")
    with pytest.raises(AmnetError, match="disagree on variant"):
        merge_parts([a, b], str(tmp_path / "m1"))
    c = part_artifact(tmp_path / "c", range(50, 100), x, 1, 2, 0)  # same shard name as a's
    with pytest.raises(AmnetError, match="in both"):
        merge_parts([a, c], str(tmp_path / "m2"))
    with pytest.raises(AmnetError, match="no feature artifacts"):
        merge_parts([], str(tmp_path / "m3"))


def test_ivf_index_artifact_is_trained_on_a_sample(tmp_path):
    features, x = feature_artifact(tmp_path / "f", 400, shard=128)
    queries = np.random.default_rng(2).random((10, 32), dtype=np.float32)
    summary = build_feature_index(features, str(tmp_path / "idx"), kind="ivf", queries=queries, train_sample=300)
    assert summary["kind"] == "ivf" and summary["train_sample"] == 300 and summary["count"] == 400
    assert 0 < summary["recall_at_20"] <= 1


def test_an_hnsw_request_stores_an_hnsw_index_tuned_on_the_queries(tmp_path):
    """The build-index stage builds what was asked for (hnsw was once stored as an exact index), tunes its
    efSearch on the evaluation's queries and records the settings; evaluation then uses the stored index."""
    from amnet.retrieval.evaluate import stored_index

    features, x = feature_artifact(tmp_path / "f", 600, shard=128)
    queries = np.random.default_rng(1).random((50, 32), dtype=np.float32)
    summary = build_feature_index(features, features, kind="hnsw", queries=queries)
    assert summary["kind"] == "hnsw" and summary["count"] == 600
    assert summary["params"]["kind"] == "hnsw" and summary["params"]["ef_search"] >= 20
    assert summary["recall_at_20"] >= 0.95
    index, ids, _ = load_feature_index(features)
    assert index.kind == "hnsw" and ids == [f"g{i:05d}" for i in range(600)]
    assert index.ef_search == summary["params"]["ef_search"]  # stored with the index
    found = stored_index(features, "hnsw", 600)
    assert found is not None and found[0].kind == "hnsw"
