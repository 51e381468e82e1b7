"""Evaluation in bounded memory: the gallery read from disk block by block gives the whole matrix's results.

The searches of ``amnet.retrieval.gallery_store`` against faiss's exact and PQ + re-rank indexes and the
attribute rule over the whole matrix, with exact ties and with both of faiss's distance paths; then, on a
copy of ``searchable_chain``'s split whose queries name exact targets, every variant (amnet through an
exact, a stored exact and a stored PQ index, image_only, attribute_based) evaluated with blocks of 16
gallery rows (13 blocks of the 200-image gallery, 4 to 13 for the gallery-size study's subsets) and in
one block: metrics.json (but for its timings), per_query.parquet and examples.parquet are identical, and
the rankings, target ranks and gallery-size study equal a brute-force reference over the float32 matrix.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from amnet.config import EvaluateConfig, FeaturizeConfig
from amnet.data import shards
from amnet.data.split import label_matrix, query_set
from amnet.errors import AmnetError
from amnet.model_store import load_model
from amnet.retrieval import evaluate as ev
from amnet.retrieval import gallery_store as gs
from amnet.retrieval import metrics
from amnet.retrieval.feature_index import build_feature_index, load_feature_index
from amnet.retrieval.featurize import load_features, run_featurize
from amnet.retrieval.index import build_index, load_index, save_index
from tests.retrieval.test_exact_target import with_targets

SMALL_BLOCK = 16
TIMES = ("seconds", "search_ms_per_query", "manipulate_ms_per_query", "query_ms_per_query")


def with_duplicates(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """fp16-exact float32 vectors with exact duplicates (rows 10 = 20 = 30): ties at equal distance."""
    x = rng.normal(size=(n, dim)).astype(np.float16).astype(np.float32)
    x[10] = x[30] = x[20]
    return x


# ---------------------------------------------------------------------------------------- the searches
@pytest.mark.parametrize("queries,dim", [(40, 32), (520, 256)])  # faiss's per-pair path, then its BLAS path
def test_block_exact_search_returns_faiss_exact_results(queries, dim):
    rng = np.random.default_rng(0)
    x = with_duplicates(rng, 2500, dim)
    q = rng.normal(size=(queries, dim)).astype(np.float32)
    q[0] = x[20]
    want = build_index(x, "exact").search(q, 50)
    for block_rows in (None, 7, 1000, 1024):
        got = gs.BlockExactIndex(x, block_rows).search(q, 50)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    assert list(want[1][0, :3]) == [10, 20, 30]  # ties: the lower row first
    subset = np.sort(rng.choice(len(x), 900, replace=False))
    np.testing.assert_array_equal(gs.BlockExactIndex(gs.SubsetVectors(gs.ArrayVectors(x), subset), 64).search(q, 20)[1],
                                  build_index(x[subset], "exact").search(q, 20)[1])


def test_stored_pq_index_searches_like_the_loaded_one_without_its_vectors(tmp_path):
    rng = np.random.default_rng(1)
    x = with_duplicates(rng, 3000, 64)
    twins = np.repeat(x[:300], 10, axis=0)  # ten copies of each vector: ties at the re-rank's cut
    odd = with_duplicates(rng, 1000, 37)  # a width the fast-scan codes may pad to whole sub-vectors
    q = rng.normal(size=(120, 64)).astype(np.float32)
    for name, vectors in (("plain", x), ("twins", twins), ("odd", odd)):
        q = q if vectors.shape[1] == q.shape[1] else rng.normal(size=(120, vectors.shape[1])).astype(np.float32)
        path = str(tmp_path / f"{name}.faiss")
        save_index(build_index(vectors, "pq"), path)
        whole, streamed = load_index(path), gs.read_stored_pq(path, gs.ArrayVectors(vectors), block_rows=500)
        assert streamed.kind == "pq" and streamed.ntotal == len(vectors)
        for k in (1, 5, 20):
            for qq in (q, q[:3]):  # a batch, and fewer queries than the fast-scan kernel switch
                got, want = streamed.search(qq, k), whole.search(qq, k)
                np.testing.assert_array_equal(got[1], want[1])
                np.testing.assert_array_equal(got[0], want[0])
    save_index(build_index(x, "exact"), str(tmp_path / "exact.faiss"))
    assert gs.read_stored_pq(str(tmp_path / "exact.faiss"), gs.ArrayVectors(x)) is None


def attribute_reference(q, x, gallery_pred, pred_target, chunk=64):
    """The attribute rule's scores over the whole matrix (per chunk of queries), as one (N, G) array."""
    g2 = (x**2).sum(1)
    out = []
    for s in range(0, len(q), chunk):
        qs = q[s : s + chunk]
        dist = np.sqrt(np.maximum((qs**2).sum(1)[:, None] - 2 * qs @ x.T + g2[None, :], 0))
        mismatched = (gallery_pred[None, :, :] != pred_target[s : s + chunk, None, :]).sum(2)
        out.append(mismatched * (dist.max() + 1.0) + dist)
    return np.concatenate(out)


def test_attribute_rule_and_l2_ranks_over_blocks_equal_the_whole_matrix():
    rng = np.random.default_rng(2)
    x = with_duplicates(rng, 700, 16)
    gallery_pred = rng.integers(0, 2, (700, 3)).astype(np.int16)
    gallery_pred[10] = gallery_pred[30] = gallery_pred[20]  # the twins tie on the rule's score too
    q = rng.normal(size=(150, 16)).astype(np.float32)  # three chunks of 64
    pred_target = rng.integers(0, 2, (150, 3))
    pred_target[0] = gallery_pred[20]
    q[0] = x[20]
    score = attribute_reference(q, x, gallery_pred, pred_target)
    full = np.argsort(score, axis=1, kind="stable")  # ties: the lower row first
    rows = rng.integers(0, 700, 150)
    rows[1], rows[2] = -1, 30
    for block_rows in (None, 9, 64):
        rule = gs.AttributeRule(q, x, gallery_pred, pred_target, block_rows)
        np.testing.assert_array_equal(rule.rank(60), full[:, :60])
        np.testing.assert_array_equal(rule.target_ranks(rows), metrics.target_rank(score, rows))
        np.testing.assert_array_equal(gs.l2_target_ranks(q, x, rows, block_rows), metrics.l2_target_rank(q, x, rows))
    assert list(full[0, :3]) == [10, 20, 30]


def test_disk_vectors_blocks_and_the_gallery_helpers(tmp_path):
    x = np.random.default_rng(3).normal(size=(103, 8)).astype(np.float16)
    with gs.DiskVectors(8, str(tmp_path)) as disk:
        disk.append(x[:50])
        disk.append(x[50:])
        assert disk.n == 103 and os.path.getsize(disk.path) == 103 * 8 * 2
        np.testing.assert_array_equal(disk.rows(5, 60), x[5:60].astype(np.float32))
        rows = np.array([7, 3, 4, 5, 102, 3, 0])
        np.testing.assert_array_equal(disk.take(rows), x[rows].astype(np.float32))
        folder = disk.folder
    assert not os.path.exists(folder)
    assert gs.block_bounds(103, 50) == [(0, 50), (50, 103)]  # a 3-row tail joins the block before it
    assert gs.block_bounds(130, 50) == [(0, 50), (50, 100), (100, 130)]
    assert gs.default_block_rows(4096) == 1024 and gs.default_block_rows(256) == 16384
    queries = pd.DataFrame({"image_id": ["a", "b", "c"], "target_id": pd.array(["g2", None, "g0"], dtype="string")})
    ids = np.array(["g0", "g1", "g2", "g0"])  # a repeated id: its last row, as a dict of ids would give
    assert ev.target_rows("s", "test", queries, ids).tolist() == [2, -1, 3]
    queries.loc[1, "target_id"] = "gone"
    with pytest.raises(AmnetError, match="target_id 'gone'"):
        ev.target_rows("s", "test", queries, ids)
    labels = np.array([[0, 1], [1, 1], [0, 1]], np.int16)
    assert ev.has_target(labels, np.array([[0, 1], [1, 0], [-1, 1]])).tolist() == [True, False, True]


# -------------------------------------------------------------------------------- evaluate, end to end
@pytest.fixture(scope="module")
def streamed(searchable_chain, tmp_path_factory):
    """Each case evaluated with 16-row blocks and in one block: {case: (small, whole, split, model, features)}."""
    root = tmp_path_factory.mktemp("streamed")
    split = with_targets(searchable_chain.split, root / "split")
    feats = {"amnet": root / "feats-amnet", "attr": root / "feats-attr"}
    run_featurize(str(split), str(searchable_chain.model), str(feats["amnet"]), FeaturizeConfig(), progress=False)
    run_featurize(str(split), str(searchable_chain.attr), str(feats["attr"]), FeaturizeConfig(), progress=False)
    for kind in ("exact", "pq"):
        feats[kind] = root / f"feats-{kind}"
        shutil.copytree(feats["amnet"], feats[kind])
        build_feature_index(str(feats[kind]), str(feats[kind]), kind=kind)
    cases = {
        "amnet": ("amnet", "exact", searchable_chain.model, feats["amnet"]),
        "amnet_stored_exact": ("amnet", "auto", searchable_chain.model, feats["exact"]),
        "amnet_stored_pq": ("amnet", "pq", searchable_chain.model, feats["pq"]),
        "image_only": ("image_only", "auto", searchable_chain.model, feats["amnet"]),
        "attribute_based": ("attribute_based", "auto", searchable_chain.attr, feats["attr"]),
    }
    out = {}
    for case, (variant, index, model, features) in cases.items():
        cfg = EvaluateConfig(variant=variant, index=index)
        for name, block_rows in (("small", SMALL_BLOCK), ("whole", None)):
            ev.run_evaluate(str(split), str(model), str(features), str(root / case / name), cfg, progress=False,
                            block_rows=block_rows)
        out[case] = (root / case / "small", root / case / "whole", split, model, features)
    return out


CASES = ["amnet", "amnet_stored_exact", "amnet_stored_pq", "image_only", "attribute_based"]


def without_times(folder) -> dict:
    payload = json.loads((folder / "metrics.json").read_text())
    payload["timing"] = {k: v for k, v in payload["timing"].items() if k not in TIMES}
    return payload


@pytest.mark.parametrize("case", CASES)
def test_small_blocks_write_what_one_block_writes(streamed, case):
    small, whole, *_ = streamed[case]
    assert without_times(small) == without_times(whole)
    for name in ("per_query.parquet", "examples.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(small / name), pd.read_parquet(whole / name))
    payload = without_times(small)
    assert payload["metrics"]["recall50"] >= 0 and payload["timing"]["gallery"] == 200
    index = payload["timing"]["index"]
    want = {"amnet": ("exact", False), "amnet_stored_exact": ("exact", True), "amnet_stored_pq": ("pq", True),
            "image_only": ("exact", False), "attribute_based": ("attribute_rule", False)}[case]
    assert (index["kind"], index.get("stored", False)) == want


@pytest.mark.parametrize("case", CASES)
def test_rankings_equal_a_search_over_the_whole_matrix(streamed, case):
    """Results, exact-target ranks and the gallery-size study against a reference computed here from the
    float32 matrix of load_features (faiss's exact or loaded PQ index, the attribute rule's scores)."""
    small, _, split, model, features = streamed[case]
    payload = without_times(small)
    variant = payload["variant"]
    frame, x = load_features(str(features))
    ids = frame["image_id"].astype(str).to_numpy()
    loaded = load_model(str(model), "cpu")
    queries = shards.read_shards(query_set(str(split), "test"))
    m = loaded.vocab.num_attributes
    q, pred = ev.query_vectors(loaded, queries, 256, "cpu", manipulate=variant != "image_only")
    per_query = pd.read_parquet(small / "per_query.parquet")
    depth = len(per_query["results"].iloc[0])
    rows = ev.target_rows(str(split), "test", queries, ids)
    if variant == "attribute_based":
        targets = label_matrix(queries["target"], m)
        gallery_pred = label_matrix(frame["pred_labels"], m)
        pred_target = pred.copy()
        for i, ch in enumerate(queries["changed"]):
            pred_target[i, list(ch)] = targets[i, list(ch)]
        score = attribute_reference(q, x, gallery_pred, pred_target)
        ranked = np.argsort(score, axis=1, kind="stable")[:, :depth]
        full = metrics.target_rank(score, rows)
    else:
        index = load_feature_index(str(features))[0] if case == "amnet_stored_pq" else build_index(x, "exact")
        ranked = index.search(q, depth)[1]
        full = metrics.l2_target_rank(q, x, rows)
    assert per_query["results"].map(list).tolist() == ids[ranked].tolist()
    has = rows >= 0
    assert has.any()
    saved = metrics.saved_rank(ranked, rows)
    want = np.where(saved >= 1, saved, np.maximum(full, depth + 1))
    assert per_query["target_rank"].to_numpy(dtype=float)[has].tolist() == want[has].astype(float).tolist()
    if variant != "attribute_based":  # the gallery-size study: each subset searched on its own, exactly
        labels = label_matrix(frame["labels"], m)
        targets = label_matrix(queries["target"], m)
        one = queries["num_changes"].to_numpy() == 1
        for key, subset in ev.gallery_subsets(ids).items():
            top = build_index(x[subset], "exact").search(q[one], min(ev.GALLERY_K, len(subset)))[1]
            hit = metrics.exact_match(labels[subset][top], targets[one]).any(1)
            assert payload["gallery_curve"][key] == pytest.approx(float(hit.mean()))
