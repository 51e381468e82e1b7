"""Confidence intervals for the headline retrieval metrics, from per-query results (numpy only).

Every headline metric is a mean over queries of a per-query value: a hit within the top k
(``1 <= first_hit_rank <= k``) or the query's NDCG@k, over the one-attribute queries (``top20``,
``ndcg20``) or the two-attribute ones (``two_top20``, ``two_ndcg20``). So its uncertainty from the
finite query set is estimated by the **bootstrap over queries**: resample the queries with
replacement B times (seeded), take the metric each time, report the 2.5 / 97.5 percentiles. This
percentile interval was measured against scipy's BCa on simulated hits near 0 and 1, paired
differences and median ranks: BCa covered no better, and is undefined for most median ranks
(``benchmarks/bootstrap_coverage.py``; docs/experiments.md, "Which bootstrap interval covers our metrics?").

Two methods scored on the same queries are compared by the **paired bootstrap**: per query the
difference of the two values, resampled the same way, so the interval of "AMNet − baseline" keeps
the pairing (a query hard for both cancels out). Queries are paired by ``image_id`` + ``changed`` +
``target``; two evaluations of different query sets are refused.

With several training seeds per method, the per-query value is first averaged over the seeds (the
query's mean hit rate), then the queries are resampled: the interval is over queries, pooled over
seeds; the spread across seeds is reported separately (mean ± sd).

The exact-target metrics (``recall{K}``, ``median_rank`` and their ``two_`` forms; present when the
split's queries carry ``target_id``) come from the per-query ``target_rank`` column over the queries
that have a target: Recall@K is the mean of ``target_rank <= K``; the median rank's interval is the
bootstrap of the median (``statistic="median"``), and its paired difference AMNet − x is the difference
of the two medians over the same resampled queries (negative: AMNet ranks the target higher).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from amnet.errors import AmnetError

DEFAULT_RESAMPLES = 1000  # B
DEFAULT_SEED = 0
LEVEL = 0.95
_METRIC = re.compile(r"^(?:(two|three)_)?(?:(top|ndcg|recall)(\d+)|(median_rank))$")
_CHANGES = {None: 1, "two": 2, "three": 3}


@dataclass(frozen=True)
class Interval:
    """A metric (or a difference of two) with its bootstrap interval over ``n`` queries."""

    value: float
    low: float
    high: float
    n: int

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def parse_metric(name: str) -> tuple[int, str, int]:
    """``two_top20`` -> (2 changed attributes, "top", 20); ``ndcg20`` -> (1, "ndcg", 20);
    ``recall10`` -> (1, "recall", 10); ``two_median_rank`` -> (2, "median_rank", 0)."""
    m = _METRIC.match(name)
    if not m:
        raise AmnetError(f"no per-query form for metric {name!r}; use topK, ndcgK, recallK, median_rank "
                         "or their two_ forms")
    if m.group(4):
        return _CHANGES[m.group(1)], "median_rank", 0
    return _CHANGES[m.group(1)], m.group(2), int(m.group(3))


def statistic_of(metric: str) -> str:
    """How ``metric`` aggregates its per-query values: ``"median"`` for the median rank, else ``"mean"``."""
    return "median" if parse_metric(metric)[1] == "median_rank" else "mean"


def metric_values(per_query: Mapping[str, Any], metric: str, ndcg_k: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(rows, values): which per-query rows ``metric`` averages over and each one's value.

    ``per_query``: the evaluation's ``per_query.parquet`` columns (a DataFrame works): ``num_changes``,
    ``first_hit_rank`` (1-based, -1 = no exact match in the results) and ``ndcg`` (NDCG@``ndcg_k``);
    for ``recallK`` / ``median_rank``, ``target_rank`` (the exact target's 1-based rank, null = no
    target): only the queries with a target, valued ``target_rank <= K`` or the rank itself.
    """
    n_changes, kind, k = parse_metric(metric)
    rows = np.flatnonzero(np.asarray(per_query["num_changes"]) == n_changes)
    if kind in ("recall", "median_rank"):
        if "target_rank" not in per_query:
            raise AmnetError(f"{metric}: the per-query rows have no target_rank (the queries carry no target_id)")
        rank = pd_float(per_query["target_rank"])[rows]
        keep = np.isfinite(rank) & (rank >= 1)
        rows, rank = rows[keep], rank[keep]
        return rows, (rank <= k).astype(np.float64) if kind == "recall" else rank
    if kind == "top":
        rank = np.asarray(per_query["first_hit_rank"])[rows]
        return rows, ((rank >= 1) & (rank <= k)).astype(np.float64)
    if k != ndcg_k:
        raise AmnetError(f"{metric}: the per-query ndcg column is NDCG@{ndcg_k}, not NDCG@{k}")
    return rows, np.asarray(per_query["ndcg"], dtype=np.float64)[rows]


def pd_float(column: Any) -> np.ndarray:
    """A (possibly nullable) numeric column as float64 (N,), nulls as NaN."""
    def num(v: Any) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):  # None, pandas.NA
            return float("nan")

    return np.array([num(v) for v in np.asarray(column, dtype=object)], dtype=np.float64)


def _aggregate(values: np.ndarray, statistic: str) -> Any:
    if statistic == "mean":
        return values.mean(-1)
    if statistic == "median":
        return np.median(values, axis=-1)
    raise ValueError(f"unknown statistic {statistic!r}; use 'mean' or 'median'")


def bootstrap(values: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
              level: float = LEVEL, statistic: str = "mean", paired_with: np.ndarray | None = None) -> Interval:
    """Mean (or ``statistic="median"``) of ``values`` (N,) with its percentile bootstrap interval
    (resampling the N entries). With ``paired_with`` (N,): the statistic of ``values`` minus that of
    ``paired_with`` over the same resampled entries (the paired difference of two medians).

    The same ``seed`` gives the same interval. Values all equal (every query hit): each resample has
    the same statistic, so the interval has zero width at the value."""
    values = np.asarray(values, dtype=np.float64)
    other = None if paired_with is None else np.asarray(paired_with, dtype=np.float64)
    n = len(values)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)

    def stat(idx: Any) -> Any:
        out = _aggregate(values[idx], statistic)
        return out if other is None else out - _aggregate(other[idx], statistic)

    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)  # bound the (chunk, N) index matrix
    for s in range(0, resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, resamples - s), n))  # (b, N)
        means[s : s + len(idx)] = stat(idx)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(stat(slice(None))), float(low), float(high), n)


def query_keys(per_query: Mapping[str, Any]) -> list[str]:
    """One key per query row: ``image_id`` + changed attributes + target vector."""
    return [f"{i}|{','.join(map(str, np.asarray(c).tolist()))}|{','.join(map(str, np.asarray(t).tolist()))}"
            for i, c, t in zip(per_query["image_id"], per_query["changed"], per_query["target"], strict=True)]


def pair(keys_a: Sequence[str], keys_b: Sequence[str], names: tuple[str, str] = ("a", "b")
         ) -> tuple[np.ndarray, np.ndarray]:
    """(ia, ib): positions such that ``keys_a[ia[j]] == keys_b[ib[j]]``, in ``keys_a``'s order.

    Raises :class:`AmnetError` when the two query sets differ (or repeat a query): a paired comparison
    of evaluations on different queries would be meaningless.
    """
    for keys, name in ((keys_a, names[0]), (keys_b, names[1])):
        if len(set(keys)) != len(keys):
            raise AmnetError(f"{name}: the same query appears twice in its per-query results; cannot pair queries")
    where_b = {k: j for j, k in enumerate(keys_b)}
    only_a = [k for k in keys_a if k not in where_b]
    only_b = len(keys_b) - (len(keys_a) - len(only_a))
    if only_a or only_b:
        raise AmnetError(f"{names[0]} and {names[1]} were scored on different query sets ({len(only_a)} queries only "
                         f"in {names[0]}, {only_b} only in {names[1]}; e.g. {(only_a or ['-'])[0].split('|')[0]}): "
                         "compare evaluations of the same split and query set (evaluate.queries)")
    return np.arange(len(keys_a)), np.asarray([where_b[k] for k in keys_a], dtype=np.int64)


def paired_difference(a: np.ndarray, b: np.ndarray, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = DEFAULT_SEED, level: float = LEVEL, statistic: str = "mean") -> Interval:
    """mean(a − b) over paired queries with its paired bootstrap interval (``a``, ``b`` aligned, (N,));
    ``statistic="median"``: median(a) − median(b) over the same resampled queries."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AmnetError(f"paired values differ in length ({len(a)} vs {len(b)})")
    if statistic == "mean":
        return bootstrap(a - b, resamples, seed, level)
    return bootstrap(a, resamples, seed, level, statistic, paired_with=b)


def seed_spread(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation across seeds (sd None for a single seed)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if len(arr) > 1 else None)
