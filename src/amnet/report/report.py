"""The evaluation report: the paper's comparison of AMNet with its three baselines (§5).

Reads each variant's evaluation (``metrics.json``, ``per_query.parquet``, ``examples.parquet``) and
writes into ``out_dir``:

* ``report.html``: one self-contained page (plots and thumbnails embedded) — the KFP HTML output;
* ``report.md`` with the PNG plots next to it (``fig5_topk.png``, ``fig6_gallery.png``, ...);
* ``per_query.parquet``: every variant's per-query rows with a ``variant`` column;
* ``results.json``: the evaluations, headline scalars, gallery increase ratios and the registry
  decision (when given).

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
from amnet.names import EXAMPLES, METRIC_COLUMNS, METRICS_JSON, PER_QUERY, REPORT_HTML, REPORT_MD, variant_order
from amnet.report import sections
from amnet.report.page import markdown, page

TITLE = "AMNet evaluation report"


@dataclass(frozen=True)
class Report:
    """What :func:`run_report` wrote: the headline scalars and every file, by MLflow artifact name."""

    headline: dict[str, float]
    files: dict[str, str] = field(default_factory=dict)  # artifact name -> URI


def load_evaluations(evaluations: list[str]) -> dict[str, dict[str, Any]]:
    """variant -> metrics.json payload (plus ``uri``, the evaluation folder), in the paper's order."""
    found = {}
    for uri in evaluations:
        payload = json.loads(storage.read_text(storage.join(uri, METRICS_JSON)))
        found[payload["variant"]] = {**payload, "uri": uri}
    return dict(sorted(found.items(), key=lambda kv: (variant_order(kv[0]), kv[0])))


def _read_optional(uri: str) -> pd.DataFrame | None:
    return shards.read_table(uri) if storage.exists(uri) else None


def load_tables(results: dict[str, dict[str, Any]], name: str) -> dict[str, pd.DataFrame]:
    """variant -> the evaluation's ``name`` Parquet table, for the variants that have one."""
    frames = {v: _read_optional(storage.join(p["uri"], name)) for v, p in results.items()}
    return {v: df for v, df in frames.items() if df is not None}


def headline(results: dict[str, dict[str, Any]], gallery_increase: dict[str, float] | None = None) -> dict[str, float]:
    """Flat scalars like ``amnet_top20`` (and ``amnet_gallery_increase``) for KFP Metrics and MLflow."""
    out = {}
    for variant, payload in results.items():
        for key, _ in METRIC_COLUMNS:
            if key in payload["metrics"]:
                out[f"{variant}_{key}"] = float(payload["metrics"][key])
        if gallery_increase and variant in gallery_increase:
            out[f"{variant}_gallery_increase"] = float(gallery_increase[variant])
    return out


def _per_query(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    frames = [df.assign(variant=v) for v, df in load_tables(results, PER_QUERY).items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["variant", "num_changes"])


def run_report(evaluations: list[str], out_dir: str, decision: dict[str, Any] | None = None) -> Report:
    """Build the report of ``evaluations`` (one folder per variant) into ``out_dir``.

    ``decision``: the registry gate's verdict (``amnet.ops.registry``'s ``decision.json``), shown when given.
    Returns the headline scalars and the files written (``amnet.steps.report`` logs them to MLflow).
    """
    results = load_evaluations(evaluations)
    per_query = _per_query(results)
    gallery, increase = sections.gallery(results)
    parts = [sections.summary(results, per_query, METRIC_COLUMNS),
             *([sections.decision(decision)] if decision else []),
             sections.topk(results), sections.table2(results), gallery, sections.two_attributes(results),
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
    scalars = headline(results, increase)
    files["report/results.json"] = storage.join(out_dir, "results.json")
    storage.write_text(files["report/results.json"], json.dumps(
        {"variants": {v: {k: x for k, x in p.items() if k != "uri"} for v, p in results.items()},
         "headline": scalars, "gallery_increase": increase, "decision": decision}, indent=2) + "\n")
    return Report(scalars, files)
