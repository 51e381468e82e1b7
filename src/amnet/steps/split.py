"""Stage: validate + split (§5.1). ``amnet data split`` and the ``split-dataset`` component call
:func:`run_step`; the command's flags are overrides of the config file, applied only when given."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from amnet.config import SplitConfig
from amnet.data.split import SETS, run_split
from amnet.names import TAG_DATASET_DIGEST
from amnet.steps.cli_args import base_parser, cli_config
from amnet.steps.settings import stage_config
from amnet.steps.tracked import run_tracked


def run_step(dataset: str, out: str, config: Mapping[str, Any] | None = None, parent_run_id: str = "",
             progress: bool = True, dataset_digest: str = "", dataset_rows: int = -1) -> dict:
    """Dataset folder or s3:// prefix -> attr_train / gallery / queries / val_queries / triplet_pool shards in ``out``.

    ``dataset_digest`` / ``dataset_rows``: the fingerprint stage's output (computed here when not given);
    recorded in ``split.json`` and as the MLflow tag ``amnet.dataset_digest``."""
    from amnet.data.fingerprint import fingerprint_dataset
    from amnet.errors import AmnetError

    cfg = stage_config(SplitConfig, config)
    if not dataset_digest:
        try:
            fp = fingerprint_dataset(dataset)
            dataset_digest, dataset_rows = fp.digest, fp.rows
        except AmnetError:
            pass  # not a readable dataset: the split's validation says exactly what is wrong
    body = lambda log: run_split(dataset, out, cfg, progress, dataset_digest, dataset_rows)  # noqa: E731
    return run_tracked("split", cfg, body, parent_run_id, {TAG_DATASET_DIGEST: dataset_digest},
                       io={"dataset": dataset, "dataset_digest": dataset_digest, "out": out})


# flag -> SplitConfig key; a flag left out keeps the config file's value (or the default)
FLAGS = {"per_value": "per_value", "gallery_size": "gallery_size", "num_queries": "num_queries",
         "num_val_queries": "num_val_queries", "decoys_per_query": "decoys_per_query",
         "num_changes": "num_changes", "shard_size": "shard_size", "seed": "seed",
         "max_quarantine_fraction": "max_quarantine_fraction"}


def build_parser() -> argparse.ArgumentParser:
    d = SplitConfig()
    p = base_parser("amnet data split", "Validate a dataset and split it as in the paper (§5.1): attribute-CNN "
                    "training set (up to P images per value), gallery, queries with 1- and 2-attribute "
                    "manipulations whose targets exist in the gallery, and the triplet pool. Writes Parquet "
                    "shards to OUT. Flags override --config / --set; a flag not given keeps their value.",
                    config=SplitConfig)
    p.add_argument("dataset", help="dataset folder or s3:// prefix (manifest.parquet + attributes.json)")
    p.add_argument("--out", required=True, help="output folder or s3:// prefix")
    p.add_argument("--per-value", type=int, help=f"attribute-CNN images per value (default {d.per_value}; paper: 200)")
    p.add_argument("--gallery-size", type=int, help=f"gallery images (default {d.gallery_size}; paper: 200,000)")
    p.add_argument("--num-queries", type=int, help=f"queries per number of changes (default {d.num_queries})")
    p.add_argument("--num-val-queries", type=int, help="validation queries per number of changes, drawn after "
                   "the test queries (default: as many as --num-queries; 0 = none)")
    p.add_argument("--decoys-per-query", type=int, help="exact-target queries (datasets with item_id): unrelated "
                   "gallery images per query that carry the target's exact labels, when there are any "
                   f"(default {d.decoys_per_query}; 0 = none)")
    p.add_argument("--num-changes", help="comma-separated numbers of changed attributes to build query sets for "
                   f"(default {','.join(map(str, d.num_changes))})")
    p.add_argument("--shard-size", type=int, help=f"rows per Parquet shard (default {d.shard_size})")
    p.add_argument("--seed", type=int, help=f"split seed (default {d.seed})")
    p.add_argument("--max-quarantine-fraction", type=float,
                   help="fail when more than this fraction of rows is quarantined "
                   f"(default {d.max_quarantine_fraction})")
    p.add_argument("--no-progress", dest="quiet", action="store_true", help="no progress bar (= --quiet)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    given = [f"{key}={getattr(args, flag)}" for flag, key in FLAGS.items() if getattr(args, flag) is not None]
    summary = run_step(args.dataset, args.out, cli_config(SplitConfig, args, given), args.parent_run_id,
                       progress=not args.quiet)
    print(f"split of {summary['rows_in']} rows in {summary['seconds']} s -> {args.out} "
          f"(dataset {summary['dataset_digest'][:12]})")
    for key in ("quarantined", *SETS):
        print(f"  {key:<13} {summary[key]:>8}")
    print(f"  queries by number of changes: {summary['queries_by_changes']}; validation queries: "
          f"{summary['val_queries_by_changes']}")
    if summary.get("item_groups"):
        print(f"  item groups {summary['item_groups']}; exact-target queries: {summary['exact_target_queries']}, "
              f"validation: {summary['exact_target_val_queries']}")
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
