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
