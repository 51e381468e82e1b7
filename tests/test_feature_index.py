"""The index artifact built from feature shards (issue 16 part 3, library side)."""

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
