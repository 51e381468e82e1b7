"""The demo's defaults on a labelled image collection of another kind: printed badges, not garments.

Judges the defaults on data the project was not tuned on (other attributes, other images, the same
dataset contract): renders such a collection with PIL alone (no download) and runs the product's own
stages on it with ``configs/demo.yaml`` unchanged:

* images: a badge (circle, square, triangle or diamond) in a fill colour, with a border (none,
  thin, thick), carrying one glyph (six letters) in an ink colour, on a noisy, randomly coloured
  backdrop; nuisance: position, scale, rotation, backdrop, blur, noise, JPEG quality;
* attributes: ``glyph`` (6), ``ink`` (5), ``shape`` (4), ``fill`` (4), ``border`` (3); mildly
  non-uniform frequencies so exact combinations recur in a 2,000-image gallery, as in catalogues;
* stages (``amnet`` CLI, one process each): split (demo sizes), pretrain, prototypes, train
  ``amnet`` / ``no_memory`` / ``no_ranking`` and, with ``--paper``, ``amnet`` under
  ``train.preset=paper``, featurize, evaluate on the validation and the test queries;
* prints, per query set, the pipeline's results tables (``amnet.report.intervals.run_tables``:
  bootstrap intervals over queries and paired differences AMNet − x).

Variant groups (``--variants V``, V > 0; as ``amnet data synth --variants``): rows form *items*, one
badge re-rendered with one (60 %) or two (40 %) attributes changed (a uniformly chosen attribute, the new
value from its weights, the old one excluded; a repeated vector is redrawn); group sizes are uniform over
1..V+1, items are laid out in order and the last is truncated. The manifest gets ``item_id``
(``badges{seed}-item{item:06d}``), so the split draws exact-target queries and the tables include
exact-target Recall@K. Labels come from the item's streams ``labels``/``group``/``variants`` and every
nuisance draw (one fixed-count sequence) from its stream ``nuisance``, JPEG quality from ``jpeg``, all
keyed by (seed, item) (``synth.Streams.keyed``), so an item's members differ only in the changed
attributes' pixels. V = 0 keeps the one per-row generator (labels, then nuisance), byte for byte.

    python quality/robustness.py --out /tmp/badges [--num-images 8000] [--paper] [--seed 0] [--variants 3]
"""

from __future__ import annotations

import argparse
import io
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from amnet import storage
from amnet.data.schema import ITEM_ID, Attribute, Vocabulary, write_dataset
from amnet.data.synth import Streams, image_path, image_rng, plan_group

ROOT = Path(__file__).resolve().parents[1]
GLYPHS = ("A", "K", "M", "R", "S", "X")
INKS = {"black": (20, 20, 20), "red": (200, 30, 30), "blue": (30, 60, 200), "green": (20, 140, 50),
        "purple": (120, 40, 150)}
SHAPES = ("circle", "square", "triangle", "diamond")
FILLS = {"white": (245, 245, 240), "yellow": (250, 220, 60), "cyan": (120, 220, 235), "pink": (245, 170, 200)}
BORDERS = ("none", "thin", "thick")
WEIGHTS = {  # mildly non-uniform, so exact combinations recur
    "glyph": (0.22, 0.18, 0.17, 0.16, 0.15, 0.12), "ink": (0.3, 0.2, 0.2, 0.15, 0.15),
    "shape": (0.35, 0.25, 0.2, 0.2), "fill": (0.4, 0.25, 0.2, 0.15), "border": (0.4, 0.35, 0.25),
}
VALUES = {"glyph": GLYPHS, "ink": tuple(INKS), "shape": SHAPES, "fill": tuple(FILLS), "border": BORDERS}
VOCAB = Vocabulary(tuple(Attribute(name, tuple(values)) for name, values in VALUES.items()))


def sample_labels(rng: np.random.Generator) -> dict[str, str]:
    return {name: VALUES[name][int(rng.choice(len(VALUES[name]), p=np.asarray(w) / sum(w)))]
            for name, w in WEIGHTS.items()}


TWO_CHANGES = 0.4  # fraction of variants that change two attributes instead of one


def _variant(base: dict[str, str], rng: np.random.Generator) -> dict[str, str]:
    """``base`` with one or two uniformly chosen attributes changed to another value (its weights)."""
    names = tuple(VALUES)
    k = 2 if rng.random() < TWO_CHANGES else 1
    out = dict(base)
    for a in sorted(int(x) for x in rng.choice(len(names), size=k, replace=False)):
        name = names[a]
        w = np.asarray([0.0 if v == base[name] else x for v, x in zip(VALUES[name], WEIGHTS[name], strict=True)])
        out[name] = VALUES[name][int(rng.choice(len(w), p=w / w.sum()))]
    return out


def plan_item(seed: int, item: int, variants: int) -> list[dict[str, str]]:
    """The label vectors of badge ``item``: the base first, then 0..``variants`` distinct variants."""
    return plan_group(seed, item, variants, sample_labels, _variant)


def item_id(seed: int, item: int) -> str:
    return f"badges{seed}-item{item:06d}"


def plan_rows(seed: int, num_images: int, variants: int):
    """``(item, labels)`` for rows 0..num_images-1: items in order, the last one truncated."""
    item, done = 0, 0
    while done < num_images:
        group = plan_item(seed, item, variants)
        for labels in group[: num_images - done]:
            yield item, labels
        done += len(group)
        item += 1


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "diamond":
        return [(cx, cy - r * 1.2), (cx + r * 1.2, cy), (cx, cy + r * 1.2), (cx - r * 1.2, cy)]
    return [(cx + r * 1.25 * math.cos(a), cy + r * 1.25 * math.sin(a))  # triangle, apex up
            for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]


def render(labels: dict[str, str], rng: np.random.Generator, size: int) -> Image.Image:
    """One badge at 4x ``size``, rotated, shrunk; every unlabelled choice comes from ``rng``, always the
    same number of draws whatever the labels (so one stream gives every variant of a badge one look)."""
    big = size * 4
    back = tuple(int(v) for v in rng.integers(40, 200, 3))
    img = Image.new("RGB", (big, big), back)
    draw = ImageDraw.Draw(img)
    r = big * rng.uniform(0.26, 0.36)
    cx, cy = big / 2 + rng.uniform(-0.08, 0.08) * big, big / 2 + rng.uniform(-0.08, 0.08) * big
    fill = FILLS[labels["fill"]]
    width = {"none": 0, "thin": max(2, big // 60), "thick": max(5, big // 22)}[labels["border"]]
    outline = (10, 10, 10) if width else None
    if labels["shape"] == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
    else:
        draw.polygon(_polygon(labels["shape"], cx, cy, r), fill=fill, outline=outline, width=width)
    font = ImageFont.load_default(size=int(r * (0.95 if labels["shape"] == "triangle" else 1.2)))
    draw.text((cx, cy + (r * 0.15 if labels["shape"] == "triangle" else 0)), labels["glyph"],
              fill=INKS[labels["ink"]], font=font, anchor="mm")
    img = img.rotate(float(rng.uniform(-20, 20)), resample=Image.BILINEAR, fillcolor=back)
    img = img.resize((size, size), Image.BOX)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.2, 0.7))))
    noise = rng.normal(0, rng.uniform(2, 8), (size, size, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def _jpeg(labels: dict[str, str], nuisance: np.random.Generator, quality: np.random.Generator,
          size: int) -> bytes:
    buf = io.BytesIO()
    render(labels, nuisance, size).save(buf, format="JPEG", quality=int(quality.integers(70, 96)))
    return buf.getvalue()


def generate(out: str, num_images: int, seed: int, size: int, variants: int = 0) -> None:
    """The dataset contract: images/, manifest.parquet, attributes.json (as `amnet data synth` writes).

    ``variants`` > 0: variant groups of 1..variants+1 rows (manifest column ``item_id``; module docstring)."""
    if isinstance(variants, bool) or not isinstance(variants, int) or variants < 0:
        raise ValueError(f"variants must be an integer >= 0 (got {variants!r})")
    rows = []
    if variants == 0:
        for i in range(num_images):
            rng = image_rng(seed, i)  # labels first, then the nuisance: the original draw order
            labels = sample_labels(rng)
            rel = image_path(i)
            storage.write_bytes(storage.join(out, rel), _jpeg(labels, rng, rng, size))
            rows.append({"image_id": f"badge{seed}-{i:07d}", "image": rel, **labels})
    else:
        for i, (item, labels) in enumerate(plan_rows(seed, num_images, variants)):
            streams = Streams.keyed(seed, item)  # fresh per row: every member replays the item's draws
            data = _jpeg(labels, streams.get("nuisance"), streams.get("jpeg"), size)
            rel = image_path(i)
            storage.write_bytes(storage.join(out, rel), data)
            rows.append({"image_id": f"badge{seed}-{i:07d}", "image": rel, ITEM_ID: item_id(seed, item), **labels})
    columns = ["image_id", "image", *([ITEM_ID] if variants else []), *VOCAB.names]
    write_dataset(out, pd.DataFrame(rows, columns=columns), VOCAB)


def amnet(*args: str) -> None:
    cmd = [sys.executable, "-m", "amnet.cli", *args, "--quiet"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f"  {' '.join(args[:2])} {args[args.index('--out') + 1] if '--out' in args else ''}: "
          f"{time.perf_counter() - start:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="work folder (dataset, split, models, evaluations)")
    parser.add_argument("--num-images", type=int, default=8000, help="images to render (default 8000, as the demo)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--paper", action="store_true", help="also train amnet with train.preset=paper")
    parser.add_argument("--variants", type=int, default=0, metavar="V",
                        help="variant groups of 1..V+1 images (one badge re-rendered with 1-2 attributes changed; "
                             "manifest column item_id): the split then draws exact-target queries and the tables "
                             "include exact-target Recall@K (default 0: independent badges, as before)")
    args = parser.parse_args(argv)
    from amnet.report.intervals import run_tables

    work = Path(args.out)
    config = str(ROOT / "configs" / "demo.yaml")
    if args.variants < 0:
        parser.error(f"--variants must be >= 0 (got {args.variants})")
    # the dataset is reused when present: its folder names V (0 keeps the former name "dataset")
    ds = work / ("dataset" if args.variants == 0 else f"dataset-variants{args.variants}")
    split = work / "split"
    if not (ds / "attributes.json").exists():
        start = time.perf_counter()
        generate(str(ds), args.num_images, args.seed, 64, variants=args.variants)
        groups = f" in variant groups of up to {args.variants + 1}" if args.variants else ""
        print(f"  rendered {args.num_images} badges{groups}: {time.perf_counter() - start:.0f} s", flush=True)
    amnet("data", "split", str(ds), "--out", str(split), "--per-value", "200", "--gallery-size", "2000",
          "--num-queries", "300")
    amnet("step", "pretrain", "--split", str(split), "--out", str(work / "attr"), "--config", config)
    amnet("step", "prototypes", "--split", str(split), "--attr-model", str(work / "attr"), "--out",
          str(work / "protos"), "--config", config)
    models = {"attribute_based": (work / "attr", "attribute_based")}
    runs = [("amnet", []), ("no_memory", []), ("no_ranking", [])]
    runs += [("paper", ["preset=paper"])] if args.paper else []
    for name, extra in runs:
        variant = "amnet" if name == "paper" else name
        sets = [x for kv in [f"variant={variant}", *extra] for x in ("--set", kv)]
        amnet("step", "train", "--split", str(split), "--attr-model", str(work / "attr"), "--prototypes",
              str(work / "protos"), "--out", str(work / f"m-{name}"), "--config", config, *sets)
        models[name] = (work / f"m-{name}", variant)
    for name, (model, variant) in models.items():
        amnet("step", "featurize", "--split", str(split), "--model", str(model), "--out", str(work / f"f-{name}"),
              "--config", config)
        for queries in ("val", "test"):
            amnet("step", "evaluate", "--split", str(split), "--model", str(model), "--features",
                  str(work / f"f-{name}"), "--variant", variant, "--out", str(work / f"e-{queries}-{name}"),
                  "--set", f"queries={queries}")
    for queries in ("val", "test"):
        # the paper preset is reported as its own row: its evaluation says variant amnet, so score it apart
        names = [n for n in models if n != "paper"]
        groups = f", variants {args.variants}" if args.variants else ""
        print(f"\n## {queries} queries (badges, seed {args.seed}{groups}; demo defaults unchanged)\n")
        for table in run_tables([str(work / f"e-{queries}-{n}") for n in names]):
            print(table)
        if "paper" in models:
            print(f"\n## {queries} queries: amnet with train.preset=paper vs attribute_based\n")
            for table in run_tables([str(work / f"e-{queries}-paper"), str(work / f"e-{queries}-attribute_based")]):
                print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
