"""Coverage of the nominal 95 % bootstrap interval for the report's metrics: percentile vs BCa.

Simulates per-query results whose true value is known and counts how often each method's interval
contains it, with the report's resample count (B = 1,000):

* ``mean``: per-query binary hits (top-1, top-20, exact-target Recall@K) at hit rates near 0, in the
  middle and near 1, over 300 queries (the built-in test set) and 238 (its exact-target queries);
* ``pooled``: three seeds pooled per query (the per-query hit rate over seeds, seeds correlated
  through a per-query difficulty), as the report pools seeds;
* ``diff``: paired differences of correlated binary hits of two variants on the same queries;
* ``median`` / ``median diff``: the median target rank and the paired difference of two medians.

Both methods see the same resamples: one :func:`scipy.stats.bootstrap` call per block of
replications gives the BCa interval and the bootstrap distribution, whose 2.5 / 97.5 percentiles
are the percentile interval of :func:`amnet.retrieval.stats.bootstrap` (the replications of a block
share resample indices; their data are independent). A BCa interval scipy cannot compute (NaN: a
constant jackknife, e.g. a median rank of 1 that no single query moves) falls back to the percentile
interval; the ``BCa NaN`` column counts these.

Monte Carlo error of a coverage over R replications: sd = sqrt(0.95 * 0.05 / R) (0.005 at R = 2,000).

    .venv/bin/python benchmarks/bootstrap_coverage.py [--reps 2000] [--resamples 1000] [--seed 0]

``--timing``: instead, the seconds of a report-sized workload (5 variants x 15 metrics over 900 queries,
plus 4 paired differences per metric) with :func:`amnet.retrieval.stats.bootstrap` and with scipy's BCa.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from scipy.special import ndtr

LEVEL = 0.95
BLOCK_ELEMENTS = 12_000_000  # bound on replications x resamples x queries held at once


@dataclass(frozen=True)
class Cell:
    """One simulated setting: how to draw R data sets, the statistic, and its true value."""

    kind: str
    label: str
    n: int
    truth: float
    draw: Callable[[np.random.Generator, int, int], tuple[np.ndarray, ...]]  # (rng, reps, n) -> samples (reps, n)
    statistic: str = "mean"


def binary(p: float) -> Callable[[np.random.Generator, int, int], tuple[np.ndarray, ...]]:
    """Per-query hits with rate ``p``."""
    return lambda rng, reps, n: ((rng.random((reps, n)) < p).astype(np.float64),)


def pooled(p: float, seeds: int = 3, concentration: float = 2.0
           ) -> Callable[[np.random.Generator, int, int], tuple[np.ndarray, ...]]:
    """Per-query hit rate over ``seeds`` seeds; a query's difficulty q ~ Beta with mean ``p`` makes
    the seeds agree on hard and easy queries."""
    def draw(rng: np.random.Generator, reps: int, n: int) -> tuple[np.ndarray, ...]:
        q = rng.beta(p * concentration, (1 - p) * concentration, (reps, n))
        return ((rng.random((seeds, reps, n)) < q).mean(0),)
    return draw


def paired_binary(a_only: float, b_only: float, both: float
                  ) -> Callable[[np.random.Generator, int, int], tuple[np.ndarray, ...]]:
    """Hits of two variants on the same queries: P(only a), P(only b), P(both)."""
    def draw(rng: np.random.Generator, reps: int, n: int) -> tuple[np.ndarray, ...]:
        u = rng.random((reps, n))
        a = (u < a_only + both).astype(np.float64)
        b = ((u >= a_only) & (u < a_only + both + b_only)).astype(np.float64)
        return a, b
    return draw


def ranks(mu: float, sigma: float) -> Callable[[np.random.Generator, int, int], tuple[np.ndarray, ...]]:
    """Target ranks ceil(exp(N(mu, sigma))): many rank-1 queries and a long tail, like the gallery's."""
    return lambda rng, reps, n: (np.maximum(1.0, np.ceil(np.exp(rng.normal(mu, sigma, (reps, n))))),)


def paired_ranks(a: tuple[float, float], b: tuple[float, float], rho: float
                 ) -> Callable[[np.random.Generator, int, int], tuple[np.ndarray, ...]]:
    """Target ranks of two variants on the same queries, correlated (``rho``) through the query."""
    def draw(rng: np.random.Generator, reps: int, n: int) -> tuple[np.ndarray, ...]:
        z = rng.normal(size=(2, reps, n))
        zb = rho * z[0] + np.sqrt(1 - rho**2) * z[1]
        return (np.maximum(1.0, np.ceil(np.exp(a[0] + a[1] * z[0]))),
                np.maximum(1.0, np.ceil(np.exp(b[0] + b[1] * zb))))
    return draw


def rank_median(mu: float, sigma: float) -> float:
    """The population median of ceil(exp(N(mu, sigma))), the smallest m with P(rank <= m) >= 1/2."""
    m = 1
    while ndtr((np.log(m) - mu) / sigma) < 0.5:
        m += 1
    return float(m)


AMNET_RANK = (float(np.log(0.7)), 1.3)  # P(rank 1) ~ 0.61, R@10 ~ 0.98, median rank 1
IMAGE_RANK = (float(np.log(4.5)), 1.5)  # P(rank 1) ~ 0.16, R@10 ~ 0.70, median rank 5


def cells() -> list[Cell]:
    out = [Cell("mean", f"hits p={p}", n, p, binary(p)) for n in (300, 238) for p in (0.05, 0.6, 0.95, 0.97)]
    out += [Cell("pooled", f"3 seeds p={p}", 300, p, pooled(p)) for p in (0.6, 0.97)]
    for a_only, b_only, both, n in ((0.06, 0.08, 0.56, 238), (0.15, 0.08, 0.47, 238), (0.40, 0.03, 0.22, 238),
                                    (0.02, 0.01, 0.95, 300), (0.03, 0.02, 0.01, 300)):
        pa, pb = a_only + both, b_only + both
        out.append(Cell("diff", f"{pa:.2f} vs {pb:.2f}", n, a_only - b_only, paired_binary(a_only, b_only, both)))
    out += [Cell("median", "rank, median 1", 238, rank_median(*AMNET_RANK), ranks(*AMNET_RANK), "median"),
            Cell("median", "rank, median 5", 238, rank_median(*IMAGE_RANK), ranks(*IMAGE_RANK), "median"),
            Cell("median diff", "median 1 vs 5", 238, rank_median(*AMNET_RANK) - rank_median(*IMAGE_RANK),
                 paired_ranks(AMNET_RANK, IMAGE_RANK, 0.5), "median")]
    return out


def statistic_of(name: str, samples: int) -> Callable[..., np.ndarray]:
    """The vectorised statistic scipy calls: of one sample, or of the first minus the second (paired)."""
    agg = np.mean if name == "mean" else np.median
    if samples == 1:
        return lambda x, axis=-1: agg(x, axis=axis)
    return lambda a, b, axis=-1: agg(a, axis=axis) - agg(b, axis=axis)


def simulate(cell: Cell, reps: int, resamples: int, seed: list[int]) -> dict[str, float]:
    """Coverage and mean width of both intervals for ``cell`` over ``reps`` simulated data sets
    (``seed``: a list, the run's seed and the cell's position, so each cell has its own stream)."""
    rng = np.random.default_rng(seed)
    data = cell.draw(rng, reps, cell.n)
    stat = statistic_of(cell.statistic, len(data))
    block = max(1, BLOCK_ELEMENTS // (resamples * cell.n))
    batch = max(1, BLOCK_ELEMENTS // (block * cell.n))
    pct, bca, fallbacks = np.empty((reps, 2)), np.empty((reps, 2)), 0
    tail = (1 - LEVEL) / 2
    for s in range(0, reps, block):
        part = tuple(d[s : s + block] for d in data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # BCa's NaN on a constant jackknife: counted below
            res = sps.bootstrap(part, stat, n_resamples=resamples, batch=batch, vectorized=True,
                                paired=len(part) > 1, axis=-1, confidence_level=LEVEL, method="BCa",
                                rng=rng)
        p = np.quantile(res.bootstrap_distribution, [tail, 1 - tail], axis=-1).T  # the report's method
        b = np.stack([res.confidence_interval.low, res.confidence_interval.high], axis=-1)
        nan = np.isnan(b).any(-1)
        fallbacks += int(nan.sum())
        b[nan] = p[nan]
        pct[s : s + len(p)], bca[s : s + len(b)] = p, b

    def covers(iv: np.ndarray) -> float:
        return float(((iv[:, 0] <= cell.truth + 1e-12) & (cell.truth - 1e-12 <= iv[:, 1])).mean())

    return {"pct": covers(pct), "bca": covers(bca), "pct_w": float((pct[:, 1] - pct[:, 0]).mean()),
            "bca_w": float((bca[:, 1] - bca[:, 0]).mean()), "nan": fallbacks / reps}


def timing(resamples: int, seed: int, variants: int = 5, metrics: int = 15, n: int = 900) -> None:
    """Seconds for the intervals of one report: ``variants`` x ``metrics`` intervals of a mean over ``n``
    queries and (``variants`` - 1) x ``metrics`` paired differences, both methods on the same values."""
    from amnet.retrieval import stats as amnet_stats

    rng = np.random.default_rng(seed)
    values = (rng.random((variants, metrics, n)) < rng.uniform(0.05, 0.97, (1, metrics, 1))).astype(np.float64)
    mean = statistic_of("mean", 1)

    def percentile() -> None:
        for v in range(variants):
            for m in range(metrics):
                amnet_stats.bootstrap(values[v, m], resamples, seed)
                if v:
                    amnet_stats.paired_difference(values[0, m], values[v, m], resamples, seed)

    def bca() -> None:
        for v in range(variants):
            for m in range(metrics):
                for x in (values[v, m], values[0, m] - values[v, m]) if v else (values[v, m],):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        sps.bootstrap((x,), mean, n_resamples=resamples, vectorized=True, axis=-1,
                                      batch=max(1, 2_000_000 // n), method="BCa", rng=np.random.default_rng(seed))

    calls = variants * metrics + (variants - 1) * metrics
    for name, run in (("percentile (stats.bootstrap)", percentile), ("BCa (scipy.stats.bootstrap)", bca)):
        best = min(_seconds(run) for _ in range(3))
        print(f"{name}: {best:.2f} s for {calls} intervals over {n} queries, B = {resamples} (best of 3)")


def _seconds(run: Callable[[], None]) -> float:
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=2000, help="simulated data sets per cell")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples B (the report's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timing", action="store_true", help="time a report-sized workload with both methods instead")
    args = ap.parse_args()
    start = time.perf_counter()
    if args.timing:
        timing(args.resamples, args.seed)
        print(f"runtime {time.perf_counter() - start:.1f} s")
        return
    print(f"coverage of the nominal 95% interval; R = {args.reps} data sets per cell, B = {args.resamples}; "
          f"Monte Carlo sd of a coverage {np.sqrt(LEVEL * (1 - LEVEL) / args.reps):.3f}")
    header = ("kind", "cell", "n", "truth", "pct cover", "BCa cover", "pct width", "BCa width", "BCa NaN", "s")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    results: list[tuple[Cell, dict[str, float]]] = []
    for i, cell in enumerate(cells()):
        t = time.perf_counter()
        r = simulate(cell, args.reps, args.resamples, [args.seed, i])
        results.append((cell, r))
        print(f"| {cell.kind} | {cell.label} | {cell.n} | {cell.truth:g} | {r['pct']:.3f} | {r['bca']:.3f} | "
              f"{r['pct_w']:.4f} | {r['bca_w']:.4f} | {r['nan']:.3f} | {time.perf_counter() - t:.1f} |",
              flush=True)
    print()
    for scope, keep in (("hit rates and their differences", lambda c: c.statistic == "mean"), ("all cells", None)):
        chosen = [(c, r) for c, r in results if keep is None or keep(c)]
        for method, key in (("percentile", "pct"), ("BCa", "bca")):
            dev = [abs(r[key] - LEVEL) for _, r in chosen]
            worst_cell, worst = min(chosen, key=lambda cr, key=key: cr[1][key])
            print(f"{scope}: {method:10s} mean |coverage - 0.95| {np.mean(dev):.4f}, lowest coverage "
                  f"{worst[key]:.3f} ({worst_cell.kind} {worst_cell.label}, n = {worst_cell.n})")
    print(f"runtime {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
