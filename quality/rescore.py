"""Re-score saved rankings independently of ``amnet.retrieval.metrics`` and compare with metrics.json.

Every evaluation folder (``per_query.parquet`` + ``metrics.json``) under ``--runs`` is scored again
from its saved rankings and the dataset's own manifest (attribute strings, not the split's label
codes), by code that shares nothing with the product: a hit at k = a result with every target
attribute in the top k; NDCG@20 with rel = matched target attributes / M, gain 2^rel − 1, discount
log2(j + 1), normalised by 20 fully matching results. Prints each evaluation's top-1 / top-20 and the
largest difference from what the product wrote; exits 1 when any differs by more than 1e-9.

    python quality/rescore.py --dataset DATASET --runs RUN_ROOT     # e.g. a kfp.local run folder
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

CUTOFFS = (1, 5, 10, 20, 50)


@dataclass(frozen=True)
class Truth:
    """What the dataset itself says: attribute names, their values, each image's attribute strings."""

    names: list[str]
    values: dict[str, list[str]]
    attrs: dict[str, list[str]]


def read_truth(dataset: Path) -> Truth:
    """The dataset's manifest and vocabulary, read once for any number of evaluations."""
    manifest = pd.read_parquet(dataset / "manifest.parquet").set_index("image_id")
    vocab = json.loads((dataset / "attributes.json").read_text())
    names = [a["name"] for a in vocab["attributes"]]
    return Truth(names, {a["name"]: a["values"] for a in vocab["attributes"]},
                 {i: [row[n] for n in names] for i, row in manifest[names].iterrows()})


def rescore(truth: Truth, evaluation: Path) -> dict[str, float]:
    """Mean of each metric over ``evaluation``'s saved rankings, from the dataset's manifest alone."""
    names, values, attrs = truth.names, truth.values, truth.attrs
    ideal = sum(1 / math.log2(j + 1) for j in range(1, 21))
    pq = pd.read_parquet(evaluation / "per_query.parquet")
    scores: dict[str, list[float]] = {}
    for results, target, n in zip(pq["results"], pq["target"], pq["num_changes"], strict=True):
        want = [values[name][int(code)] for name, code in zip(names, target, strict=True)]
        matched = [sum(a == b for a, b in zip(attrs[r], want, strict=True)) for r in results]
        first = next((j + 1 for j, m in enumerate(matched) if m == len(names)), None)
        prefix = "" if n == 1 else "two_"
        for k in CUTOFFS:
            scores.setdefault(f"{prefix}top{k}", []).append(float(first is not None and first <= k))
        dcg = sum((2 ** (m / len(names)) - 1) / math.log2(j + 2) for j, m in enumerate(matched[:20]))
        scores.setdefault(f"{prefix}ndcg20", []).append(dcg / ideal)
    return {key: sum(per) / len(per) for key, per in scores.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, type=Path,
                        help="dataset folder (manifest.parquet, attributes.json)")
    parser.add_argument("--runs", required=True, type=Path, help="folder searched for evaluation folders")
    args = parser.parse_args(argv)
    folders = sorted(p.parent for p in args.runs.rglob("per_query.parquet") if (p.parent / "metrics.json").exists())
    if not folders:
        raise SystemExit(f"no evaluation folder (per_query.parquet + metrics.json) under {args.runs}")
    truth, worst, count = read_truth(args.dataset), 0.0, 0
    for folder in folders:
        payload = json.loads((folder / "metrics.json").read_text())
        mine = rescore(truth, folder)
        diffs = [abs(v - payload["metrics"][k]) for k, v in mine.items()]
        worst, count = max(worst, *diffs), count + len(diffs)
        print(f"{payload['variant']:<16} seed {payload.get('seed')!s:<5} top-1 {mine['top1']:.3f}  "
              f"top-20 {mine['top20']:.3f}  2-attr top-20 {mine.get('two_top20', float('nan')):.3f}  "
              f"max |diff| {max(diffs):.1e}  {folder}")
    print(f"{len(folders)} evaluations, {count} metrics re-scored; largest |difference| = {worst:.2e}")
    return 0 if worst <= 1e-9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
