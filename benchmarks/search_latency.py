"""Single-query search latency (p50 / p99), manipulation included, against the paper's 0.2 s per query.

One query = decode the query image + represent it (r) + manipulate it with one or two attribute
changes (Eq. 1 + Eq. 3) + exact Euclidean search for the top ``k`` (faiss ``IndexFlatL2``). Measured:

1. the built-in gallery through :meth:`amnet.search.searcher.Searcher.search` (its default index kind "auto":
   exact below 50k images, so exact here; query by gallery id: the
   stored JPEG is decoded and represented, as for an upload), through the upload path (the image
   bytes, with the untrusted-image check), and through ``amnet serve``'s HTTP API;
2. a 200,000-image gallery of random features at the model's search dimension (Q for r′-vs-r search,
   C for ``train.retrieval: attributes``; the paper's gallery size), same model and queries, exact search.

Without ``--model`` it builds what it needs in a temporary folder: the built-in synthetic dataset
(``--num-images``), a split with a 2,000-image gallery, and an *untrained* AMNet at the default
architecture (64 px small CNN, Q = 256): weights do not change latency. Prints each p50 / p99 and its
ratio to 0.2 s, measured in this run, with the machine's load average (other processes on a shared
CPU show up in p99 first).

    .venv/bin/python benchmarks/search_latency.py [--model M --features F --gallery SPLIT] [--queries 200]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable

import faiss
import numpy as np
import torch

from amnet.config import ModelConfig, SplitConfig
from amnet.search.searcher import Searcher

PAPER_SECONDS = 0.2  # the paper's reported time per query (§5, 200k gallery)


def build_untrained(root: str, num_images: int, gallery_size: int, cfg: ModelConfig) -> tuple[str, str]:
    """(model folder, split folder): synthetic dataset + split + an untrained AMNet of ``cfg``."""
    from amnet import config as cfgmod
    from amnet.data.schema import load_vocabulary
    from amnet.data.split import run_split
    from amnet.data.synth import generate
    from amnet.model_store import build_model, save_model

    dataset, split, model = (os.path.join(root, n) for n in ("dataset", "split", "model"))
    generate(dataset, num_images, seed=0, image_size=128, progress=False)
    run_split(dataset, split, SplitConfig(per_value=20, gallery_size=gallery_size, num_queries=10), progress=False)
    vocab = load_vocabulary(split)
    torch.manual_seed(0)
    net = build_model("amnet", "amnet", cfg, vocab)
    save_model(model, "amnet", "amnet", net, cfgmod.to_dict(cfg), vocab.to_json())
    return model, split


def percentiles(fn: Callable[[int], object], n: int, warmup: int = 10) -> tuple[float, float]:
    """(p50, p99) seconds of ``fn(i)`` over ``n`` calls after ``warmup`` untimed ones."""
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def random_changes(searcher: Searcher, n: int, seed: int = 0) -> list[dict[str, str]]:
    """``n`` random manipulations of one or two attributes (the paper's §5.2 and §5.5 queries)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        attrs = rng.choice(searcher.vocab.num_attributes, size=int(rng.integers(1, 3)), replace=False)
        out.append({searcher.vocab.attributes[a].name: str(rng.choice(searcher.vocab.attributes[a].values))
                    for a in attrs})
    return out


def http_search(url: str, body: dict) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def report(name: str, p50: float, p99: float) -> dict:
    print(f"  {name:<52} p50 {p50 * 1000:8.2f} ms  p99 {p99 * 1000:8.2f} ms   "
          f"p50 / 0.2 s = {p50 / PAPER_SECONDS:.4f}")
    return {"p50_ms": round(p50 * 1000, 3), "p99_ms": round(p99 * 1000, 3), "p50_over_paper": p50 / PAPER_SECONDS}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder or MLflow URI (default: build an untrained one)")
    parser.add_argument("--features", help="gallery features (default: featurize the gallery now)")
    parser.add_argument("--gallery", help="the split (required with --model unless it is registered)")
    parser.add_argument("--num-images", type=int, default=3000, help="synthetic images when building")
    parser.add_argument("--gallery-size", type=int, default=2000)
    parser.add_argument("--big", type=int, default=200_000, help="random-feature gallery size")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per measurement")
    parser.add_argument("-k", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: one "
                        "small query gains little from more, and on a shared CPU they wait for busy cores; 0 = torch "
                        "default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="amnet-latency-") as tmp:
        model, gallery, features = args.model, args.gallery, args.features
        if not model:
            model, gallery = build_untrained(tmp, args.num_images, args.gallery_size, ModelConfig())
        searcher = Searcher.load(model, features=features, gallery=gallery)
    if not searcher.has_images:
        raise SystemExit("the benchmark needs gallery images: pass --gallery SPLIT")
    n, q = searcher.size, searcher.loaded.retrieval_dim  # what is searched: Q (r' vs r) or C (attribute space)
    ids = searcher.sample(min(n, args.queries + 10), seed=1)
    changes = random_changes(searcher, len(ids))

    def pick(i: int) -> tuple[str, dict[str, str]]:
        return ids[i % len(ids)], changes[i % len(changes)]

    size = searcher.loaded.model_config.image_size
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"model {args.model or 'untrained AMNet (built here)'} ({searcher.loaded.variant}, {size} px, dim {q}); "
          f"torch threads {torch.get_num_threads()}, {args.queries} queries, k = {args.k}, 1-2 changes each; "
          f"{os.cpu_count()} CPUs{load}")
    results: dict = {"gallery_size": n, "dim": q}

    kind = getattr(searcher.index, "kind", type(searcher.index).__name__)
    print(f"built-in gallery: {n} images, {kind} index (the Searcher's default kind 'auto': exact below 50k images)")
    results["by_gallery_id"] = report("search by gallery id (decode+r+r'+search)", *percentiles(
        lambda i: searcher.search(pick(i)[0], pick(i)[1], args.k), args.queries))
    blobs = [searcher.image_bytes(i) for i in ids]
    results["upload"] = report("search by upload (+ image check)", *percentiles(
        lambda i: searcher.search(blobs[i % len(blobs)], pick(i)[1], args.k), args.queries))
    vectors = [searcher.query_vector(pick(i)[0], pick(i)[1])[0] for i in range(len(ids))]
    results["manipulate_only"] = report("decode + represent + manipulate only", *percentiles(
        lambda i: searcher.query_vector(pick(i)[0], pick(i)[1]), args.queries))
    results["index_kind"] = kind
    results["index_only"] = report(f"{kind} faiss search only", *percentiles(
        lambda i: searcher.index.search(vectors[i % len(vectors)], args.k), args.queries))

    from amnet.search.server import make_server

    server = make_server(searcher, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/search"
    results["http_gallery_id"] = report("amnet serve: POST /api/search (gallery id)", *percentiles(
        lambda i: http_search(url, {"gallery_id": pick(i)[0], "changes": pick(i)[1], "k": args.k}), args.queries))
    uploads = [base64.b64encode(b).decode() for b in blobs]
    results["http_upload"] = report("amnet serve: POST /api/search (upload)", *percentiles(
        lambda i: http_search(url, {"upload": uploads[i % len(uploads)], "changes": pick(i)[1], "k": args.k}),
        args.queries))
    server.shutdown()
    server.server_close()

    print(f"random-feature gallery: {args.big:,} x {q} float32, exact search (IndexFlatL2)")
    from amnet.retrieval.index import build_index

    rng = np.random.default_rng(0)
    scale = float(np.std(searcher.features)) or 1.0
    big = build_index((rng.standard_normal((args.big, q), dtype=np.float32) * scale), "exact")

    def big_query(i: int) -> None:
        vec, _ = searcher.query_vector(pick(i)[0], pick(i)[1])
        big.search(vec, args.k)

    # One query scans the whole 200k x Q matrix; on a shared CPU, OpenMP threads that wait for a busy
    # core can cost more than they save, so both one thread and all threads are measured.
    default_threads = faiss.omp_get_max_threads()
    for threads in sorted({1, default_threads}):
        faiss.omp_set_num_threads(threads)
        tag = f"{args.big:,}, faiss {threads} thread{'s' if threads > 1 else ''}"
        results[f"big_end_to_end_{threads}t"] = report(f"{tag}: decode+r+r'+search", *percentiles(
            big_query, args.queries))
        results[f"big_index_only_{threads}t"] = report(f"{tag}: search only", *percentiles(
            lambda i: big.search(vectors[i % len(vectors)], args.k), args.queries))
    faiss.omp_set_num_threads(default_threads)
    print(json.dumps(results, default=float))
    return results


if __name__ == "__main__":
    main()
