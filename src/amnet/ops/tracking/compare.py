"""``amnet runs compare``: the headline metrics of pipeline runs (MLflow parent runs) side by side.

Each metric row shows the value (``±`` the sd across seeds when the run trained several); when the run
logged intervals (the report step does: :mod:`amnet.report.intervals`), a ``<metric>_ci95`` row gives
the 95 % bootstrap interval over queries, and ``amnet_minus_<x>_<metric>`` rows the paired difference
AMNet − x with its interval. The exact-target metrics (``amnet_recall1``, ``amnet_recall10``,
``amnet_recall50``, ``amnet_median_rank``, ``amnet_two_recall10``) get rows only in runs that logged them.
``--json`` prints the same rows as data (:func:`comparison_data`): the logged numbers instead of rounded
text, with each run's name, start time and the params that differ between the runs."""

from __future__ import annotations

import argparse
import datetime
import json
import math
from typing import Any

from amnet.errors import AmnetError, ServiceUnreachable
from amnet.names import EXACT_COLUMNS, REGISTRY_METRICS, VARIANTS
from amnet.ops.tracking.runs import TAG_DECISION, check_tracking_server, default_experiment
from amnet.report.tables import flat_interval, flat_value, text_table

METRICS = (*REGISTRY_METRICS, *(k for k, _ in EXACT_COLUMNS))  # compared per variant


def headline_keys() -> list[str]:
    """Parent-run metric names in the paper's order: ``amnet_top20``, ``amnet_ndcg20``, ..., then the
    exact-target ones (``amnet_recall10``, ...; rows only where a run logged them)."""
    return [f"{v}_{k}" for v in VARIANTS for k in METRICS]


def pipeline_runs(run_ids: list[str] | None = None, experiment: str | None = None, last: int = 5) -> list:
    """The MLflow runs to compare: ``run_ids``, or the last few pipeline parent runs of the experiment."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        check_tracking_server()
    except AmnetError as exc:  # the health probe's only error: no answer from the server
        raise ServiceUnreachable(str(exc)) from exc
    client = MlflowClient()
    name = experiment or default_experiment()
    if run_ids:
        runs = []
        for run_id in run_ids:
            try:
                runs.append(client.get_run(run_id))
            except MlflowException as exc:
                first = str(exc.message).strip().splitlines()[0] if str(exc.message).strip() else exc.error_code
                raise AmnetError(f"no MLflow run {run_id!r} ({first}); pass a parent run id from the MLflow UI "
                                 "or leave the ids out for the latest runs") from exc
        return runs
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise AmnetError(f"no MLflow experiment {name!r}; pass --experiment or run the pipeline first")
    return client.search_runs([exp.experiment_id], "tags.`amnet.role` = 'pipeline'",
                              order_by=["attributes.start_time DESC"], max_results=last)


def compare_runs(run_ids: list[str] | None = None, experiment: str | None = None, last: int = 5) -> str:
    """Headline metrics of pipeline parent runs side by side (default: the last few of the experiment)."""
    runs = pipeline_runs(run_ids, experiment, last)
    if not runs:
        return "no pipeline runs found\n"
    return text_table(comparison_rows([(r.info.run_id, r.info.status, _decision(r.data.tags), r.data.metrics)
                                       for r in runs]))


def compare_json(run_ids: list[str] | None = None, experiment: str | None = None, last: int = 5) -> dict:
    """The comparison as data (``amnet runs compare --json``): the rows of the table, per run, with the
    logged values instead of rounded text, plus each run's name, start time and the params that differ."""
    runs = pipeline_runs(run_ids, experiment, last)
    return comparison_data(runs, experiment=None if run_ids else experiment or default_experiment())


def comparison_keys(metrics: list[dict[str, float]]) -> list[tuple[str, bool, bool]]:
    """(metric, interval row?, signed?) of the table's metric rows, in order, given each run's metrics."""
    keys = []
    for key in headline_keys():
        if any(key in m for m in metrics):
            keys.append((key, any(f"{key}_ci_low" in m for m in metrics), False))
    keys += [(key, True, True) for key in difference_keys() if any(key in m for m in metrics)]
    return keys


def comparison_rows(runs: list[tuple[str, str, str, dict[str, float]]]) -> list[list[str]]:
    """Rows of the comparison from (run id, status, decision, parent-run metrics) per run.

    Cells hold no spaces (``0.830±0.012``, ``[0.788,0.870]``) so the table splits on whitespace."""
    rows = [["metric"] + [r[0][:8] for r in runs], ["status"] + [r[1] for r in runs],
            ["decision"] + [r[2] for r in runs]]
    for key, interval, signed in comparison_keys([m for *_, m in runs]):
        rows.append([key] + [flat_value(m, key, signed=signed, compact=True) for *_, m in runs])
        if interval:
            rows.append([f"{key}_ci95"] + [flat_interval(m, key, signed=signed, compact=True) for *_, m in runs])
    return rows


def comparison_data(runs: list, experiment: str | None = None) -> dict[str, Any]:
    """``{"experiment", "runs": [{run_id, run_name, experiment_id, status, start_time, decision, params,
    metrics}]}`` from MLflow runs: the table's rows as logged values. ``metrics`` maps each of the
    table's metric rows to ``{"value", "sd", "ci95": [low, high]}`` (``null`` where the run has none);
    ``params`` holds the run params whose values are not the same in every compared run."""
    keys = comparison_keys([r.data.metrics for r in runs])
    names = sorted({k for r in runs for k in r.data.params})
    differ = [k for k in names if len({r.data.params.get(k) for r in runs}) > 1]
    out = []
    for r in runs:
        m, decision = r.data.metrics, _decision(r.data.tags)
        metrics = {}
        for key, _, _ in keys:
            low, high = _number(m.get(f"{key}_ci_low")), _number(m.get(f"{key}_ci_high"))
            metrics[key] = {"value": _number(m.get(key)), "sd": _number(m.get(f"{key}_sd")),
                            "ci95": None if low is None or high is None else [low, high]}
        out.append({"run_id": r.info.run_id, "run_name": r.info.run_name, "experiment_id": r.info.experiment_id,
                    "status": r.info.status, "start_time": _iso_time(r.info.start_time),
                    "decision": None if decision == "-" else decision,
                    "params": {k: r.data.params.get(k) for k in differ}, "metrics": metrics})
    return {"experiment": experiment, "runs": out}


def _number(value: float | None) -> float | None:
    """A metric as JSON allows it: NaN and infinities (which JSON cannot hold) become ``null``."""
    return None if value is None or not math.isfinite(value) else float(value)


def _iso_time(millis: int | None) -> str | None:
    """MLflow's epoch milliseconds -> ``2025-01-31T14:03:07.123Z`` (UTC)."""
    if millis is None:
        return None
    stamp = datetime.datetime.fromtimestamp(millis / 1000, tz=datetime.timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    p.add_argument("--last", type=_at_least_one, default=5, help="how many recent runs when no id is given")
    p.add_argument("--json", action="store_true",
                   help="print the comparison as JSON (logged values, run names, start times, params that differ)")
    args = p.parse_args(argv)
    if args.json:
        print(json.dumps(compare_json(args.run_ids, args.experiment, args.last), indent=2, allow_nan=False))
    else:
        print(compare_runs(args.run_ids, args.experiment, args.last), end="")
    return 0


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {value})")
    return value
