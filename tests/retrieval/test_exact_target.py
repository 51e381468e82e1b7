"""The exact-target yardstick (composed-image retrieval: Recall@K, median rank of the one target image).

The metric functions on hand-made rankings (known ranks, ties, queries without a target), the full-gallery
rank under L2 and under the attribute rule against brute force, and ``amnet step evaluate`` on a copy of
the session's tiny split whose query shards get a ``target_id`` column.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amnet.data import shards
from amnet.data.split import label_matrix
from amnet.errors import AmnetError
from amnet.retrieval import evaluate as ev
from amnet.retrieval import metrics
from amnet.retrieval.index import build_index


# ------------------------------------------------------------------------------------ metric functions
def test_target_rank_counts_items_before_the_target_and_breaks_ties_by_row():
    scores = np.array([[0.5, 0.1, 0.3, 0.3, 0.9],
                       [0.2, 0.2, 0.2, 0.2, 0.2],
                       [0.0, 1.0, 2.0, 3.0, 4.0]])
    # query 0: target row 3 (0.3): 0.1 and 0.3 at row 2 (a tie at a lower row) come first -> rank 3
    # query 1: every score tied, target row 2 -> rows 0 and 1 first -> rank 3; query 2: no target
    assert metrics.target_rank(scores, np.array([3, 2, -1])).tolist() == [3, 3, metrics.NO_TARGET]
    assert metrics.target_rank(scores, np.array([1, 0, 4])).tolist() == [1, 1, 5]
    assert metrics.target_rank(scores[1:], np.array([9, 4, 0]), offset=1).tolist() == [5, 1]  # chunked callers
    with pytest.raises(ValueError, match="outside the gallery"):
        metrics.target_rank(scores, np.array([5, 0, 0]))


def test_recall_at_k_and_median_rank_skip_queries_without_a_target():
    ranks = np.array([1, 3, 12, 60, -1, -1])
    assert metrics.recall_at_k(ranks, (1, 5, 10, 50, 100)) == {1: 0.25, 5: 0.5, 10: 0.5, 50: 0.75, 100: 1.0}
    assert metrics.median_rank(ranks) == pytest.approx(7.5)  # median of 1, 3, 12, 60
    assert metrics.median_rank(np.array([4, 2, 9])) == 4
    assert metrics.median_rank(np.array([np.nan, 2.0])) == 2  # NaN (a null rank) counts as no target
    none = metrics.recall_at_k(np.array([-1, -1]), (1, 10))
    assert all(math.isnan(v) for v in none.values()) and math.isnan(metrics.median_rank(np.array([], int)))
    with pytest.raises(ValueError, match="K must be >= 1"):
        metrics.recall_at_k(ranks, (0,))


def test_saved_and_merged_ranks_agree_with_the_saved_results():
    ranked = np.array([[4, 2, 7], [1, 0, 3], [5, 6, 8]])
    rows = np.array([2, 9, -1])
    saved = metrics.saved_rank(ranked, rows)
    assert saved.tolist() == [2, 0, metrics.NO_TARGET]
    # within the saved results their position wins; beyond them the computed rank, at least depth + 1
    assert metrics.merge_ranks(saved, np.array([3, 2, -1]), 3).tolist() == [2, 4, metrics.NO_TARGET]
    assert metrics.merge_ranks(saved, np.array([1, 17, -1]), 3).tolist() == [2, 17, metrics.NO_TARGET]


def brute_rank(dist: np.ndarray, target: int) -> int:
    order = np.argsort(dist, kind="stable")  # ties: the lower row first
    return int(np.flatnonzero(order == target)[0]) + 1


def test_l2_rank_over_the_full_gallery_matches_a_stable_sort_and_the_saved_search():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(300, 8)).astype(np.float32)
    gallery[10] = gallery[20]  # exact duplicates: a tie at equal distance
    q = rng.normal(size=(40, 8)).astype(np.float32)
    q[0] = q[2] = gallery[20] + 0.5  # queries 0 and 2: the same vector, targets 20 and its twin 10
    rows = rng.integers(0, 300, 40)
    rows[0], rows[1], rows[2] = 20, -1, 10
    full = metrics.l2_target_rank(q, gallery, rows, chunk=7)
    dist = np.linalg.norm(q[:, None, :].astype(np.float64) - gallery[None, :, :], axis=2)
    for i, r in enumerate(rows):
        assert full[i] == (metrics.NO_TARGET if r < 0 else brute_rank(dist[i], r)), i
    assert full[0] == full[2] + 1  # row 10 ties row 20 and comes first
    ranked = build_index(gallery, "exact").search(q, 50)[1]
    ranks = ev.target_ranks("amnet", q, gallery, None, None, rows, ranked)
    for i, r in enumerate(rows):
        if r < 0:
            assert ranks[i] == metrics.NO_TARGET
        elif r in ranked[i]:
            assert ranks[i] == list(ranked[i]).index(r) + 1  # the saved search's own order
        else:
            assert ranks[i] == full[i] > 50


def test_attribute_rule_rank_follows_its_own_ordering():
    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(120, 6)).astype(np.float32)
    gallery_pred = rng.integers(0, 2, (120, 3))
    q = rng.normal(size=(70, 6)).astype(np.float32)  # two chunks of 64
    pred_target = rng.integers(0, 2, (70, 3))
    rows = rng.integers(0, 120, 70)
    rows[5] = -1
    ranked = ev.attribute_based_rank(q, gallery, gallery_pred, pred_target, 10)
    ranks = ev.target_ranks("attribute_based", q, gallery, gallery_pred, pred_target, rows, ranked)
    full = ev.attribute_based_rank(q, gallery, gallery_pred, pred_target, 120)  # the rule's whole ordering
    for i, r in enumerate(rows):
        if r < 0:
            assert ranks[i] == metrics.NO_TARGET
        else:
            assert ranks[i] == list(full[i]).index(r) + 1, i


def test_exact_summary_prefixes_and_curves():
    ranks = np.array([1, 2, 60, -1, 1, 8])
    groups = np.array([1, 1, 1, 1, 2, 2])
    summary, curves = ev.exact_summary(ranks, groups)
    assert summary["recall1"] == pytest.approx(1 / 3) and summary["recall50"] == pytest.approx(2 / 3)
    assert summary["median_rank"] == 2 and summary["two_recall5"] == 0.5 and summary["two_median_rank"] == 4.5
    assert len(curves["1"]) == 50 and curves["2"][7] == 1.0 and curves["1"][0] == summary["recall1"]
    assert ev.exact_summary(np.array([-1, 3]), np.array([1, 2]))[0].keys() == {
        "two_recall1", "two_recall5", "two_recall10", "two_recall50", "two_median_rank"}


# -------------------------------------------------------------------------------- evaluate, end to end
def with_targets(split: Path, out: Path, every: int = 2, bad: bool = False) -> Path:
    """A copy of ``split`` whose test queries name an exact target (a gallery image with exactly the target
    attributes) on every ``every``-th query, null on the others; ``bad``: one names an image not in the gallery."""
    shutil.copytree(split, out)
    gallery = shards.read_shards(str(out / "gallery"))
    queries = shards.read_shards(str(out / "queries"))
    m = len(queries["target"].iloc[0])
    labels, targets = label_matrix(gallery["labels"], m), label_matrix(queries["target"], m)
    ids = gallery["image_id"].astype(str).to_numpy()
    target_ids: list[str | None] = []
    for i, t in enumerate(targets):
        match = np.flatnonzero((labels == t).all(1))
        target_ids.append(str(ids[match[-1]]) if i % every == 0 and len(match) else None)
    if bad:
        target_ids[0] = "not-a-gallery-image"
    queries["target_id"] = pd.array(target_ids, dtype="string")
    shards.write_shards(queries, str(out / "queries"), 64)
    return out


@pytest.fixture(scope="module")
def evaluated(trained_chain, tmp_path_factory):
    """The tiny chain's amnet model and attribute CNN evaluated on a split with target ids (and without)."""
    import os

    from amnet.steps import evaluate, featurize

    root = tmp_path_factory.mktemp("exact")
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        split = with_targets(trained_chain.split, root / "split")
        out = {}
        for name, model in (("amnet", trained_chain.model), ("attribute_based", trained_chain.attr)):
            feats = root / f"feats-{name}"
            featurize.run_step(str(split), str(model), str(feats), progress=False)
            for which, s in (("targets", split), ("plain", trained_chain.split)):
                evaluate.run_step(str(s), str(model), str(feats), str(root / f"{which}-{name}"), progress=False)
                out[which, name] = root / f"{which}-{name}"
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return root, out


@pytest.mark.parametrize("variant", ["amnet", "attribute_based"])
def test_evaluate_scores_the_exact_target_when_the_queries_name_one(evaluated, variant):
    _, out = evaluated
    folder = out["targets", variant]
    payload = json.loads((folder / "metrics.json").read_text())
    pq = pd.read_parquet(folder / "per_query.parquet")
    assert {"target_id", "target_rank"} <= set(pq.columns)
    has = pq["target_id"].notna().to_numpy()
    assert has.any() and (~has).any()
    assert pq["target_rank"].isna().to_numpy().tolist() == (~has).tolist()  # null exactly where no target
    for results, target, rank in zip(pq["results"][has], pq["target_id"][has], pq["target_rank"][has], strict=True):
        if target in list(results):
            assert rank == list(results).index(target) + 1
        else:
            assert rank > len(results)
    gallery = len(shards.read_shards(str(evaluated[0] / "split" / "gallery")))
    assert pq["target_rank"].max() <= gallery
    for prefix, n in (("", 1), ("two_", 2)):
        ranks = pq.loc[has & (pq["num_changes"] == n).to_numpy(), "target_rank"].to_numpy(dtype=float)
        for k in (1, 5, 10, 50):
            assert payload["metrics"][f"{prefix}recall{k}"] == pytest.approx((ranks <= k).mean())
        assert payload["metrics"][f"{prefix}median_rank"] == pytest.approx(np.median(ranks))
        curve = payload["recall_curves"][str(n)]
        assert len(curve) == 50 and curve == sorted(curve)
        assert curve[9] == pytest.approx(payload["metrics"][f"{prefix}recall10"])


@pytest.mark.parametrize("variant", ["amnet", "attribute_based"])
def test_evaluate_without_target_ids_writes_what_it_always_wrote(evaluated, variant):
    _, out = evaluated
    plain, targets = out["plain", variant], out["targets", variant]
    payload = json.loads((plain / "metrics.json").read_text())
    assert "recall_curves" not in payload and not any("recall" in k or "median" in k for k in payload["metrics"])
    assert {"target_id", "target_rank"}.isdisjoint(pd.read_parquet(plain / "per_query.parquet").columns)
    other = json.loads((targets / "metrics.json").read_text())["metrics"]
    assert {k: v for k, v in other.items() if k in payload["metrics"]} == payload["metrics"]  # the rest unchanged



@pytest.mark.parametrize("variant", ["amnet", "attribute_based"])
def test_evaluate_examples_prefer_queries_with_an_exact_target(evaluated, variant):
    """Fig. 7's examples.parquet: target queries picked first, their target's thumbnail, result_exact marks."""
    root, out = evaluated
    queries = shards.read_shards(str(root / "split" / "queries"))
    with_target = set(queries.loc[queries["target_id"].notna(), "image_id"].astype(str))
    ex = pd.read_parquet(out["targets", variant] / "examples.parquet")
    for n in (1, 2):  # every group's picks are target queries while the group has enough of them
        group = ex[ex["num_changes"] == n]
        available = len(with_target & set(queries.loc[queries["num_changes"] == n, "image_id"].astype(str)))
        assert sum(q in with_target for q in group["query_id"]) == min(len(group), available)
    assert ex["target_id"].notna().any()
    for ids, exact, target, thumb in zip(ex["result_ids"], ex["result_exact"], ex["target_id"], ex["target_thumb"],
                                         strict=True):
        assert list(exact) == [not pd.isna(target) and i == target for i in ids]
        assert (thumb is None) == pd.isna(target)
    plain = pd.read_parquet(out["plain", variant] / "examples.parquet")
    assert plain["target_id"].isna().all() and plain["target_thumb"].isna().all()
    assert not any(any(e) for e in plain["result_exact"])

def test_evaluate_names_the_query_whose_target_is_not_in_the_gallery(trained_chain, tmp_path, monkeypatch):
    from amnet.steps import evaluate, featurize

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    split = with_targets(trained_chain.split, tmp_path / "split", bad=True)
    featurize.run_step(str(split), str(trained_chain.model), str(tmp_path / "feats"), progress=False)
    with pytest.raises(AmnetError, match=r"split: test query 0 \(image .*\) names target_id 'not-a-gallery-image'"):
        evaluate.run_step(str(split), str(trained_chain.model), str(tmp_path / "feats"), str(tmp_path / "ev"),
                          progress=False)
