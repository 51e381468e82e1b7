"""Peak memory of evaluation against the gallery size: ``run_evaluate`` at 20k and 300k gallery images.

For each configuration ``DIM:VARIANT:INDEX`` (default ``256:amnet:auto``, ``256:attribute_based:auto`` and
``4096:amnet:exact``, the paper's AlexNet fc7 width) and each gallery size (default 20,000 and 300,000), a
split and a feature artifact are synthesised under ``--workdir`` (cached): random fp16 gallery vectors in
shards of 2,000 rows with random labels (and predicted labels for the attribute baseline), gallery image
shards with a few small rendered JPEGs (for the Fig. 7 thumbnails), ``--queries`` rendered query images
(half one change, half two) each naming a random gallery image as its exact target, and a random-weight
small CNN whose retrieval vectors have DIM values (an attribute CNN for ``attribute_based``). With INDEX
``auto`` the build-index stage's index is stored with the features first (exact below 50k vectors, PQ +
re-rank above), as the pipeline does; with ``exact`` none is (evaluation searches exactly by itself).

Then ``run_evaluate`` runs in a fresh Python process per configuration, size and side, and the child's own
peak RSS is read (Linux ``VmHWM``; ``getrusage().ru_maxrss`` would carry the parent's peak over fork +
exec). With ``--baseline-rev REV`` each run is repeated with REV's ``src/`` (``revision.py`` extracts it with
``git archive``), alternating sides, on the same data; the outputs of the two sides are compared
(``per_query.parquet`` and ``metrics.json`` but its timings: "identical" or what differs). A baseline run
whose float32 gallery matrix alone would exceed ``--baseline-max-gb`` is skipped (the in-memory path holds
that matrix more than once).

Printed per run: wall seconds, peak RSS; then per configuration and side the ratio of the peak RSS at the
largest size to the smallest (goal <= 1.3 for this tree).

    .venv/bin/python benchmarks/evaluate_memory.py [--sizes 20000,300000] [--configs 256:amnet:auto,...]
        [--queries 300] [--baseline-rev HEAD]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CONFIGS = ("256:amnet:auto", "256:attribute_based:auto", "4096:amnet:exact")
GOAL_RATIO = 1.3
SHARD_ROWS = 2000
TIMES = ("seconds", "search_ms_per_query", "manipulate_ms_per_query", "query_ms_per_query")


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


# ------------------------------------------------------------------------------------------- synthetic data
def build_inputs(work: Path, dim: int, n: int, variant: str, queries: int, seed: int = 0) -> dict[str, str]:
    """The split, model and feature artifact of one configuration and size (cached under ``work``)."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(HERE))
    import benchlib as bl

    from amnet.data import shards
    from amnet.data.synth import VOCAB
    from amnet.model_store import load_model

    kind = "attribute_cnn" if variant == "attribute_based" else "amnet"
    model = work / f"model-{kind}-{dim}"
    if not (model / "model.pt").exists():
        bl.save_random_model(str(model), bl.model_config("small", feature_dim=dim), kind=kind)
    loaded = load_model(str(model), "cpu")
    if loaded.retrieval_dim != dim:
        raise SystemExit(f"the random {kind} model searches {loaded.retrieval_dim}-D vectors, not {dim}")
    sizes = np.asarray(VOCAB.sizes)
    m = len(sizes)
    split = work / f"split-{n}-q{queries}"
    if not (split / "split.json").exists():
        tmp = split.with_name(split.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        rng = np.random.default_rng(seed)
        qlabels, qblobs = bl.render_pool(queries, size=64, seed=seed + 1)
        blobs = bl.render_pool(16, size=64, seed=seed + 2)[1]  # gallery thumbnails: a few images, repeated
        (tmp / "gallery").mkdir(parents=True)
        Path(tmp, "attributes.json").write_text(VOCAB.to_json())
        for s, start in enumerate(range(0, n, SHARD_ROWS)):
            idx = np.arange(start, min(start + SHARD_ROWS, n))
            shards.write_table(str(tmp / "gallery" / shards.shard_name(s)), pd.DataFrame({
                "image_id": [f"g{i:07d}" for i in idx], "image_bytes": [blobs[i % len(blobs)] for i in idx]}))
        rows = []
        for i in range(queries):
            changed = sorted(rng.choice(m, 1 + (i >= queries // 2), replace=False).tolist())
            target = qlabels[i].astype(np.int64).copy()
            for a in changed:
                target[a] = (target[a] + 1 + rng.integers(sizes[a] - 1)) % sizes[a]
            rows.append({"image_id": f"q{i:05d}", "image_bytes": qblobs[i], "labels": qlabels[i].tolist(),
                         "target": target.tolist(), "changed": changed, "num_changes": len(changed),
                         "target_id": f"g{int(rng.integers(n)):07d}"})
        shards.write_shards(pd.DataFrame(rows), str(tmp / "queries"), SHARD_ROWS)
        Path(tmp, "split.json").write_text(json.dumps({"config": {"shard_size": SHARD_ROWS}}))
        os.replace(tmp, split)
    features = work / f"features-{kind}-{dim}-{n}"
    if not (features / "features.json").exists():
        tmp = features.with_name(features.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        rng = np.random.default_rng(seed + 3)
        for s, start in enumerate(range(0, n, SHARD_ROWS)):
            idx = np.arange(start, min(start + SHARD_ROWS, n))
            x = rng.standard_normal((len(idx), dim), dtype=np.float32).astype(np.float16)
            labels = rng.integers(0, sizes, (len(idx), m))
            frame = pd.DataFrame({"image_id": [f"g{i:07d}" for i in idx], "labels": list(labels.tolist()),
                                  "feature": [row.tobytes() for row in x]})
            if kind == "attribute_cnn":
                frame["pred_labels"] = list(rng.integers(0, sizes, (len(idx), m)).tolist())
            shards.write_table(str(tmp / shards.shard_name(s)), frame)
        Path(tmp, "features.json").write_text(json.dumps({
            "dim": dim, "count": n, "dtype": "float16", "kind": kind, "variant": loaded.variant,
            "shards": -(-n // SHARD_ROWS), "seconds": 0.0, "images_per_s": 0.0, "device": "cpu",
            "precision": "fp32"}) + "\n")
        os.replace(tmp, features)
    return {"split": str(split), "model": str(model), "features": str(features)}


def stored_index_copy(features: str, dest: Path) -> str:
    """A copy of ``features`` with the build-index stage's ``auto`` index stored in it (built in a child)."""
    if not (dest / "index.json").exists():
        tmp = dest.with_name(dest.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(features, tmp)
        run_child([str(ROOT / "src")], "index", ["--features", str(tmp)])
        os.replace(tmp, dest)
    return str(dest)


# ------------------------------------------------------------------------------------------------ children
def child_evaluate(args: argparse.Namespace) -> dict:
    from amnet.config import EvaluateConfig
    from amnet.retrieval.evaluate import run_evaluate

    start = time.perf_counter()
    res = run_evaluate(args.split, args.model, args.features, args.out,
                       EvaluateConfig(variant=args.variant, index=args.index), progress=False)
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(),
            "top20": res.get("top20"), "index_kind": res.get("index_kind")}


def child_index(args: argparse.Namespace) -> dict:
    from amnet.retrieval.feature_index import build_feature_index

    return build_feature_index(args.features, args.features, kind="auto")


def run_child(src: list[str], task: str, args: list[str]) -> dict:
    """This script as ``task`` in a fresh process with ``src`` first on PYTHONPATH; its RESULT."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", task, "--expect-src", src[0], *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{task} child with {src[0]} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def same_outputs(a: Path, b: Path) -> str:
    """"identical" when two evaluations wrote the same per_query.parquet and metrics.json (but timings)."""
    import pandas as pd

    def payload(folder: Path) -> dict:
        out = json.loads((folder / "metrics.json").read_text())
        out["timing"] = {k: v for k, v in out["timing"].items() if k not in TIMES}
        return out

    diffs = []
    pa_, pb = pd.read_parquet(a / "per_query.parquet"), pd.read_parquet(b / "per_query.parquet")
    if list(pa_.columns) != list(pb.columns) or len(pa_) != len(pb):
        diffs.append("per_query columns or length")
    else:
        for col in pa_.columns:
            if pa_[col].map(repr).tolist() != pb[col].map(repr).tolist():
                diffs.append(f"per_query.{col}")
    ma, mb = payload(a), payload(b)
    diffs += [f"metrics.json {k}" for k in sorted(set(ma) | set(mb)) if ma.get(k) != mb.get(k)]
    return "identical" if not diffs else "DIFFER: " + ", ".join(diffs)


# -------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="20000,300000", help="gallery sizes (comma separated)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="DIM:VARIANT:INDEX, comma separated")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--baseline-rev", default="", help="also run REV's src/ (e.g. HEAD) and compare")
    p.add_argument("--baseline-max-gb", type=float, default=2.0,
                   help="skip a baseline run whose N x DIM float32 matrix exceeds this many GB")
    p.add_argument("--workdir", default=str(ROOT / ".amnet" / "bench" / "evaluate_memory"))
    p.add_argument("--child", choices=("evaluate", "index"), help=argparse.SUPPRESS)
    p.add_argument("--expect-src", default="", help=argparse.SUPPRESS)
    for name in ("split", "model", "features", "out", "variant", "index"):
        p.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        import amnet

        where = Path(amnet.__file__).resolve()
        if args.expect_src and Path(args.expect_src).resolve() not in where.parents:
            raise SystemExit(f"amnet imported from {where}, not from {args.expect_src}")
        result = {"evaluate": child_evaluate, "index": child_index}[args.child](args)
        print("RESULT " + json.dumps(result, default=str), flush=True)
        return

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    configs = [c.split(":") for c in args.configs.split(",") if c.strip()]
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"evaluate memory benchmark: sizes {sizes}, configs {args.configs}, {args.queries} queries, "
          f"{len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="amnet-eval-bench-") as tmp:
        sides = {"tree": str(ROOT / "src")}
        if args.baseline_rev:
            sys.path.insert(0, str(HERE))
            import revision

            commit = revision.extract_src(args.baseline_rev, tmp)
            sides["base"] = os.path.join(tmp, "src")
            print(f"baseline {args.baseline_rev} = {commit[:12]}", flush=True)
        results: dict[tuple[str, str], dict[int, dict]] = {}
        turn = 0
        for dim, variant, index in configs:
            label = f"{dim}:{variant}:{index}"
            for n in sizes:
                inputs = build_inputs(work, int(dim), n, variant, args.queries)
                if index == "auto" and variant != "attribute_based":  # the attribute rule uses no index
                    inputs["features"] = stored_index_copy(inputs["features"], Path(inputs["features"] + "-indexed"))
                order = list(sides) if turn % 2 == 0 else list(reversed(sides))  # alternate who goes first
                turn += 1
                outs = {}
                for side in order:
                    if side == "base" and n * int(dim) * 4 / 1e9 > args.baseline_max_gb:
                        print(f"  {label:<26} N={n:>7} {side}: skipped (the {n} x {dim} float32 matrix alone "
                              f"exceeds --baseline-max-gb {args.baseline_max_gb})", flush=True)
                        continue
                    outs[side] = Path(tmp) / f"out-{label.replace(':', '-')}-{n}-{side}"
                    shutil.rmtree(outs[side], ignore_errors=True)
                    r = run_child([sides[side]], "evaluate", [
                        "--split", inputs["split"], "--model", inputs["model"], "--features", inputs["features"],
                        "--out", str(outs[side]), "--variant", variant, "--index", index])
                    results.setdefault((label, side), {})[n] = r
                    print(f"  {label:<26} N={n:>7} {side}: {r['seconds']:7.1f} s, peak RSS {r['peak_rss_mb']:7.0f} MB"
                          f" (index {r['index_kind']}, top20 {r['top20']:.4f}; load {os.getloadavg()[0]:.2f})",
                          flush=True)
                if len(outs) == 2:
                    print(f"  {label:<26} N={n:>7} outputs tree vs base: {same_outputs(outs['tree'], outs['base'])}",
                          flush=True)
                for folder in outs.values():
                    shutil.rmtree(folder, ignore_errors=True)
    lo, hi = min(sizes), max(sizes)
    for (label, side), by_size in results.items():
        if lo != hi and lo in by_size and hi in by_size:
            ratio = by_size[hi]["peak_rss_mb"] / by_size[lo]["peak_rss_mb"]
            goal = f" (goal <= {GOAL_RATIO})" if side == "tree" else ""
            print(f"RATIO peak RSS evaluate {label} {side} {hi} / {lo}: {ratio:.2f} "
                  f"({by_size[lo]['peak_rss_mb']:.0f} -> {by_size[hi]['peak_rss_mb']:.0f} MB){goal}")
    print("JSON " + json.dumps({f"{label} {side}": {str(n): r for n, r in v.items()}
                                for (label, side), v in results.items()}))


if __name__ == "__main__":
    if Path(sys.path[0]).resolve() == HERE:
        del sys.path[0]  # benchmarks/ holds train.py, search.py ...: no shadowing of the revision's imports
    main()
