"""The evaluation report: the paper's comparison of AMNet with its three baselines (§5).

Reads the ``metrics.json`` of each variant's evaluation and writes ``results.json``, a Markdown
table (``report.md``) and a self-contained HTML page (``report.html``) into ``out_dir``.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any

from amnet import storage

VARIANT_ORDER = ("amnet", "no_memory", "no_ranking", "attribute_based")
COLUMNS = (
    ("top1", "top-1"), ("top5", "top-5"), ("top10", "top-10"), ("top20", "top-20"), ("top50", "top-50"),
    ("ndcg20", "NDCG@20"), ("two_top20", "2-attr top-20"), ("two_ndcg20", "2-attr NDCG@20"),
)


def load_evaluations(evaluations: list[str]) -> dict[str, dict[str, Any]]:
    """variant -> metrics.json payload, in the paper's order."""
    found = {}
    for uri in evaluations:
        payload = json.loads(storage.read_text(storage.join(uri, "metrics.json")))
        found[payload["variant"]] = payload
    return dict(sorted(found.items(), key=lambda kv: VARIANT_ORDER.index(kv[0]) if kv[0] in VARIANT_ORDER else 99))


def results_table(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Header + one row per variant (values as 3-decimal strings, '-' where not measured)."""
    rows = [["variant", *[label for _, label in COLUMNS]]]
    for variant, payload in results.items():
        m = payload["metrics"]
        rows.append([variant, *[f"{m[key]:.3f}" if key in m else "-" for key, _ in COLUMNS]])
    return rows


def to_markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"


def to_text(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows) + "\n"


def to_html(rows: list[list[str]], title: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
        "th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}th:first-child,td:first-child{text-align:left}"
        "th{background:#f3f3f3}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>One-attribute manipulation: top-k accuracy (a hit is a result with "
        "exactly the target attributes) and NDCG@20 (§5.1); two-attribute manipulation (§5.5).</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>\n"
    )


def headline(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Flat scalars like ``amnet_top20`` for KFP Metrics and the MLflow parent run."""
    out = {}
    for variant, payload in results.items():
        for key, _ in COLUMNS:
            if key in payload["metrics"]:
                out[f"{variant}_{key}"] = float(payload["metrics"][key])
    return out


def run_report(evaluations: list[str], out_dir: str, parent_run_id: str = "") -> dict[str, float]:
    results = load_evaluations(evaluations)
    rows = results_table(results)
    storage.write_text(storage.join(out_dir, "results.json"), json.dumps(results, indent=2) + "\n")
    storage.write_text(storage.join(out_dir, "report.md"), "# AMNet evaluation\n\n" + to_markdown(rows))
    storage.write_text(storage.join(out_dir, "report.html"), to_html(rows, "AMNet evaluation"))
    scalars = headline(results)
    if parent_run_id and os.environ.get("MLFLOW_TRACKING_URI"):
        from amnet import tracking

        tracking.log_to_run(parent_run_id, scalars, {"report.html": storage.join(out_dir, "report.html"),
                                                     "report.md": storage.join(out_dir, "report.md")})
    return scalars
