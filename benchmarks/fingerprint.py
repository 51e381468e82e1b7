"""Cost of the pipeline's first stage: dataset fingerprint time / split time, on the demo-size dataset.

The fingerprint (``amnet.data.fingerprint.fingerprint_dataset``: manifest, vocabulary and every image's
size + SHA-256, or S3 ETag) runs on every pipeline run, uncached; the split it guards runs only when
the data changed. Goal: the fingerprint costs under 10 % of the split. Both are measured in this run on
the same dataset, interleaved A B B A (so page-cache warmth and machine load hit both alike); the
split is ``run_split`` with the fingerprint handed over (as the pipeline does), into a fresh folder
each time, with the demo run file's ``split`` section. Ratio per pair, and the median.

    .venv/bin/python benchmarks/fingerprint.py [--dataset DIR|s3://...] [--num-images 8000] [--repeats 2]

Without ``--dataset`` the built-in dataset is rendered once (``amnet data synth --num-images N``,
128 px, seed 0) into ``.amnet/bench/``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from amnet import config as cfgmod
from amnet.config import SplitConfig
from amnet.data.fingerprint import fingerprint_dataset
from amnet.data.split import run_split

ROOT = Path(__file__).resolve().parents[1]


def demo_dataset(num_images: int) -> str:
    """The built-in dataset as ``amnet data synth --num-images N`` renders it (cached under .amnet/bench)."""
    from amnet.data.synth import generate

    path = ROOT / ".amnet" / "bench" / f"synth-{num_images}-128px-seed0"
    if not (path / "manifest.parquet").exists():
        tmp = path.with_name(path.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"rendering {num_images} images into {path} ...", flush=True)
        generate(str(tmp), num_images, 0, 128, progress=False, workers=os.cpu_count() or 1)
        os.replace(tmp, path)
    return str(path)


def time_fingerprint(dataset: str) -> tuple[float, object]:
    start = time.perf_counter()
    fp = fingerprint_dataset(dataset)
    return time.perf_counter() - start, fp


def time_split(dataset: str, cfg: SplitConfig, digest: str, rows: int) -> float:
    out = tempfile.mkdtemp(prefix="amnet-bench-split-")
    try:
        start = time.perf_counter()
        run_split(dataset, out, cfg, progress=False, dataset_digest=digest, dataset_rows=rows)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", help="dataset folder or s3:// prefix (default: the rendered demo dataset)")
    p.add_argument("--num-images", type=int, default=8000, help="size of the rendered dataset (default 8000)")
    p.add_argument("--repeats", type=int, default=2, help="A B B A rounds (default 2)")
    p.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"), help="run file whose split section "
                   "is used (default configs/demo.yaml)")
    args = p.parse_args()
    dataset = args.dataset or demo_dataset(args.num_images)
    cfg = cfgmod.load(SplitConfig, args.config)
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    print(f"dataset {dataset}; split config {cfgmod.to_dict(cfg)}; {os.cpu_count()} CPUs{load}")
    _, fp = time_fingerprint(dataset)  # warm-up (and the digest the split is handed)
    print(f"fingerprint {fp.digest[:12]}: {fp.rows} rows, {fp.images} images, {fp.image_bytes / 1e6:.1f} MB, "
          f"by {fp.method}")
    pairs: list[tuple[float, float]] = []
    for r in range(args.repeats):
        if r % 2 == 0:
            f, _ = time_fingerprint(dataset)
            s = time_split(dataset, cfg, fp.digest, fp.rows)
        else:
            s = time_split(dataset, cfg, fp.digest, fp.rows)
            f, _ = time_fingerprint(dataset)
        pairs.append((f, s))
        print(f"  round {r + 1}: fingerprint {f:.2f} s, split {s:.2f} s, ratio {f / s:.3f}", flush=True)
    ratios = [f / s for f, s in pairs]
    load = f" (load average now {os.getloadavg()[0]:.2f})" if hasattr(os, "getloadavg") else ""
    print(f"fingerprint / split: median {statistics.median(ratios):.3f} (pairs {min(ratios):.3f}-{max(ratios):.3f}); "
          f"fingerprint median {statistics.median(f for f, _ in pairs):.2f} s, split median "
          f"{statistics.median(s for _, s in pairs):.2f} s{load}; goal < 0.10")


if __name__ == "__main__":
    main()
