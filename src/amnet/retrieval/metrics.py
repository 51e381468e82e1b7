"""Retrieval metrics of the AMNet paper (CVPR 2017, §5.1), numpy only.

Shapes used throughout: ``N`` queries, ``K`` ranked results per query, ``M`` attributes.
``result_labels`` is ``(N, K, M)`` int (the gallery labels of each ranked result) and ``target`` is
``(N, M)`` int (the attribute vector the query asks for). ``-1`` (any negative value) means missing.

Missing labels follow two rules, applied by both :func:`exact_match` and :func:`relevance`:

* an attribute where the **target** is missing is not part of the query, so it is ignored;
* a **result** whose label is missing on an attribute the target specifies does not match it:
  an unknown value is not evidence that the image has the desired one (unknown != match).

Metrics:

* top-k accuracy: a query is a hit when one of its top ``k`` results has exactly the target
  attributes (:func:`exact_match`, :func:`topk_accuracy`).
* NDCG@k = (1/Z) * sum_{j=1..k} (2^rel(j) - 1) / log2(j + 1), with rel(j) the fraction of the known
  target attributes that the j-th result matches (:func:`relevance`, :func:`ndcg_at_k`).
* exact target (composed-image retrieval: CSS / TIRG Recall@1, FashionIQ Recall@10/50): the 1-based rank
  of the query's one exact target image in the FULL ranking of the gallery (:func:`target_rank`,
  :func:`l2_target_rank`), Recall@K = the fraction of queries whose target ranks within K
  (:func:`recall_at_k`) and the median rank (:func:`median_rank`). Queries without a target (rank < 1,
  e.g. ``-1``) are left out of both; with none, the metrics are NaN.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def _check_labels(result_labels: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes ``(N, K, M)`` / ``(N, M)`` and require every target to specify an attribute."""
    result_labels = np.asarray(result_labels)
    target = np.asarray(target)
    if result_labels.ndim != 3 or target.ndim != 2:
        raise ValueError(
            f"result_labels must be (N, K, M) and target (N, M); got {result_labels.shape} and {target.shape}"
        )
    if result_labels.shape[0] != target.shape[0] or result_labels.shape[2] != target.shape[1]:
        raise ValueError(
            f"result_labels {result_labels.shape} does not fit target {target.shape}: N and M must agree"
        )
    empty = ~(target >= 0).any(axis=1)
    if empty.any():
        raise ValueError(
            f"{int(empty.sum())} target row(s) have every attribute missing (first at row "
            f"{int(np.argmax(empty))}); drop those queries, they ask for nothing"
        )
    return result_labels, target


def _matches(result_labels: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-attribute agreement ``(N, K, M)`` on known target attributes, and the known mask ``(N, M)``.

    ``result == target`` is only counted where the target is known; a missing result label (-1) never
    equals a known target value (>= 0), so it counts as a mismatch.
    """
    known = target >= 0
    agree = (result_labels == target[:, None, :]) & known[:, None, :]
    return agree, known


def exact_match(result_labels: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(N, K)`` bool: the result has exactly the target's attribute values (the paper's "hit").

    Attributes where the target is missing (-1) are ignored; a result with a missing label on an
    attribute the target specifies is NOT a match (unknown != match).
    """
    result_labels, target = _check_labels(result_labels, target)
    agree, known = _matches(result_labels, target)
    return agree.sum(axis=-1) == known.sum(axis=-1)[:, None]


def _check_k(k: int, available: int, what: str) -> int:
    k = int(k)
    if k < 1:
        raise ValueError(f"{what}: k must be >= 1, got {k}")
    if k > available:
        raise ValueError(f"{what}: k={k} but only {available} ranked results per query are available")
    return k


def _check_2d(arr: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (N, K); got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: no queries (N = 0); nothing to average")
    return arr


def topk_accuracy(hits: np.ndarray, ks: Iterable[int]) -> dict[int, float]:
    """Fraction of queries with at least one hit among their top ``k`` results, for each ``k``.

    ``hits`` is ``(N, K)`` bool in rank order (e.g. from :func:`exact_match`). Raises ``ValueError``
    when some ``k`` exceeds the ``K`` results available: silently truncating would report top-50
    numbers computed from fewer results.
    """
    hits = _check_2d(hits, "hits").astype(bool)
    out: dict[int, float] = {}
    for k in ks:
        k = _check_k(k, hits.shape[1], "topk_accuracy")
        out[k] = float(hits[:, :k].any(axis=1).mean())
    return out


def relevance(result_labels: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(N, K)`` float in [0, 1]: rel(j) = matched target attributes / known target attributes.

    This is the paper's "matched attribute number between the desired ones and the j-th ranked image
    divided by the total number of query attributes", where the query attributes are the target's
    known (non-missing) ones; missing result labels count as not matched.
    """
    result_labels, target = _check_labels(result_labels, target)
    agree, known = _matches(result_labels, target)
    return agree.sum(axis=-1) / known.sum(axis=-1)[:, None].astype(np.float64)


def _discounts(k: int) -> np.ndarray:
    """1 / log2(j + 1) for ranks j = 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ndcg_at_k(rel: np.ndarray, k: int) -> np.ndarray:
    """Per-query NDCG@k ``(N,)`` = (1/Z) * sum_{j=1..k} (2^rel(j) - 1) / log2(j + 1).

    The paper writes log(j + 1); the base only scales numerator and Z alike, so it cancels, and we use
    log2 as is standard for NDCG. Z "ensures that the correct ranking results are with a score of 1":
    we read the ideal ranking as ``k`` fully relevant results (rel = 1 at every position), so
    Z = sum_{j=1..k} (2^1 - 1) / log2(j + 1) and a perfect top k scores exactly 1. Z is the same for
    every query (it does not depend on what the gallery holds), which keeps scores comparable across
    methods. Take the ``mean`` yourself.
    """
    rel = _check_2d(rel, "rel").astype(np.float64)
    k = _check_k(k, rel.shape[1], "ndcg_at_k")
    discounts = _discounts(k)
    dcg = (np.exp2(rel[:, :k]) - 1.0) @ discounts
    return dcg / discounts.sum()


def summarize(
    hits: np.ndarray,
    rel: np.ndarray,
    ks: Sequence[int] = (1, 5, 10, 20, 30, 50),
    ndcg_ks: Sequence[int] = (20,),
) -> dict[str, float]:
    """Mean metrics keyed ``top{k}`` (top-k accuracy) and ``ndcg{k}`` (mean NDCG@k).

    E.g. ``{"top1": ..., "top5": ..., "top50": ..., "ndcg20": ...}``; raises ``ValueError`` when a
    requested ``k`` exceeds the ranked results available.
    """
    out = {f"top{k}": acc for k, acc in topk_accuracy(hits, ks).items()}
    for k in ndcg_ks:
        out[f"ndcg{int(k)}"] = float(ndcg_at_k(rel, k).mean())
    return out


def per_attribute_topk(
    hits: np.ndarray,
    changed_attrs: Sequence[Iterable[int]],
    names: Sequence[str],
    k: int,
) -> dict[str, float]:
    """Top-k accuracy grouped by manipulated attribute: ``{attribute name: accuracy}``.

    ``changed_attrs[i]`` holds the attribute indices (into ``names``) changed by query ``i`` (the
    ``changed`` shard column). A query that changes two attributes counts in both groups. Attributes
    no query changed are left out (no accuracy to report), so keys follow ``names`` order.
    """
    hits = _check_2d(hits, "hits").astype(bool)
    if len(changed_attrs) != hits.shape[0]:
        raise ValueError(
            f"changed_attrs has {len(changed_attrs)} entries but hits has {hits.shape[0]} queries"
        )
    k = _check_k(k, hits.shape[1], "per_attribute_topk")
    hit_at_k = hits[:, :k].any(axis=1)
    groups: dict[int, list[int]] = {}
    for query, attrs in enumerate(changed_attrs):
        for attr in {int(a) for a in attrs}:
            if not 0 <= attr < len(names):
                raise ValueError(f"query {query}: changed attribute index {attr} outside 0..{len(names) - 1}")
            groups.setdefault(attr, []).append(query)
    return {names[a]: float(hit_at_k[groups[a]].mean()) for a in sorted(groups)}


# ------------------------------------------------------------------------------------ exact target
NO_TARGET = -1  # rank of a query that has no exact target image


def target_rank(scores: np.ndarray, target_rows: np.ndarray, offset: int = 0) -> np.ndarray:
    """``(N,)`` 1-based rank of each query's target in the full ranking of ``scores`` ``(N, G)``, lower first.

    rank = 1 + the gallery items ranked before the target: a strictly lower score, or the same score at a
    lower gallery row (ties go to the lower row, as faiss's exact search and a stable sort order them).
    ``target_rows[i]`` is the target's gallery row, or a negative value for a query without a target
    (rank :data:`NO_TARGET`). ``offset``: the first row of ``scores`` is query ``offset`` of ``target_rows``
    (for chunked callers).
    """
    scores = np.asarray(scores)
    rows = np.asarray(target_rows, dtype=np.int64)[offset : offset + len(scores)]
    if scores.ndim != 2 or len(rows) != len(scores):
        raise ValueError(f"scores must be (N, G) with one target row per query; got {scores.shape}, {len(rows)} rows")
    out = np.full(len(rows), NO_TARGET, dtype=np.int64)
    has = rows >= 0
    if not has.any():
        return out
    if rows.max() >= scores.shape[1]:
        raise ValueError(f"target row {int(rows.max())} outside the gallery of {scores.shape[1]} items")
    s = scores[has]
    t = rows[has]
    own = s[np.arange(len(t)), t][:, None]
    before = (s < own).sum(1) + ((s == own) & (np.arange(s.shape[1])[None, :] < t[:, None])).sum(1)
    out[has] = 1 + before
    return out


def l2_target_rank(q: np.ndarray, gallery: np.ndarray, target_rows: np.ndarray, chunk: int = 256) -> np.ndarray:
    """:func:`target_rank` under Euclidean distance from each query vector ``(N, D)`` to the gallery ``(G, D)``.

    Distances are exact (float64, computed here over the whole gallery), whatever index served the search:
    for an approximate index (PQ fast-scan) this is the rank exact search would give, which the index's
    candidate set can only lower (its results are re-ranked by exact distance)."""
    q = np.asarray(q, dtype=np.float64)
    gallery = np.asarray(gallery, dtype=np.float64)
    rows = np.asarray(target_rows, dtype=np.int64)
    out = np.full(len(q), NO_TARGET, dtype=np.int64)
    g2 = (gallery**2).sum(1)
    for s in range(0, len(q), chunk):
        if not (rows[s : s + chunk] >= 0).any():
            continue
        qs = q[s : s + chunk]
        squared = np.maximum((qs**2).sum(1)[:, None] - 2 * qs @ gallery.T + g2[None, :], 0)  # (b, G)
        out[s : s + chunk] = target_rank(squared, rows, offset=s)
    return out


def saved_rank(ranked: np.ndarray, target_rows: np.ndarray) -> np.ndarray:
    """``(N,)`` 1-based position of each query's target row in its ranked results ``(N, K)``; 0 when the
    target is not among them, :data:`NO_TARGET` for a query without a target."""
    ranked = np.asarray(ranked)
    rows = np.asarray(target_rows, dtype=np.int64)
    found = ranked == rows[:, None]
    out = np.where(found.any(1), found.argmax(1) + 1, 0)
    return np.where(rows >= 0, out, NO_TARGET).astype(np.int64)


def merge_ranks(saved: np.ndarray, computed: np.ndarray, depth: int) -> np.ndarray:
    """The target's rank, consistent with the saved results: its position there when it is among the first
    ``depth`` results (the search's own order, ties included), else the full-gallery rank ``computed``,
    which is then at least ``depth + 1``."""
    saved, computed = np.asarray(saved, dtype=np.int64), np.asarray(computed, dtype=np.int64)
    return np.where(saved >= 1, saved, np.where(computed >= 1, np.maximum(computed, depth + 1), NO_TARGET))


def _with_target(ranks: np.ndarray) -> np.ndarray:
    ranks = np.asarray(ranks, dtype=np.float64).ravel()
    return ranks[np.isfinite(ranks) & (ranks >= 1)]


def recall_at_k(ranks: np.ndarray, ks: Iterable[int]) -> dict[int, float]:
    """Recall@K: the fraction of queries with a target whose target ranks within the first K, for each K.

    ``ranks``: 1-based target ranks (:func:`target_rank`); a query without a target (rank < 1 or NaN) is
    left out. NaN for every K when no query has a target."""
    have = _with_target(ranks)
    out: dict[int, float] = {}
    for k in ks:
        k = int(k)
        if k < 1:
            raise ValueError(f"recall_at_k: K must be >= 1, got {k}")
        out[k] = float((have <= k).mean()) if len(have) else float("nan")
    return out


def median_rank(ranks: np.ndarray) -> float:
    """Median 1-based rank of the exact target over the queries that have one (NaN when none do)."""
    have = _with_target(ranks)
    return float(np.median(have)) if len(have) else float("nan")
