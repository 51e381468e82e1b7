"""``amnet runs compare``: the headline metrics of pipeline runs (MLflow parent runs) side by side.

Each metric row shows the value (``±`` the sd across seeds when the run trained several); when the run
logged intervals (the report step does: :mod:`amnet.report.intervals`), a ``<metric>_ci95`` row gives
the 95 % bootstrap interval over queries, and ``amnet_minus_<x>_<metric>`` rows the paired difference
AMNet − x with its interval. The exact-target metrics (``amnet_recall1``, ``amnet_recall10``,
``amnet_recall50``, ``amnet_median_rank``, ``amnet_two_recall10``) get rows only in runs that logged them."""

from __future__ import annotations

import argparse

from amnet.errors import AmnetError
from amnet.names import EXACT_COLUMNS, REGISTRY_METRICS, VARIANTS
from amnet.ops.tracking.runs import TAG_DECISION, check_tracking_server, default_experiment
from amnet.report.tables import flat_interval, flat_value, text_table

METRICS = (*REGISTRY_METRICS, *(k for k, _ in EXACT_COLUMNS))  # compared per variant


def headline_keys() -> list[str]:
    """Parent-run metric names in the paper's order: ``amnet_top20``, ``amnet_ndcg20``, ..., then the
    exact-target ones (``amnet_recall10``, ...; rows only where a run logged them)."""
    return [f"{v}_{k}" for v in VARIANTS for k in METRICS]


def compare_runs(run_ids: list[str] | None = None, experiment: str | None = None, last: int = 5) -> str:
    """Headline metrics of pipeline parent runs side by side (default: the last few of the experiment)."""
    from mlflow import MlflowClient

    check_tracking_server()
    client = MlflowClient()
    name = experiment or default_experiment()
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
    return text_table(comparison_rows([(r.info.run_id, r.info.status, _decision(r.data.tags), r.data.metrics)
                                       for r in runs]))


def comparison_rows(runs: list[tuple[str, str, str, dict[str, float]]]) -> list[list[str]]:
    """Rows of the comparison from (run id, status, decision, parent-run metrics) per run.

    Cells hold no spaces (``0.830±0.012``, ``[0.788,0.870]``) so the table splits on whitespace."""
    rows = [["metric"] + [r[0][:8] for r in runs], ["status"] + [r[1] for r in runs],
            ["decision"] + [r[2] for r in runs]]
    for key in headline_keys():
        if any(key in m for *_, m in runs):
            rows.append([key] + [flat_value(m, key, compact=True) for *_, m in runs])
            if any(f"{key}_ci_low" in m for *_, m in runs):
                rows.append([f"{key}_ci95"] + [flat_interval(m, key, compact=True) for *_, m in runs])
    for key in difference_keys():
        if any(key in m for *_, m in runs):
            rows.append([key] + [flat_value(m, key, signed=True, compact=True) for *_, m in runs])
            rows.append([f"{key}_ci95"] + [flat_interval(m, key, signed=True, compact=True) for *_, m in runs])
    return rows


def difference_keys() -> list[str]:
    """Parent-run metric names of the paired differences: ``amnet_minus_attribute_based_top20``, ..."""
    return [f"amnet_minus_{v}_{k}" for v in VARIANTS if v != "amnet" for k in METRICS]


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
