"""The evaluation report: the paper's comparison of AMNet with its three baselines (§5).

Reads each variant's evaluation (``metrics.json``, ``per_query.parquet``, ``examples.parquet``) and
writes into ``out_dir``:

* ``report.html``: one self-contained page (plots and thumbnails embedded) — the KFP HTML output;
* ``report.md`` with the PNG plots next to it (``fig5_topk.png``, ``fig6_gallery.png``, ...);
* ``per_query.parquet``: every variant's per-query rows with a ``variant`` column;
* ``results.json``: the evaluations, headline scalars, gallery increase ratios and the registry
  decision (when given).

With a parent run id and ``MLFLOW_TRACKING_URI`` set, the headline scalars and these files go to
the pipeline's MLflow parent run. Section builders live in :mod:`amnet.report_sections`, plots in
:mod:`amnet.report_plots`, page rendering in :mod:`amnet.report_page`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd

from amnet import report_sections as sections
from amnet import storage
from amnet.data import shards
from amnet.report_page import markdown, markdown_table, page
from amnet.retrieval_examples import EXAMPLES

VARIANT_ORDER = ("amnet", "no_memory", "no_ranking", "attribute_based")
COLUMNS = (
    ("top1", "top-1"), ("top5", "top-5"), ("top10", "top-10"), ("top20", "top-20"), ("top50", "top-50"),
    ("ndcg20", "NDCG@20"), ("two_top20", "2-attr top-20"), ("two_ndcg20", "2-attr NDCG@20"),
)
TITLE = "AMNet evaluation report"


def _order(variant: str) -> int:
    return VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)


def load_evaluations(evaluations: list[str]) -> dict[str, dict[str, Any]]:
    """variant -> metrics.json payload (plus ``uri``, the evaluation folder), in the paper's order."""
    found = {}
    for uri in evaluations:
        payload = json.loads(storage.read_text(storage.join(uri, "metrics.json")))
        found[payload["variant"]] = {**payload, "uri": uri}
    return dict(sorted(found.items(), key=lambda kv: (_order(kv[0]), kv[0])))


def _read_optional(uri: str) -> pd.DataFrame | None:
    return shards.read_table(uri) if storage.exists(uri) else None


def load_tables(results: dict[str, dict[str, Any]], name: str) -> dict[str, pd.DataFrame]:
    """variant -> the evaluation's ``name`` Parquet table, for the variants that have one."""
    frames = {v: _read_optional(storage.join(p["uri"], name)) for v, p in results.items()}
    return {v: df for v, df in frames.items() if df is not None}


def results_table(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Header + one row per variant (values as 3-decimal strings, '-' where not measured)."""
    rows = [["variant", *[label for _, label in COLUMNS]]]
    for variant, payload in results.items():
        m = payload["metrics"]
        rows.append([variant, *[f"{m[key]:.3f}" if key in m else "-" for key, _ in COLUMNS]])
    return rows


def to_markdown(rows: list[list[str]]) -> str:
    return markdown_table(rows)


def to_text(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows) + "\n"


def headline(results: dict[str, dict[str, Any]], gallery_increase: dict[str, float] | None = None) -> dict[str, float]:
    """Flat scalars like ``amnet_top20`` (and ``amnet_gallery_increase``) for KFP Metrics and MLflow."""
    out = {}
    for variant, payload in results.items():
        for key, _ in COLUMNS:
            if key in payload["metrics"]:
                out[f"{variant}_{key}"] = float(payload["metrics"][key])
        if gallery_increase and variant in gallery_increase:
            out[f"{variant}_gallery_increase"] = float(gallery_increase[variant])
    return out


def _per_query(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    frames = [df.assign(variant=v) for v, df in load_tables(results, "per_query.parquet").items()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["variant", "num_changes"])


def run_report(evaluations: list[str], out_dir: str, parent_run_id: str = "",
               decision: dict[str, Any] | None = None) -> dict[str, float]:
    """Build the report of ``evaluations`` (one folder per variant) into ``out_dir``; returns the headline.

    ``decision``: the registry gate's verdict (``amnet.registry``'s ``decision.json``), shown when given.
    """
    results = load_evaluations(evaluations)
    per_query = _per_query(results)
    gallery, increase = sections.gallery(results)
    parts = [sections.summary(results, per_query, COLUMNS),
             *([sections.decision(decision)] if decision else []),
             sections.topk(results), sections.table2(results), gallery, sections.two_attributes(results),
             sections.per_attribute(results, per_query), sections.examples(load_tables(results, EXAMPLES)),
             sections.timing(results)]
    subtitle = (f"Memory-Augmented Attribute Manipulation Networks (Zhao et al., CVPR 2017), §5 on this run: "
                f"{', '.join(results)}.")
    files = {"report.html": storage.join(out_dir, "report.html"),
             "report/report.md": storage.join(out_dir, "report.md")}
    for figure in (f for s in parts for f in s.figures):
        uri = storage.join(out_dir, figure.name)
        storage.write_bytes(uri, figure.png)
        files[f"report/{figure.name}"] = uri
    storage.write_text(files["report.html"], page(TITLE, subtitle, parts))
    storage.write_text(files["report/report.md"], markdown(TITLE, subtitle, parts))
    files["report/per_query.parquet"] = storage.join(out_dir, "per_query.parquet")
    shards.write_table(files["report/per_query.parquet"], per_query)
    scalars = headline(results, increase)
    files["report/results.json"] = storage.join(out_dir, "results.json")
    storage.write_text(files["report/results.json"], json.dumps(
        {"variants": {v: {k: x for k, x in p.items() if k != "uri"} for v, p in results.items()},
         "headline": scalars, "gallery_increase": increase, "decision": decision}, indent=2) + "\n")
    if parent_run_id and os.environ.get("MLFLOW_TRACKING_URI"):
        from amnet import tracking

        tracking.log_to_run(parent_run_id, scalars, files)
    return scalars
