"""Search over a 200k gallery: single-query latency (p50 / p99), batched throughput and recall@20.

Indexes, each over the same random features (``--n`` rows, float32, at each of ``--dims``):

* ``exact``: faiss ``IndexFlatL2`` through ``amnet.retrieval.index.build_index(kind="exact")`` (the pipeline's index
  below 50k vectors); single queries with 1 faiss thread and with all threads;
* ``pq``: the pipeline's own ``amnet.retrieval.index.PQRefineIndex`` built by
  ``amnet.retrieval.index.build_index(kind="auto")`` (what ``auto`` picks from 50k vectors: 4-bit PQ
  fast-scan over ``default_pq_m(D)`` sub-quantizers trained on every vector, exact re-ranking of the
  top k x 20), also at k_factor 10 and 40, and its recall checked with ``amnet.retrieval.index.recall_at_k``;
* ``ivf``: faiss ``IndexIVFFlat`` through ``amnet.retrieval.index.build_index(kind="ivf")`` (nlist =
  4 sqrt(N) = 1789 at 200k), swept over nprobe. Above 1024-D the coarse quantizer is
  trained on a ``--ivf-train`` subsample with faiss directly and wrapped in ``amnet.retrieval.index.IVFIndex``
  (training on all 200k x 4096 would take many minutes on 2 cores);
* compressed flat storage through faiss directly (amnet.retrieval.index has neither): ``IndexScalarQuantizer``
  fp16 and 8-bit (SQ8), and SQ8 with an exact re-ranking of its top ``k x k_factor`` (``IndexRefineFlat``);
* ``pqfs``: the same family through faiss directly (``IndexPQFastScan`` with D/2 sub-quantizers up to
  512-D, D/8 above, trained on a 50k sample) + exact re-ranking of the top 200 / 400 (``IndexRefineFlat``):
  other sub-quantizer counts than ``pq``'s;
* ``--hnsw``: faiss ``IndexHNSWFlat`` (M = 32) over efSearch (graph build takes minutes at 200k).

``--configs`` picks the families (default exact, pq, ivf, sq, pqfs); exact always runs (it is the truth).

``--kinds exact,ivf,pq,hnsw,auto`` instead measures amnet's own index kinds, each built by
``amnet.retrieval.index.build_index`` (ivf: ``IVFIndex`` with its k-means on a sample of
max(``--ivf-train``, 50 x nlist) vectors; hnsw: ``efSearch`` tuned by ``build_index`` to recall@20 >= 0.99 on
held-out gallery rows), at each of ``--sizes`` x ``--dims``, in one table per data set: build s (all faiss
threads), memory MB (the serialized index), single-query p50 / p99 with one faiss thread, recall@20 and
the ratios exact p50 / kind p50 and kind memory / exact memory. ``--sweep`` adds ivf nprobe and hnsw
efSearch rows around the defaults. GOAL marks p50 <= ``--goal-ms`` (1 ms) at recall@20 >= 0.99.

``--exact-cost`` times one exact query (one thread) over N x C uniform vectors for N in ``--sizes`` and
C in ``--dims`` and prints the cost per N * (C + 32), the model behind ``auto``'s exact budget.

recall@20 = |approximate top 20 ∩ exact top 20| / 20, averaged over the queries. Two feature
distributions: ``uniform`` (i.i.d. U[0, 1) per dimension: no structure, the worst case for IVF) and
``clustered`` (a Gaussian mixture: 1000 centres in U[0, 1)^D, sigma 0.1 per dimension, clipped at 0
like post-ReLU features), queries drawn fresh from the same distribution. The goal line names every
configuration with single-query p50 <= 10 ms and recall@20 >= 0.99; the RATIO lines give p50 / 10 ms of
exact search and of the index ``auto`` picks, with the latter's recall.

    .venv/bin/python benchmarks/search.py [--dims 256] [--dims 256,4096] [--n 200000] [--configs exact,pq] [--hnsw]
    .venv/bin/python benchmarks/search.py --sizes 1000000 --dims 256 --kinds exact,ivf,pq,hnsw,auto [--sweep]
    .venv/bin/python benchmarks/search.py --exact-cost --sizes 50000,200000,1000000 --dims 8,16,36,64
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time

import faiss
import numpy as np

from amnet.retrieval.index import (
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_HNSW_M,
    DEFAULT_NPROBE,
    EXACT_OVERHEAD,
    MAX_EF_SEARCH,
    HNSWIndex,
    IVFIndex,
    build_index,
    default_nlist,
    index_params,
    recall_at_k,
    resolve_kind,
)

GOAL_P50_MS = 10.0
GOAL_RECALL = 0.99
K = 20


def features(kind: str, n: int, d: int, seed: int, centres: np.ndarray | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.random((n, d), dtype=np.float32)
    out = np.empty((n, d), dtype=np.float32)
    step = 20_000  # chunks keep the temporaries small at 4096-D
    for s in range(0, n, step):
        m = min(step, n - s)
        which = rng.integers(len(centres), size=m)
        chunk = rng.standard_normal((m, d), dtype=np.float32)
        chunk *= 0.1
        chunk += centres[which]
        np.maximum(chunk, 0.0, out=chunk)
        out[s : s + m] = chunk
    return out


def latency(index, queries: np.ndarray, threads: int) -> tuple[float, float]:
    """(p50, p99) ms of one-query searches with ``threads`` faiss threads."""
    faiss.omp_set_num_threads(threads)
    for i in range(min(5, len(queries))):
        index.search(queries[i : i + 1], K)
    times = []
    for i in range(len(queries)):
        t = time.perf_counter()
        index.search(queries[i : i + 1], K)
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


def batched(index, queries: np.ndarray, threads: int) -> tuple[float, np.ndarray]:
    """(queries/s, ids (nq, K)) of one batched search with ``threads`` faiss threads."""
    faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    _, ids = index.search(queries, K)
    return len(queries) / (time.perf_counter() - t), np.asarray(ids)


def recall(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / K for a, b in zip(ids, truth, strict=True)]))


class RawFaiss:
    """A faiss index searched like amnet's wrappers (distances are not used here)."""

    def __init__(self, index):
        self.index = index

    def search(self, q, k):
        return self.index.search(np.ascontiguousarray(q, dtype=np.float32), k)


def run_dataset(name: str, x: np.ndarray, qs: np.ndarray, qb: np.ndarray, args, all_threads: int) -> list[dict]:
    n, d = x.shape
    rows: list[dict] = []

    def report(config: str, index, build_s: float, truth: np.ndarray | None, threads: int = 1) -> dict:
        p50, p99 = latency(index, qs, threads)
        qps = {}
        for th in sorted({1, all_threads}):
            qps[th], ids = batched(index, qb, th)
        rec = 1.0 if truth is None else recall(ids, truth)
        row = {"data": name, "n": n, "dim": d, "config": config, "build_s": build_s, "p50_ms": p50, "p99_ms": p99,
               "batched_qps": max(qps.values()), "batched_qps_by_threads": qps, "recall20": rec, "threads": threads}
        row["meets_goal"] = p50 <= GOAL_P50_MS and rec >= GOAL_RECALL
        rows.append(row)
        print(f"  {config:<40} {build_s:7.1f} {p50:8.2f} {p99:8.2f} "
              + " ".join(f"{qps[th]:9.0f}" for th in sorted(qps))
              + f" {rec:9.4f}  {'GOAL' if row['meets_goal'] else ''}", flush=True)
        return row

    print(f"[{d}-D {name}] {n:,} x {d} float32 ({x.nbytes / 2**30:.2f} GiB), {len(qs)} single queries "
          f"(1 faiss thread unless noted), {len(qb)} batched (q/s with 1 and {all_threads} threads), k = {K}")
    print(f"  {'config':<40} {'build s':>7} {'p50 ms':>8} {'p99 ms':>8} "
          + " ".join(f"{f'q/s {th}t':>9}" for th in sorted({1, all_threads})) + f" {'recall@20':>9}")
    t = time.perf_counter()
    exact = build_index(x, "exact")
    build = time.perf_counter() - t
    _, truth = batched(exact, qb, all_threads)
    report("exact (amnet.retrieval.index, IndexFlatL2)", exact, build, None, threads=1)
    if all_threads > 1 and "exact" in args.configs:
        report(f"exact, {all_threads} faiss threads per query", exact, build, None, threads=all_threads)
    if "pq" in args.configs:
        run_pq(x, qb, exact, truth, report)
    del exact
    gc.collect()

    if "ivf" in args.configs:
        run_ivf(x, truth, args, report)
    if "sq" in args.configs:
        run_sq(x, truth, report)
    if "pqfs" in args.configs:
        run_pqfs(x, truth, report)
    if "hnsw" in args.configs:
        run_hnsw(x, truth, report, all_threads)
    return summarize(rows, name, d)


def run_pq(x: np.ndarray, qb: np.ndarray, exact, truth: np.ndarray, report) -> None:
    """The pipeline's index for this gallery: ``build_index(x, "auto")`` when auto picks pq (from 50k vectors,
    above the exact budget at small D), else ``build_index(x, "pq")``."""
    n, d = x.shape
    auto = resolve_kind("auto", n, d)
    t = time.perf_counter()
    index = build_index(x, "auto" if auto == "pq" else "pq")
    build = time.perf_counter() - t
    how = f"build_index(kind='auto') -> {index!r}" if auto == "pq" else f"build_index(kind='pq') -> {index!r}"
    print(f"    (amnet pq: {how}; at {n:,} vectors kind='auto' picks {auto!r})")
    default = index.k_factor
    for factor in sorted({default // 2, default, 2 * default}):
        index.k_factor = factor
        tag = " = auto" if factor == default and auto == "pq" else ""
        row = report(f"amnet pq{tag}, re-rank top {factor * K}", index, build if factor == default else 0.0, truth)
        row["auto"] = bool(tag)
        if factor == default:
            row["recall_at_k_amnet"] = recall_at_k(index, exact, qb, K)  # the function evaluate records
    index.k_factor = default
    del index
    gc.collect()


def run_ivf(x: np.ndarray, truth: np.ndarray, args, report) -> None:
    n, d = x.shape
    nlist = default_nlist(n)
    t = time.perf_counter()
    if d <= 1024:
        ivf = build_index(x, "ivf", nlist=nlist)
        how = "built by amnet.retrieval.index.build_index(kind='ivf')"
    else:
        sample = x[np.random.default_rng(1).choice(n, min(n, args.ivf_train), replace=False)]
        ivf = IVFIndex(d, nlist=nlist)
        ivf.faiss_index.train(sample)
        ivf.add(x)
        how = f"k-means on a {len(sample) // 1000}k sample, then amnet.retrieval.index.IVFIndex.add"
    build = time.perf_counter() - t
    for nprobe in [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256) if p <= nlist]:
        ivf.nprobe = nprobe
        tag = " (default nprobe)" if nprobe == DEFAULT_NPROBE else ""
        report(f"ivf nlist={nlist} nprobe={nprobe}{tag}", ivf, build if nprobe == 1 else 0.0, truth)
    print(f"    (ivf {how}; build time on the first row)")
    del ivf
    gc.collect()


def run_sq(x: np.ndarray, truth: np.ndarray, report) -> None:
    d = x.shape[1]
    for qt, label in ((faiss.ScalarQuantizer.QT_fp16, "fp16"), (faiss.ScalarQuantizer.QT_8bit, "SQ8")):
        t = time.perf_counter()
        sq = faiss.IndexScalarQuantizer(d, qt, faiss.METRIC_L2)
        sq.train(x)
        sq.add(x)
        build = time.perf_counter() - t
        report(f"flat {label} (faiss IndexScalarQuantizer)", RawFaiss(sq), build, truth)
        del sq
        gc.collect()
    base = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
    report_refined(base, x, x, (2, 4), lambda f: f"flat SQ8 + exact re-rank of top {f * K}", truth, report)


def report_refined(base, train_x: np.ndarray, x: np.ndarray, factors: tuple[int, ...], label, truth: np.ndarray,
                   report) -> None:
    """Train ``base`` on ``train_x``, wrap it in an exact re-ranking of its best k x k_factor
    (``IndexRefineFlat``, which keeps the float32 vectors too), add ``x`` and report each factor; the
    build time goes on the first row."""
    t = time.perf_counter()
    base.train(train_x)
    refine = faiss.IndexRefineFlat(base)
    refine.add(x)
    build = time.perf_counter() - t
    for i, factor in enumerate(factors):
        refine.k_factor = factor
        report(label(factor), RawFaiss(refine), build if i == 0 else 0.0, truth)
    del refine
    gc.collect()


def run_pqfs(x: np.ndarray, truth: np.ndarray, report) -> None:
    """Product quantisation with 4-bit codes scanned by SIMD lookups (faiss IndexPQFastScan, d/2 bytes per
    vector up to 512-D, d/8 above), then an exact re-ranking of the best k x k_factor (IndexRefineFlat)."""
    n, d = x.shape
    m = d // 2 if d <= 512 else d // 8
    base = faiss.IndexPQFastScan(d, m, 4, faiss.METRIC_L2)
    sample = x[np.random.default_rng(2).choice(n, min(n, 50_000), replace=False)]
    report_refined(base, sample, x, (10, 20), lambda f: f"PQ{m}x4 fast-scan + re-rank of top {f * K}", truth, report)


def run_hnsw(x: np.ndarray, truth: np.ndarray, report, all_threads: int) -> None:
    d = x.shape[1]
    t = time.perf_counter()
    faiss.omp_set_num_threads(all_threads)
    hnsw = faiss.IndexHNSWFlat(d, 32)
    hnsw.add(x)
    build = time.perf_counter() - t
    for ef in (16, 32, 64, 128, 256):
        hnsw.hnsw.efSearch = ef
        report(f"hnsw M=32 efSearch={ef}", RawFaiss(hnsw), build if ef == 16 else 0.0, truth)
    del hnsw
    gc.collect()


def summarize(rows: list[dict], name: str, d: int) -> list[dict]:
    exact = rows[0]
    print(f"RATIO search exact single-query p50 / {GOAL_P50_MS:.0f} ms = {exact['p50_ms'] / GOAL_P50_MS:.3f} "
          f"(p50 {exact['p50_ms']:.2f} ms, 1 faiss thread) [{d}-D {name}, {exact['n']:,} vectors]")
    auto = next((r for r in rows if r.get("auto")), None)
    if auto:
        print(f"RATIO search auto index (amnet pq) single-query p50 / {GOAL_P50_MS:.0f} ms = "
              f"{auto['p50_ms'] / GOAL_P50_MS:.3f} (p50 {auto['p50_ms']:.2f} ms, recall@20 {auto['recall20']:.4f}, "
              f"amnet.retrieval.index.recall_at_k {auto['recall_at_k_amnet']:.4f}; exact / auto p50 = "
              f"{exact['p50_ms'] / auto['p50_ms']:.1f}x) [{d}-D {name}, {auto['n']:,} vectors]")
    meets = [r["config"] for r in rows if r["meets_goal"]]
    fastest = min((r for r in rows if r["meets_goal"]), key=lambda r: r["p50_ms"], default=None)
    print(f"GOAL [{d}-D {name}] single-query p50 <= {GOAL_P50_MS:.0f} ms with recall@20 >= {GOAL_RECALL}: "
          + (f"met by {len(meets)} config(s); fastest {fastest['config']} (p50 {fastest['p50_ms']:.2f} ms, "
             f"recall {fastest['recall20']:.4f}); exact p50 / 10 ms = {rows[0]['p50_ms'] / GOAL_P50_MS:.2f}"
             if fastest else "NOT met by any configuration "
             f"(exact p50 / 10 ms = {rows[0]['p50_ms'] / GOAL_P50_MS:.2f})"))
    return rows


def memory_mb(index) -> float:
    """Size of the serialized faiss index, MB (what a stored index takes, about what it holds in memory)."""
    return faiss.serialize_index(index.faiss_index).nbytes / 2**20


def build_kind(kind: str, x: np.ndarray, args):
    """``(index, note)``: amnet's index of ``kind`` over ``x``; ivf's k-means runs on a seeded sample."""
    n, d = x.shape
    if kind != "ivf":
        index = build_index(x, kind, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction)
        return index, ""
    nlist = default_nlist(n)
    sample = x[np.random.default_rng(1).choice(n, min(n, max(args.ivf_train, 50 * nlist)), replace=False)]
    index = IVFIndex(d, nlist=nlist)
    index.faiss_index.train(sample)
    index.add(x)
    return index, f"k-means on {len(sample):,} vectors"


def run_kinds(name: str, x: np.ndarray, qs: np.ndarray, qb: np.ndarray, args, all_threads: int) -> list[dict]:
    """One table: amnet's index kinds over ``x``, ratios to exact search measured in the same run."""
    n, d = x.shape
    rows: list[dict] = []
    print(f"[{d}-D {name}] {n:,} x {d} float32 ({x.nbytes / 2**30:.2f} GiB), load average "
          f"{os.getloadavg()[0]:.2f}; build with {all_threads} faiss threads, {len(qs)} single queries with 1, "
          f"recall@20 over {len(qb)} queries vs exact")
    print(f"  {'kind':<34} {'build s':>8} {'mem MB':>8} {'p50 ms':>8} {'p99 ms':>8} {'recall@20':>9} "
          f"{'exact/p50':>9} {'mem/exact':>9}")

    def row(label: str, index, build_s: float, mem: float, truth: np.ndarray | None, **extra) -> dict:
        p50, p99 = latency(index, qs, 1)
        rec = 1.0 if truth is None else recall(batched(index, qb, all_threads)[1], truth)
        r = {"data": name, "n": n, "dim": d, "kind": label, "build_s": build_s, "memory_mb": mem, "p50_ms": p50,
             "p99_ms": p99, "recall20": rec, **extra}
        base = rows[0] if rows else r
        r["speedup_p50"] = base["p50_ms"] / p50
        r["memory_ratio"] = mem / base["memory_mb"] if mem else 0.0
        r["meets_goal"] = p50 <= args.goal_ms and rec >= GOAL_RECALL
        rows.append(r)
        print(f"  {label:<34} {build_s:8.1f} {mem:8.0f} {p50:8.3f} {p99:8.2f} {rec:9.4f} {r['speedup_p50']:8.1f}x "
              f"{r['memory_ratio']:8.2f}x  {'GOAL' if r['meets_goal'] else ''}", flush=True)
        return r

    t = time.perf_counter()
    exact = build_index(x, "exact")
    build = time.perf_counter() - t
    _, truth = batched(exact, qb, all_threads)
    row("exact", exact, build, memory_mb(exact), None)
    del exact
    gc.collect()
    for kind in [k for k in args.kinds if k != "exact"]:
        faiss.omp_set_num_threads(all_threads)
        t = time.perf_counter()
        index, note = build_kind(kind, x, args)
        build = time.perf_counter() - t
        mem = memory_mb(index)
        params = index_params(index)
        label = f"auto -> {index.kind}" if kind == "auto" else kind
        if isinstance(index, HNSWIndex):
            tuned = index.tuning or {}
            label += f" M={index.m} ef={index.ef_search}"
            note = (f"efSearch {index.ef_search} tuned on {tuned.get('queries', 0)} held-out rows: recall@20 "
                    f"{tuned.get('recall', float('nan')):.4f} (target {tuned.get('target', GOAL_RECALL)})"
                    + ("" if tuned.get("reached", True) else ", NOT reached"))
        elif isinstance(index, IVFIndex):
            label += f" nlist={index.nlist} nprobe={index.nprobe}"
        elif kind in ("pq", "auto") and index.kind == "pq":
            label += f" m={params['m']} re-rank {params['k_factor'] * K}"
        row(label, index, build, mem, truth, params=params)
        if note:
            print(f"    ({kind}: {note})")
        if args.sweep and isinstance(index, HNSWIndex):
            tuned_ef = index.ef_search
            efs = {max(K, tuned_ef // 4), max(K, tuned_ef // 2), 2 * tuned_ef, 4 * tuned_ef}
            for ef in sorted(e for e in efs if e != tuned_ef and e <= MAX_EF_SEARCH):
                index.ef_search = ef
                row(f"  hnsw ef={ef}", index, 0.0, mem, truth, sweep=True)
            index.ef_search = tuned_ef
        if args.sweep and isinstance(index, IVFIndex):
            for nprobe in [p for p in (4, 8, 16, 64, 128, 256) if p <= index.nlist]:
                index.nprobe = nprobe
                row(f"  ivf nprobe={nprobe}", index, 0.0, mem, truth, sweep=True)
        del index
        gc.collect()
    for r in (r for r in rows[1:] if not r.get("sweep")):
        print(f"RATIO search {r['kind'].strip()} p50 / exact p50 = {1 / r['speedup_p50']:.4f} "
              f"(p50 {r['p50_ms']:.3f} ms vs {rows[0]['p50_ms']:.2f} ms, recall@20 {r['recall20']:.4f}, "
              f"build {r['build_s']:.1f} s, {r['memory_mb']:.0f} MB) [{d}-D {name}, {n:,} vectors]")
    goal = [r for r in rows if r["meets_goal"]]
    best = min(goal, key=lambda r: r["p50_ms"], default=None)
    top = max(rows[1:], key=lambda r: (r["recall20"] >= GOAL_RECALL, -r["p50_ms"], r["recall20"]), default=None)
    print(f"GOAL [{d}-D {name}, {n:,}] single-query p50 <= {args.goal_ms:g} ms at recall@20 >= {GOAL_RECALL}: "
          + (f"met by {best['kind'].strip()} (p50 {best['p50_ms']:.3f} ms, recall {best['recall20']:.4f})" if best
             else "NOT met" + (f"; best at recall >= {GOAL_RECALL}: {top['kind'].strip()} p50 {top['p50_ms']:.3f} ms"
                               if top and top["recall20"] >= GOAL_RECALL else "")))
    return rows


def exact_cost(args) -> list[dict]:
    """p50 of one exact query (one faiss thread) over uniform N x C vectors: the cost model of auto's budget."""
    rows = []
    rng = np.random.default_rng(args.seed)
    print(f"exact single-query cost, 1 faiss thread, load average {os.getloadavg()[0]:.2f}; "
          f"cost model N * (C + {EXACT_OVERHEAD})")
    print(f"  {'C':>5} {'N':>10} {'p50 ms':>8} {'ns / N(C+32)':>13} {'auto':>6}")
    for d in args.dim_list:
        for n in args.size_list:
            index = build_index(rng.random((n, d), dtype=np.float32), "exact")
            p50, _ = latency(index, rng.random((args.queries, d), dtype=np.float32), 1)
            unit = p50 * 1e6 / (n * (d + EXACT_OVERHEAD))
            rows.append({"dim": d, "n": n, "p50_ms": p50, "ns_per_unit": unit, "auto": resolve_kind("auto", n, d)})
            print(f"  {d:>5} {n:>10,} {p50:8.3f} {unit:13.4f} {rows[-1]['auto']:>6}", flush=True)
            del index
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000, help="gallery size")
    p.add_argument("--dims", default="256", help="comma separated; 4096 needs about 3.2 GB per copy")
    p.add_argument("--data", default="uniform,clustered")
    p.add_argument("--queries", type=int, default=200, help="timed single queries per configuration")
    p.add_argument("--batch", type=int, default=1000, help="queries in the batched search (and for recall)")
    p.add_argument("--ivf-train", type=int, default=25_000, help="k-means sample above 1024-D")
    p.add_argument("--configs", default="exact,pq,ivf,sq,pqfs",
                   help="index families to measure: exact, pq (amnet.retrieval.index's PQRefineIndex, what auto "
                        "picks from 50k), ivf, sq (fp16 / SQ8 / SQ8 + re-rank), pqfs (PQ fast-scan + re-rank "
                        "through faiss directly), hnsw")
    p.add_argument("--hnsw", action="store_true", help="same as adding hnsw to --configs (minutes at 200k)")
    p.add_argument("--sizes", default="", help="comma separated gallery sizes (default: --n)")
    p.add_argument("--kinds", default="", help="amnet index kinds to compare in one table per data set (exact, ivf, "
                   "pq, hnsw, auto), each built by amnet.retrieval.index.build_index; replaces --configs")
    p.add_argument("--sweep", action="store_true", help="with --kinds: ivf nprobe and hnsw efSearch rows as well")
    p.add_argument("--hnsw-m", type=int, default=DEFAULT_HNSW_M, help="with --kinds: hnsw links per node")
    p.add_argument("--ef-construction", type=int, default=DEFAULT_EF_CONSTRUCTION,
                   help="with --kinds: hnsw construction beam")
    p.add_argument("--goal-ms", type=float, default=1.0, help="with --kinds: the p50 goal (ms) at recall@20 >= 0.99")
    p.add_argument("--exact-cost", action="store_true", help="time exact search over --sizes x --dims and exit")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.configs = set(args.configs.split(",")) | ({"hnsw"} if args.hnsw else set())
    args.kinds = ["exact"] + [k for k in args.kinds.split(",") if k and k != "exact"] if args.kinds else []
    args.size_list = [int(v) for v in (args.sizes or str(args.n)).split(",")]
    args.dim_list = [int(v) for v in args.dims.split(",")]
    if args.exact_cost:
        rows = exact_cost(args)
        print("JSON " + json.dumps({"exact_cost": rows}, default=float))
        return rows
    all_threads = faiss.omp_get_max_threads()
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"search benchmark: faiss {faiss.__version__}, {all_threads} OpenMP threads, {os.cpu_count()} CPUs{load}")
    rows: list[dict] = []
    for n in args.size_list:
        for d in args.dim_list:
            for name in args.data.split(","):
                centres = np.random.default_rng(args.seed + 7).random((1000, d), dtype=np.float32)
                x = features(name, n, d, args.seed, centres)
                qs = features(name, args.queries, d, args.seed + 1, centres)
                qb = features(name, args.batch, d, args.seed + 2, centres)
                run = run_kinds if args.kinds else run_dataset
                rows += run(name, x, qs, qb, args, all_threads)
                del x
                gc.collect()
    faiss.omp_set_num_threads(all_threads)
    print("JSON " + json.dumps({"search": rows}, default=float))
    return rows


if __name__ == "__main__":
    main()
