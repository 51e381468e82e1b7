"""Stage: the §5 report comparing the variants' evaluations (HTML + Markdown + MLflow parent run).

On the parent run: the headline scalars, every report file, and each variant's curves as step metrics
(step = K: ``curve/amnet_top_k_accuracy``, ``curve/amnet_exact_recall``, ...; means over the seeds), so the
MLflow chart view overlays pipeline runs."""

from __future__ import annotations

import json

from amnet import storage
from amnet.names import DECISION_JSON, METRICS_JSON, NOT_EVALUATED_JSON, REPORT_HTML, REPORT_MD
from amnet.ops.tracking import runs
from amnet.report.report import run_report
from amnet.steps.cli_args import base_parser, print_result


def read_decision(decision: str | None) -> dict | None:
    """The registry gate's ``decision.json`` in the folder ``decision``, or None when there is none."""
    if not decision:
        return None
    uri = storage.join(decision, DECISION_JSON)
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else None


def is_evaluation(uri: str) -> bool:
    """False for an evaluation folder left out on purpose (``not_evaluated.json`` and no ``metrics.json``:
    the image-only output of an evaluate task that did not score it, ``amnet.steps.evaluate``)."""
    return storage.exists(storage.join(uri, METRICS_JSON)) or not storage.exists(storage.join(uri, NOT_EVALUATED_JSON))


def run_step(evaluations: list[str], out: str, parent_run_id: str = "", baseline: str | None = None,
             decision: str | None = None, html_out: str | None = None, md_out: str | None = None,
             image_evaluations: list[str] | None = None) -> dict:
    """Evaluations (+ the attribute baseline's, + the image-only baseline's, + the gate's decision folder) ->
    the report in ``out``.

    ``image_evaluations``: the evaluate tasks' image-only outputs, one per trained variant and seed; those
    left out on purpose (every variant but amnet, or the image baseline off) are skipped.
    ``html_out`` / ``md_out``: extra copies of the page (a KFP HTML / Markdown output). With tracking
    on and a parent run, the headline scalars and every report file go to that MLflow run.
    """
    images = [uri for uri in image_evaluations or [] if is_evaluation(uri)]
    report = run_report([*evaluations, *images, *([baseline] if baseline else [])], out,
                        decision=read_decision(decision))
    for extra, name in ((html_out, REPORT_HTML), (md_out, REPORT_MD)):
        if extra:
            storage.write_bytes(extra, storage.read_bytes(storage.join(out, name)))
    if parent_run_id and runs.tracking_enabled():
        runs.log_to_run(parent_run_id, report.headline, report.files, series=variant_curves(report.files))
        runs.set_note(parent_run_id, results_note(report.headline, read_decision(decision)))
    return report.headline


def variant_curves(files: dict[str, str]) -> dict[str, list[float]]:
    """Every variant's curves from the report's ``results.json`` (seed means) as parent-run step metrics
    (:func:`amnet.ops.tracking.runs.curve_series`); {} without that file."""
    uri = files.get("report/results.json")
    if not uri:
        return {}
    variants = json.loads(storage.read_text(uri)).get("variants") or {}
    return {k: v for variant, payload in variants.items() for k, v in runs.curve_series(payload, variant).items()}


def results_note(headline: dict[str, float], decision: dict | None = None) -> str:
    """The parent run's description: the headline table (Markdown) and the registry decision."""
    from amnet.names import EXACT_COLUMNS, METRIC_COLUMNS, VARIANTS
    from amnet.report.intervals import present_columns
    from amnet.report.tables import interval_rows, markdown_table

    suffixes = ("", "_sd", "_ci_low", "_ci_high")
    by_variant = {v: {f"{k}{x}": headline[f"{v}_{k}{x}"] for k, _ in (*METRIC_COLUMNS, *EXACT_COLUMNS)
                      for x in suffixes if f"{v}_{k}{x}" in headline} for v in VARIANTS}
    by_variant = {v: m for v, m in by_variant.items() if m}
    text = "**AMNet pipeline run: results**\n\n" + markdown_table(interval_rows(by_variant))
    exact = present_columns(by_variant, EXACT_COLUMNS)  # only when the queries carried exact-target ids
    if exact:
        text += "\n**Exact target** (Recall@K, median rank of the query's one target image)\n\n" + markdown_table(
            interval_rows({v: m for v, m in by_variant.items() if any(k in m for k, _ in exact)}, exact))
    if any(k.endswith("_ci_low") for k in headline):
        text += "\nIn brackets: 95% bootstrap interval over queries (± = sd across seeds when several).\n"
    if decision and decision.get("version"):
        verdict = "promoted to champion" if decision.get("promoted") else "kept the champion"
        text += f"\nRegistry: {decision.get('model_name', 'amnet')} v{decision['version']} {verdict}.\n"
    return text


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step report", "Build the §5 report (Fig. 5-7, Table 2, gallery-size study, two-attribute "
                    "and per-attribute results, timing) from the variants' evaluations: report.html (self-contained), "
                    "report.md with its PNG plots, per_query.parquet and results.json.")
    p.add_argument("--evaluations", nargs="+", required=True, help="`amnet step evaluate` outputs, one per variant")
    p.add_argument("--decision", default=None, help="the register step's output folder (decision.json), if any")
    p.add_argument("--out", required=True, help="report folder")
    args = p.parse_args(argv)
    print_result(run_step(args.evaluations, args.out, args.parent_run_id, decision=args.decision), as_json=args.json)
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
