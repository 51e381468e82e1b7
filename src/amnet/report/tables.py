"""The headline metric table, as rows and as aligned text: the one printer behind the report,
``amnet run --local``'s results and ``amnet runs compare``."""

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


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"
