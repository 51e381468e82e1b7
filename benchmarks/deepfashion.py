"""DeepFashion sized as the paper: a 289,222-image stand-in in the DeepFashion Category
and Attribute Prediction Benchmark layout -> ``amnet data import deepfashion`` -> ``amnet data split``
with the paper's sizes (§5.1: 200 images per attribute value, a 200,000-image gallery, 5,000 queries),
each command timed with GNU ``time -v`` (wall time, peak RSS). The import streams its listings, so its peak
RSS has a goal that does not grow with the number of images: ``IMPORT_RSS_GOAL_MB``.

Real DeepFashion cannot be downloaded here, so the tree is generated (cached under ``--root``):

* ``Anno/list_category_cloth.txt``: 50 categories (types 1-3), ``Anno/list_attr_cloth.txt``: 1,000
  attributes with DeepFashion's counts per type (texture 156, fabric 218, shape 180, part 216,
  style 230: 1,050 values with the categories, as in the paper), ``Anno/list_category_img.txt``,
  ``Anno/list_attr_img.txt`` (one ``-1`` / ``1`` cell per attribute and image: ~0.85 GB, like the real
  file), ``Eval/list_eval_partition.txt`` (209,222 train / 40,000 val / 40,000 test);
* labels: products of 8 images each in families of 6 (a base design and 5 variants that each change
  one attribute), every attribute's value uniform over its values, each attribute type unlabelled
  (no positive in the listing) with probability 0.1. Real DeepFashion labels are sparser and more
  skewed; with those, the split's rule that a query's target must exist exactly in the gallery finds
  far fewer queries (the paper manipulates only texture on DeepFashion);
* images: ``img/<item>/img_NNNNNNNN.jpg``, hard links to ``--unique`` rendered garments (tiny JPEGs), so
  the tree costs inodes, not gigabytes.

    .venv/bin/python benchmarks/deepfashion.py [--rows 289222] [--root DIR] [--work DIR] [--keep] [--skip-split]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
TYPES = {1: ("texture", 156), 2: ("fabric", 218), 3: ("shape", 180), 4: ("part", 216), 5: ("style", 230)}
CATEGORIES = 50
PAPER_ROWS = 289_222
IMPORT_RSS_GOAL_MB = 400  # `amnet data import deepfashion`'s peak at any number of images


def draw_labels(n: int, seed: int = 0, per_product: int = 8, family: int = 6, missing: float = 0.1) -> np.ndarray:
    """(n, 6) labels: category code, then per type the value index within the type or -1 (unlabelled)."""
    rng = np.random.default_rng(seed)
    sizes = np.array([CATEGORIES] + [k for _, k in TYPES.values()])
    products = -(-n // per_product)
    base = np.stack([rng.integers(0, k, -(-products // family)) for k in sizes], 1)
    vectors = np.repeat(base, family, axis=0)[:products].copy()
    variant = np.arange(products) % family != 0
    attr = rng.integers(0, len(sizes), products)
    shift = 1 + (rng.random(products) * (sizes[attr] - 1)).astype(np.int64)
    rows = np.flatnonzero(variant)
    vectors[rows, attr[rows]] = (vectors[rows, attr[rows]] + shift[rows]) % sizes[attr[rows]]
    labels = vectors[rng.permutation(np.repeat(np.arange(products), per_product)[:n])]
    drop = rng.random(labels.shape) < missing
    drop[:, 0] = False
    labels[drop] = -1
    return labels


def write_tree(root: Path, n: int, unique: int, seed: int = 0) -> None:
    """The DeepFashion layout for ``n`` images (see the module doc)."""
    sys.path.insert(0, str(HERE))
    import benchlib as bl

    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "Anno").mkdir(parents=True)
    (tmp / "Eval").mkdir()
    start = time.perf_counter()
    _, blobs = bl.render_pool(unique, size=64, seed=seed)
    (tmp / "rendered").mkdir()
    for u, data in enumerate(blobs):
        (tmp / "rendered" / f"{u:05d}.jpg").write_bytes(data)
    labels = draw_labels(n, seed)
    names = [f"img/Item_{i // 50:06d}/img_{i % 50 + 1:08d}.jpg" for i in range(n)]
    for i, name in enumerate(names):
        if i % 50 == 0:
            (tmp / name).parent.mkdir(parents=True)
        os.link(tmp / "rendered" / f"{i % unique:05d}.jpg", tmp / name)
    with open(tmp / "Anno" / "list_category_cloth.txt", "w") as fh:
        fh.write(f"{CATEGORIES}\ncategory_name  category_type\n")
        fh.writelines(f"Category_{c:02d}  {1 if c < 20 else 2 if c < 36 else 3}\n" for c in range(CATEGORIES))
    with open(tmp / "Anno" / "list_category_img.txt", "w") as fh:
        fh.write(f"{n}\nimage_name  category_label\n")
        fh.writelines(f"{name}  {lab[0] + 1}\n" for name, lab in zip(names, labels, strict=True))
    offsets, attrs = {}, []
    for t, (kind, count) in TYPES.items():
        offsets[t] = len(attrs)
        attrs += [(f"{kind} {v:03d}", t) for v in range(count)]  # names with a space, as some real ones
    with open(tmp / "Anno" / "list_attr_cloth.txt", "w") as fh:
        fh.write(f"{len(attrs)}\nattribute_name  attribute_type\n")
        fh.writelines(f"{name}  {t}\n" for name, t in attrs)
    with open(tmp / "Anno" / "list_attr_img.txt", "w") as fh:
        fh.write(f"{n}\nimage_name  attribute_labels\n")
        cells = ["-1"] * len(attrs)
        for name, lab in zip(names, labels, strict=True):
            pos = [offsets[t] + int(lab[t]) for t in TYPES if lab[t] >= 0]
            for p in pos:
                cells[p] = " 1"
            fh.write(name + " " + " ".join(cells) + "\n")
            for p in pos:
                cells[p] = "-1"
    status = ["train"] * (n - 2 * (n * 40_000 // PAPER_ROWS)) + ["val", "test"] * (n * 40_000 // PAPER_ROWS)
    with open(tmp / "Eval" / "list_eval_partition.txt", "w") as fh:
        fh.write(f"{n}\nimage_name  evaluation_status\n")
        fh.writelines(f"{name}  {s}\n" for name, s in zip(names, status, strict=True))
    os.replace(tmp, root)
    print(f"stand-in tree: {n} images ({unique} rendered, the rest hard links), "
          f"{(root / 'Anno' / 'list_attr_img.txt').stat().st_size / 1e9:.2f} GB attribute listing, "
          f"{time.perf_counter() - start:.0f} s -> {root}", flush=True)


def timed(argv: list[str]) -> dict:
    """Run ``amnet ARGV`` under GNU time -v; wall seconds, peak RSS (MB; the largest process) and the
    command's own log (its stderr before time's report)."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "amnet.cli", *argv]
    start = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # untracked: the data path only
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"amnet {' '.join(argv[:3])} failed (exit {proc.returncode})")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    cpu = sum(float(re.search(rf"{k} time \(seconds\): ([\d.]+)", proc.stderr).group(1)) for k in ("User", "System"))
    log = proc.stderr.split("\tCommand being timed:", 1)[0]
    return {"seconds": wall, "peak_rss_mb": rss, "cpu_s": cpu, "stdout": proc.stdout.strip(), "log": log.strip()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=PAPER_ROWS)
    p.add_argument("--unique", type=int, default=400, help="rendered garments the image files link to")
    p.add_argument("--root", help="stand-in tree (default .amnet/bench/deepfashion-<rows>; generated once)")
    p.add_argument("--work", help="imported dataset + split (default .amnet/bench/deepfashion-<rows>-work)")
    p.add_argument("--gallery-size", type=int, default=200_000)
    p.add_argument("--num-queries", type=int, default=5_000)
    p.add_argument("--per-value", type=int, default=200)
    p.add_argument("--keep", action="store_true", help="keep the imported dataset and the split")
    p.add_argument("--skip-split", action="store_true", help="time the import only")
    args = p.parse_args(argv)
    root = Path(args.root or ROOT / ".amnet" / "bench" / f"deepfashion-{args.rows}")
    work = Path(args.work or ROOT / ".amnet" / "bench" / f"deepfashion-{args.rows}-work")
    print(f"DeepFashion stand-in, {args.rows} rows; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
          flush=True)
    if not (root / "Anno" / "list_attr_img.txt").exists():
        write_tree(root, args.rows, args.unique)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    dataset, split = work / "dataset", work / "split"
    try:
        imp = timed(["data", "import", "deepfashion", "--root", str(root), "--out", str(dataset), "--no-progress"])
        print(f"import: {imp['seconds']:.0f} s wall ({args.rows / imp['seconds']:.0f} rows/s, "
              f"{imp['cpu_s']:.0f} CPU-s), peak RSS {imp['peak_rss_mb']:.0f} MB (load {os.getloadavg()[0]:.2f})",
              flush=True)
        goal = "met" if imp["peak_rss_mb"] <= IMPORT_RSS_GOAL_MB else "MISSED"
        print(f"  goal: import peak RSS <= {IMPORT_RSS_GOAL_MB} MB: {goal}", flush=True)
        keys = ("listings:", " rows to ", " values")  # the importer's stage and summary lines
        logged = [line for line in imp["log"].splitlines() if any(k in line for k in keys)]
        print("  " + "\n  ".join(logged), flush=True)
        if args.skip_split:
            return
        spl = timed(["data", "split", str(dataset), "--out", str(split), "--per-value", str(args.per_value),
                     "--gallery-size", str(args.gallery_size), "--num-queries", str(args.num_queries),
                     "--num-changes", "1", "--quiet"])
        import json

        summary = json.loads((split / "split.json").read_text())
        print(f"split: {spl['seconds']:.0f} s wall ({args.rows / spl['seconds']:.0f} images/s, {spl['cpu_s']:.0f} "
              f"CPU-s), peak RSS {spl['peak_rss_mb']:.0f} MB (load {os.getloadavg()[0]:.2f}); rows_in "
              f"{summary['rows_in']}, quarantined {summary['quarantined']}, attr_train {summary['attr_train']}, "
              f"gallery {summary['gallery']}, queries {summary['queries']}, triplet_pool {summary['triplet_pool']}",
              flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
