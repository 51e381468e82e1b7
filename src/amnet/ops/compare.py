"""``amnet runs compare``: the headline metrics of pipeline runs (MLflow parent runs) side by side."""

from __future__ import annotations

import argparse

from amnet.errors import AmnetError
from amnet.names import REGISTRY_METRICS, VARIANTS
from amnet.ops import tracking
from amnet.ops.registry import TAG_DECISION
from amnet.report.tables import text_table


def headline_keys() -> list[str]:
    """Parent-run metric names in the paper's order: ``amnet_top20``, ``amnet_ndcg20``, ..."""
    return [f"{v}_{k}" for v in VARIANTS for k in REGISTRY_METRICS]


def compare_runs(run_ids: list[str] | None = None, experiment: str | None = None, last: int = 5) -> str:
    """Headline metrics of pipeline parent runs side by side (default: the last few of the experiment)."""
    from mlflow import MlflowClient

    tracking.check_tracking_server()
    client = MlflowClient()
    name = experiment or tracking.default_experiment()
    if run_ids:
        runs = [client.get_run(r) for r in run_ids]
    else:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise AmnetError(f"no MLflow experiment {name!r}; pass --experiment or run the pipeline first")
        runs = client.search_runs([exp.experiment_id], "tags.`amnet.role` = 'pipeline'",
                                  order_by=["attributes.start_time DESC"], max_results=last)
    if not runs:
        return "no pipeline runs found\n"
    keys = [k for k in headline_keys() if any(k in r.data.metrics for r in runs)]
    rows = [["metric"] + [r.info.run_id[:8] for r in runs],
            ["status"] + [r.info.status for r in runs],
            ["decision"] + [_decision(r.data.tags) for r in runs]]
    rows += [[k] + [f"{r.data.metrics[k]:.3f}" if k in r.data.metrics else "-" for r in runs] for k in keys]
    return text_table(rows)


def _decision(tags: dict[str, str]) -> str:
    if TAG_DECISION not in tags:
        return "-"
    return "champion" if "promoted" in tags[TAG_DECISION] else "kept"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="amnet runs compare",
                                description="Print the headline metrics of pipeline runs side by side "
                                "(MLflow parent runs; default: the last few of the experiment).")
    p.add_argument("run_ids", nargs="*", help="MLflow parent run ids (default: the latest runs)")
    p.add_argument("--experiment", help="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME or amnet)")
    p.add_argument("--last", type=int, default=5, help="how many recent runs when no id is given")
    args = p.parse_args(argv)
    if args.last < 1:
        raise AmnetError(f"--last must be >= 1 (got {args.last})")
    print(compare_runs(args.run_ids, args.experiment, args.last), end="")
    return 0
