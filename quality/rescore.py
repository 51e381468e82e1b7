"""Re-score saved rankings independently of ``amnet.retrieval.metrics`` and compare with metrics.json.

Every evaluation folder (``per_query.parquet`` + ``metrics.json``) under ``--runs``, the baselines'
(``attribute_based``, ``image_only``) as well as the trained variants', is scored again from its saved
rankings and the dataset's own manifest (attribute strings, not the split's label codes), by code that
shares nothing with the product: a hit at k = a result with every target attribute in the top k; NDCG@20
with rel = matched target attributes / target attributes, gain 2^rel − 1, discount log2(j + 1), normalised
by 20 fully matching results. Missing labels: a target attribute coded -1 is not asked for (left out of
both counts); a result whose manifest cell is empty or null never matches the value asked for. Prints
each evaluation's top-1 / top-20 and the largest difference from what the product wrote; exits 1 when any
differs by more than 1e-9.

Exact target (when ``per_query.parquet`` has ``target_id``): each target is checked against the
manifest (another image of the query's own ``item_id`` group with exactly the wanted attribute strings,
when the manifest has item ids), then Recall@1/5/10/50 are re-scored from the target's position in the
saved results, which must agree exactly. The saved results hold only the top 50, so ranks beyond them
are not re-derived: ``target_rank`` must equal the target's position when it is among them and exceed
their length when it is not; the median rank is compared only when the saved results determine it.

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
RECALL_CUTOFFS = (1, 5, 10, 50)


@dataclass(frozen=True)
class Truth:
    """What the dataset itself says: attribute names, their values, each image's attribute strings."""

    names: list[str]
    values: dict[str, list[str]]
    attrs: dict[str, list[str]]
    items: dict[str, str] | None = None  # image id -> its variant group (item_id), when the manifest has one


def read_truth(dataset: Path) -> Truth:
    """The dataset's manifest and vocabulary, read once for any number of evaluations."""
    manifest = pd.read_parquet(dataset / "manifest.parquet").set_index("image_id")
    vocab = json.loads((dataset / "attributes.json").read_text())
    names = [a["name"] for a in vocab["attributes"]]
    items = None
    if "item_id" in manifest.columns:
        items = {str(i): ("" if g is None or g != g else str(g).strip()) for i, g in manifest["item_id"].items()}
    return Truth(names, {a["name"]: a["values"] for a in vocab["attributes"]},
                 {i: [_cell(row[n]) for n in names] for i, row in manifest[names].iterrows()}, items)


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or value != value


def _cell(value: object) -> str | None:
    """A manifest attribute cell as its value string, None when the label is missing (empty or null)."""
    if _missing(value) or not str(value).strip():
        return None
    return str(value).strip()


def wanted(truth: Truth, target) -> list[str | None]:
    """The attribute strings a target asks for, None where its code is missing (negative)."""
    return [truth.values[name][int(code)] if int(code) >= 0 else None
            for name, code in zip(truth.names, target, strict=True)]


def matched(labels: list[str | None], want: list[str | None]) -> int:
    """How many asked-for values ``labels`` carries; a missing label never carries one."""
    return sum(w is not None and a == w for a, w in zip(labels, want, strict=True))


def exact_target(truth: Truth, evaluation: Path) -> tuple[dict[str, float], list[str]]:
    """(Recall@1/5/10/50 and, when the saved top results determine it, the median rank per number of
    changes; the problems found) for ``evaluation``'s queries with a ``target_id``; ({}, []) without one."""
    pq = pd.read_parquet(evaluation / "per_query.parquet")
    if "target_id" not in pq.columns or not pq["target_id"].notna().any():
        return {}, []
    problems: list[str] = []
    ranks: dict[str, list[float]] = {}
    rows = zip(pq["image_id"], pq["results"], pq["target"], pq["num_changes"], pq["target_id"], pq["target_rank"],
               strict=True)
    for i, (image, results, target, n, target_id, product_rank) in enumerate(rows):
        if _missing(target_id):
            if not _missing(product_rank):
                problems.append(f"query {i} ({image}): target_rank {product_rank} without a target_id")
            continue
        want = wanted(truth, target)
        have = truth.attrs.get(target_id)
        if have is None or matched(have, want) != sum(w is not None for w in want):
            problems.append(f"query {i} ({image}): target {target_id} does not have the wanted attributes {want}")
        if truth.items is not None and (not truth.items.get(str(image))
                                        or truth.items.get(str(target_id)) != truth.items.get(str(image))):
            problems.append(f"query {i} ({image}): target {target_id} is not in the query's item group")
        saved = [str(r) for r in results]
        position = saved.index(str(target_id)) + 1 if str(target_id) in saved else None
        if _missing(product_rank):
            problems.append(f"query {i} ({image}): no target_rank for target {target_id}")
        elif position is not None and int(product_rank) != position:
            problems.append(f"query {i} ({image}): target_rank {product_rank}, but the target is result {position}")
        elif position is None and int(product_rank) <= len(saved):
            problems.append(f"query {i} ({image}): target_rank {product_rank}, but the target is not among the "
                            f"{len(saved)} saved results")
        ranks.setdefault("" if n == 1 else "two_", []).append(math.inf if position is None else float(position))
    out: dict[str, float] = {}
    for prefix, per in ranks.items():
        for k in RECALL_CUTOFFS:
            out[f"{prefix}recall{k}"] = sum(r <= k for r in per) / len(per)
        ordered = sorted(per)
        middle = ordered[(len(ordered) - 1) // 2 : len(ordered) // 2 + 1]
        if all(math.isfinite(r) for r in middle):  # the median is among the saved results
            out[f"{prefix}median_rank"] = sum(middle) / len(middle)
    return out, problems


def rescore(truth: Truth, evaluation: Path) -> dict[str, float]:
    """Mean of each metric over ``evaluation``'s saved rankings, from the dataset's manifest alone."""
    ideal = sum(1 / math.log2(j + 1) for j in range(1, 21))
    pq = pd.read_parquet(evaluation / "per_query.parquet")
    scores: dict[str, list[float]] = {}
    for results, target, n in zip(pq["results"], pq["target"], pq["num_changes"], strict=True):
        want = wanted(truth, target)
        asked = sum(w is not None for w in want)
        counts = [matched(truth.attrs[r], want) for r in results]
        first = next((j + 1 for j, m in enumerate(counts) if m == asked), None)
        prefix = "" if n == 1 else "two_"
        for k in CUTOFFS:
            scores.setdefault(f"{prefix}top{k}", []).append(float(first is not None and first <= k))
        dcg = sum((2 ** (m / asked) - 1) / math.log2(j + 2) for j, m in enumerate(counts[:20]))
        scores.setdefault(f"{prefix}ndcg20", []).append(dcg / ideal)
    return {**{key: sum(per) / len(per) for key, per in scores.items()}, **exact_target(truth, evaluation)[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, type=Path,
                        help="dataset folder (manifest.parquet, attributes.json)")
    parser.add_argument("--runs", required=True, type=Path, help="folder searched for evaluation folders")
    args = parser.parse_args(argv)
    folders = sorted(p.parent for p in args.runs.rglob("per_query.parquet") if (p.parent / "metrics.json").exists())
    if not folders:
        raise SystemExit(f"no evaluation folder (per_query.parquet + metrics.json) under {args.runs}")
    truth, worst, count, problems = read_truth(args.dataset), 0.0, 0, []
    for folder in folders:
        payload = json.loads((folder / "metrics.json").read_text())
        mine = rescore(truth, folder)
        found = exact_target(truth, folder)[1]
        for key in ("median_rank", "two_median_rank"):  # beyond the saved results: only "more than their length"
            if key in payload["metrics"] and key not in mine and not payload["metrics"][key] > CUTOFFS[-1]:
                found.append(f"{key} {payload['metrics'][key]} but the saved results do not determine it")
        problems += [f"{folder}: {p}" for p in found]
        diffs = [abs(v - payload["metrics"][k]) if k in payload["metrics"] else math.inf for k, v in mine.items()]
        worst, count = max(worst, *diffs), count + len(diffs)
        print(f"{payload['variant']:<16} seed {payload.get('seed')!s:<5} top-1 {mine['top1']:.3f}  "
              f"top-20 {mine['top20']:.3f}  2-attr top-20 {mine.get('two_top20', float('nan')):.3f}  "
              f"max |diff| {max(diffs):.1e}  {folder}"
              + (f"  exact target R@1 {mine['recall1']:.3f} R@10 {mine['recall10']:.3f}" if "recall1" in mine else ""))
    for problem in problems[:20]:
        print(f"exact target: {problem}")
    print(f"{len(folders)} evaluations, {count} metrics re-scored; largest |difference| = {worst:.2e}"
          + (f"; {len(problems)} exact-target problems" if problems else ""))
    return 0 if worst <= 1e-9 and not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
