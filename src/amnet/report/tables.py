"""The headline metric table, as rows and as aligned text: the one printer behind the report,
``amnet run --local``'s results and ``amnet runs compare``.

Flat scalars (the MLflow parent run's metrics) carry the uncertainty next to each value:
``amnet_top20`` with ``amnet_top20_sd`` (across seeds), ``amnet_top20_ci_low`` / ``_ci_high`` (95 %
bootstrap over queries) and ``amnet_minus_attribute_based_top20`` (``amnet_minus_image_only_top20``, ...; +
``_ci_low`` / ``_ci_high``, paired); :func:`flat_value` and :func:`flat_interval` render them
(:mod:`amnet.report.intervals` computes them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from amnet.names import METRIC_COLUMNS, variant_order

Columns = Sequence[tuple[str, str]]  # (metrics.json key, label)


def metric_rows(by_variant: Mapping[str, Mapping[str, float]], columns: Columns = METRIC_COLUMNS,
                first: str = "variant") -> list[list[str]]:
    """Header + one row per variant (the paper's order; 3 decimals, ``-`` where not measured)."""
    rows = [[first, *[label for _, label in columns]]]
    for variant in sorted(by_variant, key=lambda v: (variant_order(v), v)):
        metrics = by_variant[variant]
        rows.append([variant, *[_cell(metrics.get(key)) for key, _ in columns]])
    return rows


def text_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns with a rule under the header (for terminals)."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]]) + "\n"


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as a Markdown pipe table (the MLflow run description renders it)."""
    head, *body = [[str(c) for c in r] for r in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body]) + "\n"


def flat_value(metrics: Mapping[str, float], key: str, signed: bool = False, compact: bool = False) -> str:
    """``0.830``, or ``0.830 ± 0.012`` with a ``<key>_sd`` beside it (``compact``: no spaces); ``-`` if absent."""
    if key not in metrics:
        return "-"
    value = f"{metrics[key]:+.3f}" if signed else f"{metrics[key]:.3f}"
    sd = metrics.get(f"{key}_sd")
    return value if sd is None else value + ("±" if compact else " ± ") + f"{sd:.3f}"


def flat_interval(metrics: Mapping[str, float], key: str, signed: bool = False, compact: bool = False) -> str:
    """``[0.788, 0.870]`` from ``<key>_ci_low`` / ``<key>_ci_high`` (``compact``: no space); ``-`` if absent."""
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    if low is None or high is None:
        return "-"
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"[{f.format(low)},{'' if compact else ' '}{f.format(high)}]"


def interval_rows(by_variant: Mapping[str, Mapping[str, float]], columns: Columns = METRIC_COLUMNS,
                  first: str = "variant") -> list[list[str]]:
    """Like :func:`metric_rows`, each cell with its ``_sd`` and interval when the scalars carry them."""
    rows = [[first, *[label for _, label in columns]]]
    for variant in sorted(by_variant, key=lambda v: (variant_order(v), v)):
        metrics = by_variant[variant]
        cells = []
        for key, _ in columns:
            value, iv = flat_value(metrics, key), flat_interval(metrics, key)
            cells.append(value if iv == "-" or value == "-" else f"{value} {iv}")
        rows.append([variant, *cells])
    return rows


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"
