"""The report page: sections of text, tables and figures, rendered as HTML and as Markdown.

The HTML page is one self-contained file: images are embedded as base64 ``data:`` URIs and the
style sheet is inline, so it shows the same in the KFP UI's HTML viewer, as an MLflow artifact and
from disk (no scripts, no network). The Markdown page refers to the PNGs written next to it.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1080px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{margin:0 0 4px;font-size:26px}h2{margin:36px 0 8px;padding-top:8px;border-top:1px solid #e3e3e3;font-size:20px}
p{line-height:1.5;margin:6px 0 10px}.sub{color:#555;margin-bottom:12px}.note{color:#666;font-size:13px}
nav{font-size:14px;margin:8px 0 4px;display:flex;flex-wrap:wrap;gap:4px 16px}
nav a{color:#1f5fa8;text-decoration:none;white-space:nowrap}
table{border-collapse:collapse;margin:10px 0 6px;font-size:14px}caption{caption-side:top;text-align:left;
color:#444;font-size:13px;padding-bottom:4px}th,td{border:1px solid #d4d4d4;padding:4px 9px;text-align:right}
th{background:#f1f3f5;font-weight:600}th:first-child,td:first-child,td.text{text-align:left}
td.best{font-weight:700}td.mark{text-align:center}
figure{margin:12px 0}.wide{overflow-x:auto}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:13px;margin-top:4px}
.example{display:grid;grid-template-columns:112px 1fr;gap:14px;padding:12px 0;border-bottom:1px solid #eee}
.example:last-child{border-bottom:none}th.text{text-align:left}
.example .q img{width:96px;height:96px;object-fit:contain;border:1px solid #999;display:block}
.manip{font-weight:600;margin-bottom:2px}.meta{color:#666;font-size:12px;margin-bottom:6px}
.example table{margin:0}.example td,.example th{border:none;padding:2px 4px;vertical-align:middle}
.example th{background:none;font-weight:500;font-size:13px;width:120px;text-align:right}
.thumb{width:64px;height:64px;object-fit:contain;border:4px solid #cfcfcf;display:block}
.thumb.hit{border-color:#1a9641}.thumb.exact{border-color:#2166ac;border-width:6px}.count{color:#444;font-size:13px;padding-left:10px!important}
.legend span{display:inline-block;width:12px;height:12px;vertical-align:middle;margin:0 4px 0 10px}
.verdict{padding:10px 14px;border-radius:4px;font-weight:600;margin:8px 0}
.promoted{background:#e5f5e0;border:1px solid #1a9641}.kept{background:#fff4e0;border:1px solid #e6a23c}
"""


@dataclass(frozen=True)
class Table:
    """Header row first; ``best`` bolds the largest number of each numeric column except ``plain`` ones
    (of each row instead with ``by_row``, where the columns are the variants)."""

    rows: list[list[str]]
    caption: str = ""
    best: bool = True
    plain: tuple[int, ...] = ()
    by_row: bool = False


@dataclass(frozen=True)
class Figure:
    """A PNG plot; ``name`` is its file name next to report.md. ``in_html=False``: Markdown/MLflow only
    (the page shows the same content as HTML)."""

    name: str
    caption: str
    png: bytes
    in_html: bool = True


@dataclass
class Section:
    """One part of the page: text, figures, tables, notes, then any pre-rendered HTML / Markdown."""

    anchor: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    html: str = ""
    markdown: str = ""


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _number(cell: str) -> float | None:
    """The number a cell shows: its leading value for ``0.830 ± 0.012 [0.788, 0.870]``-style cells."""
    if " [" in cell or " ± " in cell:
        cell = cell.split(" ", 1)[0]
    try:
        return float(cell.replace("%", "").replace("+", "").replace(",", ""))
    except ValueError:
        return None


def _best(values: list[float | None]) -> float | None:
    """The largest of two or more distinct numbers (None: nothing worth highlighting)."""
    numbers = [v for v in values if v is not None]
    return max(numbers) if len(numbers) > 1 and len(set(numbers)) > 1 else None


def bold_cells(table: Table) -> set[tuple[int, int]]:
    """(body row, column) of the values to highlight: the largest per column (per row with ``by_row``)."""
    head, body = table.rows[0], table.rows[1:]
    if not table.best:
        return set()
    columns = [c for c in range(1, len(head)) if c not in table.plain]
    lines = ([[(r, c) for c in columns] for r in range(len(body))] if table.by_row
             else [[(r, c) for r in range(len(body))] for c in columns])
    bold: set[tuple[int, int]] = set()
    for line in lines:
        top = _best([_number(body[r][c]) for r, c in line])
        bold |= {(r, c) for r, c in line if top is not None and _number(body[r][c]) == top}
    return bold


def table_html(table: Table) -> str:
    """An HTML table (scrolls sideways when wide); with ``best``, the largest values are bold."""
    head, body = table.rows[0], table.rows[1:]
    bold = bold_cells(table)

    def kind(r: int, c: int, cell: str) -> str:
        """CSS class of a cell: bold best value, plain number, centred mark (✓) or left-aligned text."""
        if (r, c) in bold:
            return "best"
        if _number(cell) is not None or cell in ("-", "n/a"):
            return ""
        return "mark" if cell in ("✓", "") else "text"

    kinds = [[kind(r, c, cell) for c, cell in enumerate(row)] for r, row in enumerate(body)]
    text = {c for c in range(len(head)) if body and all(k[c] == "text" for k in kinds)}
    heads = "".join(f"<th{' class=text' if c in text else ''}>{html.escape(h).replace('-', '&#8209;')}</th>"
                    for c, h in enumerate(head))  # non-breaking hyphens: "top-1" never splits
    cells = [[f"<td{f' class={k}' if k else ''}>{html.escape(cell)}</td>" for k, cell in zip(ks, row, strict=True)]
             for ks, row in zip(kinds, body, strict=True)]
    rows = "".join("<tr>" + "".join(row) + "</tr>" for row in cells)
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<div class=wide><table>{caption}<thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table></div>"


def section_html(section: Section) -> str:
    parts = [f"<section id='{section.anchor}'><h2>{html.escape(section.title)}</h2>"]
    parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
    parts += [f"<figure><img alt='{html.escape(f.caption)}' src=\"{data_uri(f.png)}\">"
              f"<figcaption>{html.escape(f.caption)}</figcaption></figure>" for f in section.figures if f.in_html]
    parts += [table_html(t) for t in section.tables]
    parts += [f"<p class=note>{html.escape(n)}</p>" for n in section.notes]
    return "".join(parts) + section.html + "</section>"


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole page: title, a table of contents, then the sections."""
    nav = "".join(f"<a href='#{s.anchor}'>{html.escape(s.title)}</a>" for s in sections)
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{html.escape(title)}</h1><p class=sub>{html.escape(subtitle)}</p><nav>{nav}</nav>"
            + "".join(section_html(s) for s in sections) + "</main></body></html>\n")


def examples_html(blocks: Sequence[Mapping[str, Any]]) -> str:
    """Fig. 7: per query its thumbnail, its exact target when it has one, and its manipulation, then a row
    of top results per variant.

    ``blocks``: ``{"query_id", "num_changes", "manipulation", "query_thumb", "rows": {variant: (thumbs,
    hits, ids, notes)}}``, optionally ``"target_id"``, ``"target_thumb"`` and ``"exact"`` ({variant: [result
    i is the exact target]}). The exact target gets a blue frame, other results with every requested
    label a green one; hovering a result names what it gets wrong.
    """
    targets = any(b.get("target_thumb") is not None for b in blocks)
    out = ["<p class='legend'>Frame:" + ("<span style='background:#2166ac'></span>the exact target (this item, "
                                         "changed)" if targets else "")
           + "<span style='background:#1a9641'></span>exactly the target attributes"
           "<span style='background:#cfcfcf'></span>not an exact match (hover a result for what differs)</p>"]
    for q, block in enumerate(blocks):
        changes = "one attribute" if block["num_changes"] == 1 else f"{block['num_changes']} attributes"
        rows = []
        for variant, (thumbs, hits, ids, notes) in block["rows"].items():
            exact = (block.get("exact") or {}).get(variant) or [False] * len(ids)
            def title(i: str, n: str, e: bool) -> str:
                return html.escape(i + (" (the exact target)" if e else "") + (": " + n if n else ": exact match"))

            cells = "".join(
                f"<td><img class='thumb{' exact' if e else ' hit' if hit else ''}' alt='{html.escape(i)}' "
                f"title='{title(i, n, e)}' "
                f"src=\"{data_uri(t, 'image/jpeg')}\"></td>"
                for t, hit, i, n, e in zip(thumbs, hits, ids, notes, exact, strict=True))
            found = " + exact target" if any(exact) else ""
            rows.append(f"<tr><th>{html.escape(variant)}</th>{cells}"
                        f"<td class=count>{sum(map(bool, hits))}/{len(hits)} exact{found}</td></tr>")
        target = ""
        if block.get("target_thumb") is not None:
            target = (f"<img class='thumb exact' alt='exact target {html.escape(str(block.get('target_id')))}' "
                      f"title='the exact target: {html.escape(str(block.get('target_id')))}' "
                      f"src=\"{data_uri(block['target_thumb'], 'image/jpeg')}\"><div class=meta>exact target</div>")
        out.append(
            f"<div class=example><div class=q><img alt='query {html.escape(block['query_id'])}' "
            f"src=\"{data_uri(block['query_thumb'], 'image/jpeg')}\">{target}</div><div>"
            f"<div class=manip>{q + 1}. {html.escape(block['manipulation'])}</div>"
            f"<div class=meta>query {html.escape(block['query_id'])} · {changes} changed</div>"
            f"<table>{''.join(rows)}</table></div></div>")
    return "".join(out)


def verdict(decision: Mapping[str, Any]) -> str:
    """One line: which model version, and whether it became champion (or was not registered at all)."""
    name, version = decision.get("model_name", "model"), decision.get("version")
    if version in (None, ""):
        return f"{name}: not registered"
    before = decision.get("champion_before")
    if decision.get("promoted"):
        return f"{name} version {version}: promoted to champion{f' (replacing version {before})' if before else ''}"
    return f"{name} version {version}: not promoted; the champion{f' (version {before})' if before else ''} stays"


def decision_html(decision: Mapping[str, Any]) -> str:
    """The registry gate's decision: verdict, reasons, and challenger vs champion metrics."""
    promoted = bool(decision.get("promoted"))
    out = [f"<div class='verdict {'promoted' if promoted else 'kept'}'>{html.escape(verdict(decision))}</div>"]
    reasons = decision.get("reasons") or []
    if isinstance(reasons, str):
        reasons = [reasons]
    if reasons:
        out.append("<ul>" + "".join(f"<li>{html.escape(str(r))}</li>" for r in reasons) + "</ul>")
    challenger, champion = decision.get("challenger") or {}, decision.get("champion") or {}
    names = list(dict.fromkeys([*challenger, *champion]))
    if names:
        rows = [["metric", "challenger (this run)", "champion"]]
        rows += [[m, *(f"{d[m]:.3f}" if isinstance(d.get(m), (int, float)) else "-" for d in (challenger, champion))]
                 for m in names]
        out.append(table_html(Table(rows, best=False)))
    known = {"promoted", "model_name", "version", "champion_before", "reasons", "challenger", "champion"}
    rest = [[str(k), str(v)] for k, v in decision.items() if k not in known]
    if rest:
        out.append(table_html(Table([["field", "value"], *rest], best=False)))
    return "".join(out)


def markdown_table(rows: list[list[str]], bold: set[tuple[int, int]] | None = None) -> str:
    """A GitHub-flavoured Markdown table (header row first); ``bold`` cells as (body row, column)."""
    def line(cells: list[str], r: int = -1) -> str:
        cells = [f"**{c}**" if (r, i) in (bold or set()) else c.replace("|", "\\|") for i, c in enumerate(cells)]
        return "| " + " | ".join(cells) + " |"

    body = [line(row, r) for r, row in enumerate(rows[1:])]
    return "\n".join([line(rows[0]), "|" + "---|" * len(rows[0]), *body]) + "\n"


def markdown(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The same page as Markdown; figures are referenced by file name (written next to it)."""
    out = [f"# {title}\n\n{subtitle}\n"]
    for s in sections:
        out.append(f"\n## {s.title}\n")
        out += [f"\n{p}\n" for p in s.paragraphs]
        out += [f"\n![{f.caption}]({f.name})\n" for f in s.figures]
        for t in s.tables:
            out.append("\n" + (f"{t.caption}\n\n" if t.caption else "") + markdown_table(t.rows, bold_cells(t)))
        out += [f"\n_{n}_\n" for n in s.notes]
        if s.markdown:
            out.append("\n" + s.markdown)
    return "".join(out)
