"""The evaluation report: the paper's comparison of AMNet with its three baselines (§5), plus plain visual
search (``image_only``: the amnet model's own vector of the query image, no change applied).

Reads each variant's evaluation (``metrics.json``, ``per_query.parquet``, ``examples.parquet``) and
writes into ``out_dir``:

* ``report.html``: one self-contained page (plots and thumbnails embedded) — the KFP HTML output;
* ``report.md`` with the PNG plots next to it (``fig5_topk.png``, ``fig6_gallery.png``, ...);
* ``per_query.parquet``: every variant's per-query rows with a ``variant`` column;
* ``results.json``: the evaluations, headline scalars, gallery increase ratios, the intervals
  (:mod:`amnet.report.intervals`) and the registry decision (when given).

A variant may come with several evaluations (one per training seed, the seed in ``metrics.json``):
the headline table then shows mean ± sd across seeds with an interval over queries pooled over the
seeds, and the other sections show the means.

``amnet.steps.report`` logs the headline scalars and these files to the pipeline's MLflow parent
run (this package never talks to MLflow). Section builders live in :mod:`amnet.report.sections`, plots in
:mod:`amnet.report.plots`, page rendering in :mod:`amnet.report.page`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from amnet import storage
from amnet.data import shards
from amnet.names import EXACT_METRICS, EXAMPLES, METRIC_COLUMNS, METRICS_JSON, PER_QUERY, REPORT_HTML, REPORT_MD
from amnet.report import intervals, sections
from amnet.report.page import markdown, page

TITLE = "AMNet evaluation report"


@dataclass(frozen=True)
class Report:
    """What :func:`run_report` wrote: the headline scalars and every file, by MLflow artifact name."""

    headline: dict[str, float]
    files: dict[str, str] = field(default_factory=dict)  # artifact name -> URI


def load_evaluations(evaluations: list[str]) -> dict[str, dict[str, Any]]:
    """variant -> metrics.json payload (plus ``uri``, the evaluation folder), in the paper's order;
    several evaluations of one variant (seeds) are merged (:func:`amnet.report.intervals.merge_seeds`)."""
    groups = intervals.group([intervals.Evaluation(
        {**json.loads(storage.read_text(storage.join(uri, METRICS_JSON))), "uri": uri}) for uri in evaluations])
    return {v: intervals.merge_seeds(evs) for v, evs in groups.items()}


def _read_optional(uri: str) -> pd.DataFrame | None:
    return shards.read_table(uri) if storage.exists(uri) else None


def load_tables(results: dict[str, dict[str, Any]], name: str) -> dict[str, pd.DataFrame]:
    """variant -> the evaluation's ``name`` Parquet table, for the variants that have one."""
    frames = {v: _read_optional(storage.join(p["uri"], name)) for v, p in results.items()}
    return {v: df for v, df in frames.items() if df is not None}


def headline(results: dict[str, dict[str, Any]], gallery_increase: dict[str, float] | None = None) -> dict[str, float]:
    """Flat scalars like ``amnet_top20`` (and ``amnet_gallery_increase``; ``amnet_recall10``, ... when the
    queries carried exact-target ids) for KFP Metrics and MLflow."""
    out = {}
    for variant, payload in results.items():
        for key in (*(k for k, _ in METRIC_COLUMNS), *EXACT_METRICS):
            if key in payload["metrics"]:
                out[f"{variant}_{key}"] = float(payload["metrics"][key])
        if gallery_increase and variant in gallery_increase:
            out[f"{variant}_gallery_increase"] = float(gallery_increase[variant])
    return out


def _per_query(evaluations: list[intervals.Evaluation]) -> pd.DataFrame:
    """Every evaluation's per-query rows with ``variant`` and ``seed`` (the model's training seed) columns."""
    frames = [ev.per_query.assign(variant=ev.variant, seed=ev.seed) for ev in evaluations if ev.per_query is not None]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["variant", "seed", "num_changes"])


def run_report(evaluations: list[str], out_dir: str, decision: dict[str, Any] | None = None) -> Report:
    """Build the report of ``evaluations`` (one folder per variant) into ``out_dir``.

    ``decision``: the registry gate's verdict (``amnet.ops.registry.gate``'s ``decision.json``), shown when given.
    Returns the headline scalars and the files written (``amnet.steps.report`` logs them to MLflow).
    """
    loaded = [intervals.read_evaluation(uri) for uri in evaluations]
    groups = intervals.group(loaded)
    results = {v: intervals.merge_seeds(evs) for v, evs in groups.items()}
    summaries, diffs = intervals.analyse(loaded)  # refuses evaluations of different query sets
    per_query = _per_query(loaded)
    gallery, increase = sections.gallery(results)
    exact = sections.exact_target(results, summaries)  # None without exact-target ids
    exact_diffs = sections.differences(diffs, sections.exact_columns(results), exact=True) if exact else None
    recall = sections.recall_figure(results)
    parts = [sections.summary(results, per_query, METRIC_COLUMNS, summaries),
             *([sections.differences(diffs)] if diffs else []),
             *([order] if (order := sections.ordering(summaries, diffs)) else []),
             *([exact] if exact else []),
             *([exact_diffs] if exact_diffs and exact_diffs.tables[0].rows[1:] else []),
             *([sections.decision(decision)] if decision else []),
             sections.topk(results), *([recall] if recall else []),
             sections.table2(results), gallery, sections.two_attributes(results),
             sections.per_attribute(results, per_query), sections.examples(load_tables(results, EXAMPLES)),
             sections.timing(results)]
    subtitle = (f"Memory-Augmented Attribute Manipulation Networks (Zhao et al., CVPR 2017), §5 on this run: "
                f"{', '.join(results)}.")
    files = {REPORT_HTML: storage.join(out_dir, REPORT_HTML),
             f"report/{REPORT_MD}": storage.join(out_dir, REPORT_MD)}
    for figure in (f for s in parts for f in s.figures):
        uri = storage.join(out_dir, figure.name)
        storage.write_bytes(uri, figure.png)
        files[f"report/{figure.name}"] = uri
    storage.write_text(files[REPORT_HTML], page(TITLE, subtitle, parts))
    storage.write_text(files[f"report/{REPORT_MD}"], markdown(TITLE, subtitle, parts))
    files[f"report/{PER_QUERY}"] = storage.join(out_dir, PER_QUERY)
    shards.write_table(files[f"report/{PER_QUERY}"], per_query)
    scalars = {**headline(results, increase), **intervals.scalars(summaries, diffs)}
    files["report/results.json"] = storage.join(out_dir, "results.json")
    storage.write_text(files["report/results.json"], json.dumps(
        {"variants": {v: {k: x for k, x in p.items() if k != "uri"} for v, p in results.items()},
         "headline": scalars, "gallery_increase": increase, "decision": decision,
         "intervals": {v: {"seeds": list(s.seeds), "mean": s.mean, "sd": s.sd,
                           "ci95": {m: [iv.low, iv.high] for m, iv in s.ci.items()}} for v, s in summaries.items()},
         "differences": {f"{intervals.REFERENCE}-{o}": {m: {"diff": iv.value, "ci95": [iv.low, iv.high],
                                                             "queries": iv.n} for m, iv in per.items()}
                         for o, per in diffs.items()},
         "bootstrap": {"resamples": intervals.stats.DEFAULT_RESAMPLES, "seed": intervals.stats.DEFAULT_SEED,
                       "level": intervals.stats.LEVEL}}, indent=2) + "\n")
    return Report(scalars, files)
