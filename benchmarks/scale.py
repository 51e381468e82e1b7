"""Catalogue scale: validate+split, featurization and the index build at growing sizes.

For each size N (default 20,000 and 100,000; ``--with-300k`` adds 300,000) a synthetic catalogue at
64 px is built once under ``--workdir`` (default ``.amnet/bench/scale``): ``--unique`` garments are
rendered by the built-in generator and every row gets its own id and its own file, a hard link to one
of the rendered images (so building 300k rows costs seconds and little disk; the labels are the
rendered image's). Then each stage runs in its own fresh Python process (so each peak is that
stage's own, Linux ``VmHWM``):

* ``split``: ``amnet.data.split.run_split`` (the streamed validate + split), gallery N/2, the demo's
  other split settings; peak RSS of the main process and of the largest image-decoding process;
* ``featurize``: ``amnet.retrieval.featurize.run_featurize`` of the N/2 gallery with an untrained small
  CNN (64 px, Q = 256) on the CPU, default ``FeaturizeConfig``;
* ``index``: ``amnet.retrieval.feature_index.build_feature_index`` over the feature shards ("auto":
  exact below 50k vectors, else PQ fast-scan trained on a 65,536 sample + exact re-ranking), with
  recall@20 vs exact on 200 noisy gallery vectors (holding the exact index too is part of its peak).
  The catalogue repeats each rendered image, so exact top-20 lists are ties among identical vectors:
  recall is also printed counting every hit within the exact 20th distance ("counting ties").

Printed per stage and size: wall seconds, images/s, images per CPU-second ("per core": user + system
time of the stage process and the decode processes it waited for), peak RSS. Then, per stage, the
ratio of the peak RSS at the largest size to the smallest (goal <= 1.3 for split and featurize).

    .venv/bin/python benchmarks/scale.py [--sizes 20000,100000] [--with-300k] [--stages split,featurize,index]

The 1M x 256 search figure comes from ``benchmarks/search.py --n 1000000 --dims 256 --configs exact,pq``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
STAGES = ("split", "featurize", "index")
GOAL_RATIO = 1.3


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# ------------------------------------------------------------------------------------------- catalogue
def build_catalogue(path: Path, n: int, size: int, unique: int, seed: int = 0) -> str:
    """A dataset of ``n`` rows whose files are hard links to ``unique`` rendered garments (cached)."""
    if (path / "manifest.parquet").exists():
        return str(path)
    import shutil

    import pandas as pd

    sys.path.insert(0, str(HERE))
    import benchlib as bl

    from amnet.data.schema import write_dataset
    from amnet.data.synth import VOCAB

    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.perf_counter()
    labels, blobs = bl.render_pool(min(unique, n), size=size, seed=seed)
    (tmp / "rendered").mkdir(parents=True)
    for u, data in enumerate(blobs):
        (tmp / "rendered" / f"{u:06d}.jpg").write_bytes(data)
    rows = []
    for i in range(n):
        u = i % len(blobs)
        rel = f"images/{i // 10000:03d}/{i:07d}.jpg"
        dest = tmp / rel
        if i % 10000 == 0:
            dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(tmp / "rendered" / f"{u:06d}.jpg", dest)
        rows.append({"image_id": f"scale{seed}-{i:07d}", "image": rel,
                     **{a.name: a.values[int(v)] for a, v in zip(VOCAB.attributes, labels[u], strict=True)}})
    write_dataset(str(tmp), pd.DataFrame(rows, columns=["image_id", "image", *VOCAB.names]), VOCAB)
    os.replace(tmp, path)
    print(f"  catalogue {path.name}: {n} rows, {len(blobs)} rendered images, {time.perf_counter() - start:.0f} s",
          flush=True)
    return str(path)


# -------------------------------------------------------------------------------------------- children
def child_split(args: argparse.Namespace) -> dict:
    from amnet.config import SplitConfig
    from amnet.data import split, validate

    worker_peaks: list[float] = []
    original = validate.validate_to_staging

    def spy(*a, **k):
        staged = original(*a, **k)
        worker_peaks.append(staged.worker_peak_rss_mb)
        return staged

    validate.validate_to_staging = spy
    cfg = SplitConfig(gallery_size=args.n // 2, per_value=args.per_value)
    cpu0, start = cpu_seconds(), time.perf_counter()
    summary = split.run_split(args.dataset, args.out, cfg, progress=False, dataset_digest="bench", dataset_rows=-1)
    return {"images": args.n, "seconds": time.perf_counter() - start, "cpu_s": cpu_seconds() - cpu0,
            "peak_rss_mb": peak_rss_mb(), "worker_peak_rss_mb": max(worker_peaks or [0.0]),
            "gallery": summary["gallery"], "kept": summary["kept"]}


def child_featurize(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(HERE))
    import benchlib as bl

    from amnet.config import FeaturizeConfig
    from amnet.retrieval.featurize import run_featurize
    from amnet.runtime import match_torch_threads

    match_torch_threads()
    model = os.path.join(args.workdir, "model-small")
    if not os.path.exists(os.path.join(model, "model.pt")):
        bl.save_random_model(model, bl.model_config("small"))
    bl.use_device_in_stages(bl.resolve_device("cpu"))
    cpu0, start = cpu_seconds(), time.perf_counter()
    res = run_featurize(args.out_split, model, args.out, FeaturizeConfig(), progress=False)
    return {"images": res["count"], "seconds": time.perf_counter() - start, "cpu_s": cpu_seconds() - cpu0,
            "peak_rss_mb": peak_rss_mb()}


def child_index(args: argparse.Namespace) -> dict:
    import numpy as np

    from amnet.data import shards
    from amnet.retrieval.feature_index import build_exact, build_feature_index, load_feature_index
    from amnet.retrieval.featurize import decode_features

    first = shards.read_table(shards.list_shards(args.features)[0], ["feature"])
    q = decode_features(first["feature"][:200].tolist(), 256)
    q = q + np.random.default_rng(0).normal(0, 0.05, q.shape).astype(np.float32)
    cpu0, start = cpu_seconds(), time.perf_counter()
    res = build_feature_index(args.features, args.out, kind="auto", queries=q)
    seconds, cpu, peak = time.perf_counter() - start, cpu_seconds() - cpu0, peak_rss_mb()
    # The catalogue repeats each rendered image N / --unique times: a query's exact top 20 is a tie among
    # identical vectors, so id-based recall (index.json) is arbitrary; count hits within the 20th distance.
    index, _, _ = load_feature_index(args.out)
    exact = build_exact(shards.list_shards(args.features), 256)
    got, truth = index.search(q, 20)[0], exact.search(q, 20)[0]
    ties = float(np.mean((got <= truth[:, -1:] * (1 + 1e-5) + 1e-6).sum(1) / 20))
    return {"images": res["count"], "seconds": seconds, "cpu_s": cpu, "peak_rss_mb": peak, "kind": res["kind"],
            "recall_at_20": res["recall_at_20"], "recall_at_20_ties": round(ties, 4)}


def run_child(stage: str, **kw) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", stage]
    for key, value in kw.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{stage} child failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="20000,100000", help="catalogue sizes (comma separated)")
    p.add_argument("--with-300k", action="store_true", help="add 300,000 to the sizes")
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--unique", type=int, default=4000, help="distinct rendered garments per catalogue")
    p.add_argument("--workdir", default=str(ROOT / ".amnet" / "bench" / "scale"))
    p.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    for name in ("dataset", "out", "out-split", "features"):
        p.add_argument(f"--{name}", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--per-value", type=int, default=200, help="split: attribute-CNN images per value (200)")
    args = p.parse_args(argv)
    if args.child:
        result = {"split": child_split, "featurize": child_featurize, "index": child_index}[args.child](args)
        print("RESULT " + json.dumps(result), flush=True)
        return

    import shutil

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()] + ([300_000] if args.with_300k else [])
    stages = [s for s in args.stages.split(",") if s]
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    print(f"scale benchmark: sizes {sizes}, stages {stages}, {args.image_size} px, {cores} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, dict[int, dict]] = {s: {} for s in stages}
    for n in sizes:
        dataset = build_catalogue(work / f"catalogue-{n}-{args.image_size}px-u{args.unique}", n, args.image_size,
                                  args.unique)
        split_dir, feat_dir, index_dir = work / f"split-{n}", work / f"features-{n}", work / f"index-{n}"
        for stage, d in (("featurize", feat_dir), ("index", index_dir)):
            if stage in stages:
                shutil.rmtree(d, ignore_errors=True)
        for stage in stages:
            if stage == "split":
                shutil.rmtree(split_dir, ignore_errors=True)
                r = run_child("split", dataset=dataset, out=split_dir, n=n, workdir=work, per_value=args.per_value)
            elif stage == "featurize":
                r = run_child("featurize", out_split=split_dir, out=feat_dir, workdir=work)
            else:
                r = run_child("index", features=feat_dir, out=index_dir, workdir=work)
            results[stage][n] = r
            extra = (f", decode processes peak {r['worker_peak_rss_mb']:.0f} MB" if stage == "split" else
                     f", {r['kind']}, recall@20 {r['recall_at_20']} by id, {r['recall_at_20_ties']} counting ties"
                     if stage == "index" else "")
            print(f"  {stage:<9} N={n:>7}: {r['images']:>7} images in {r['seconds']:7.1f} s = "
                  f"{r['images'] / r['seconds']:7.0f} img/s, {r['images'] / max(r['cpu_s'], 1e-9):6.0f} img per "
                  f"CPU-s; peak RSS {r['peak_rss_mb']:6.0f} MB{extra} (load {os.getloadavg()[0]:.2f})", flush=True)
    lo, hi = min(sizes), max(sizes)
    if lo != hi:
        for stage in stages:
            ratio = results[stage][hi]["peak_rss_mb"] / results[stage][lo]["peak_rss_mb"]
            goal = (f" (goal <= {GOAL_RATIO})" if stage in ("split", "featurize")
                    else " (no goal: the index holds N vectors)")
            print(f"RATIO peak RSS {stage} {hi} / {lo}: {ratio:.2f}{goal}")
    print("JSON " + json.dumps({s: {str(n): r for n, r in v.items()} for s, v in results.items()}))


if __name__ == "__main__":
    main()
