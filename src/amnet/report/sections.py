"""What the report says: one builder per part of the paper's §5, from the variants' evaluations.

Every builder takes ``results`` (variant -> ``metrics.json`` payload, in the paper's order) and
returns a :class:`~amnet.report.page.Section` of text, tables and PNG figures that renders both as
HTML and as Markdown. A variant whose evaluation lacks a field (written before that field existed,
e.g. a KFP cache hit) is left out of that part with a "not measured" note instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from amnet.names import EXACT_COLUMNS, LOWER_IS_BETTER, METRIC_COLUMNS
from amnet.report import intervals, plots
from amnet.report.page import Figure, Section, Table, decision_html, examples_html, markdown_table, verdict
from amnet.retrieval import stats

Results = Mapping[str, Mapping[str, Any]]
MEM_RANK = {"amnet": ("✓", "✓"), "no_memory": ("", "✓"), "no_ranking": ("✓", ""), "attribute_based": ("", ""),
            "image_only": ("", "")}
DESCRIPTION = {
    "amnet": "AMNet (memory + ranking loss)",
    "no_memory": "AMNet without memory (h concatenated to r)",
    "no_ranking": "AMNet without ranking loss (λ = 1)",
    "attribute_based": "attribute CNN: predicted attributes with the target substituted, then fc features",
    "image_only": "plain visual search: the query image's own representation r, no change applied",
}
TOPK = (("top1", "top-1"), ("top5", "top-5"), ("top10", "top-10"), ("top20", "top-20"), ("top50", "top-50"))


def fmt(value: Any) -> str:
    """Three decimals, '-' when not measured."""
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def number(value: Any, digits: int) -> str:
    """A timing or rate with ``digits`` decimals and thousands separators, '-' when not recorded."""
    return f"{value:,.{digits}f}" if isinstance(value, (int, float)) else "-"


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}%"


def increase_ratio(curve: Mapping[str, float]) -> float | None:
    """Relative change of top-20 accuracy from the largest to the smallest gallery (§5.4); None if undefined."""
    if len(curve) < 2:
        return None
    sizes = sorted(curve, key=float)
    largest, smallest = curve[sizes[-1]], curve[sizes[0]]
    return None if largest <= 0 else smallest / largest - 1.0


def _missing_note(results: Results, has: list[str], what: str) -> list[str]:
    missing = [v for v in results if v not in has]
    return [f"{what} not measured for {', '.join(missing)} (its evaluation predates it; rerun evaluate "
            "without the cache)."] if missing else []


def one_run(per_query: pd.DataFrame) -> pd.DataFrame:
    """The per-query rows of one evaluation (the first variant, its first seed): each query once."""
    if not len(per_query):
        return per_query
    rows = per_query[per_query["variant"] == per_query["variant"].iloc[0]]
    if "seed" in rows.columns and rows["seed"].notna().any():
        rows = rows[rows["seed"] == rows["seed"].dropna().iloc[0]]
    return rows


def summary(results: Results, per_query: pd.DataFrame, columns: tuple[tuple[str, str], ...],
            summaries: Mapping[str, intervals.VariantSummary] | None = None) -> Section:
    """What was compared, on how much data, and the headline table (with intervals when ``summaries``)."""
    first = next(iter(results.values()), {})
    gallery = first.get("timing", {}).get("gallery", "?")
    counts = one_run(per_query)["num_changes"].value_counts().sort_index() if len(per_query) else pd.Series(dtype=int)
    queries = ", ".join(f"{n} changing {k} attribute{'s' if k > 1 else ''}" for k, n in counts.items()) or "?"
    query_set = (first.get("config") or {}).get("queries", "test")
    if summaries:
        rows = intervals.headline_rows(summaries, columns)
    else:
        rows = [["variant", *[label for _, label in columns]]]
        rows += [[v, *[fmt(p["metrics"].get(key)) for key, _ in columns]] for v, p in results.items()]
    methods = "; ".join(f"{v} = {DESCRIPTION[v]}" for v in results if v in DESCRIPTION)
    seeded = [s for s in (summaries or {}).values() if len(s.seeds) > 1]
    spread = (f" Variants trained with several seeds ({', '.join(f'{s.variant}: {len(s.seeds)}' for s in seeded)}) "
              "show mean ± standard deviation across seeds; their interval pools the seeds (per query, the mean "
              "over seeds) and resamples the queries." if seeded else "")
    return Section("summary", "Summary", paragraphs=[
        f"{len(results)} retrieval methods searched the same gallery of {gallery} images with the same "
        f"{'validation' if query_set == 'val' else 'test'} queries ({queries}). A query is a hit at k when one of "
        "its top k results has exactly the target attributes (the query's attributes with the requested ones "
        "substituted); NDCG@20 rewards results that match many of the target attributes (§5.1). Best value per "
        "column in bold." + (f" In brackets: the 95% bootstrap interval over queries ({stats.DEFAULT_RESAMPLES} "
                             "resamples)." if summaries and any(s.ci for s in summaries.values()) else "") + spread],
        tables=[Table(rows)],
        notes=[f"{methods}.", "Paper, DARN with a 200,000-image gallery: AMNet top-20 = 0.545 and NDCG@20 = 0.46 "
               "for one attribute; top-20 = 0.464 and NDCG@20 = 0.41 for two attributes."])


def _lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER)


def differences(diffs: Mapping[str, Mapping[str, stats.Interval]],
                columns: tuple[tuple[str, str], ...] = METRIC_COLUMNS, exact: bool = False) -> Section:
    """Paired differences AMNet − each baseline / ablation, with their 95% paired bootstrap intervals
    (``exact``: the exact-target metrics, where a negative median-rank difference means AMNet is better)."""
    diffs = {o: {k: iv for k, iv in per.items() if k in dict(columns)} for o, per in diffs.items()}
    diffs = {o: per for o, per in diffs.items() if per}
    rows = intervals.difference_rows(diffs, columns)

    def better(key: str, iv: stats.Interval) -> bool:
        return iv.high < 0 if _lower_is_better(key) else iv.low > 0

    def worse(key: str, iv: stats.Interval) -> bool:
        return iv.low > 0 if _lower_is_better(key) else iv.high < 0

    above = [f"{o} ({', '.join(label for key, label in columns if key in per and better(key, per[key]))})"
             for o, per in diffs.items() if any(better(k, iv) for k, iv in per.items())]
    below = [f"{o} ({', '.join(label for key, label in columns if key in per and worse(key, per[key]))})"
             for o, per in diffs.items() if any(worse(k, iv) for k, iv in per.items())]
    notes = [f"Interval on AMNet's side of zero (AMNet better beyond the query-sampling noise): "
             f"{'; '.join(above) or 'none'}." if exact else
             f"Interval above zero (AMNet better beyond the query-sampling noise): {'; '.join(above) or 'none'}.",
             f"Interval on the other side (AMNet worse): {'; '.join(below) or 'none'}." if exact else
             f"Interval below zero (AMNet worse): {'; '.join(below) or 'none'}."]
    if exact:
        return Section("exact-differences", "Paired differences, exact target: AMNet − x", paragraphs=[
            "Per query with an exact target, AMNet's value (its target within the first K) minus the other "
            "method's on the same query; for the median rank, AMNet's median minus the other's over the same "
            f"resampled queries (negative: AMNet ranks the target higher). 95% paired bootstrap intervals "
            f"({stats.DEFAULT_RESAMPLES} resamples of the queries)."],
            tables=[Table(rows, best=False)], notes=notes)
    return Section("differences", "Paired differences: AMNet − x", paragraphs=[
        "Per query, AMNet's value (hit within the top k, or NDCG@20) minus the other method's on the same query "
        "(paired by image, changed attributes and target); the mean difference and its 95% paired bootstrap "
        f"interval ({stats.DEFAULT_RESAMPLES} resamples of the queries). An interval that excludes zero is a "
        "difference the query sample supports; one that contains zero is not."],
        tables=[Table(rows, best=False)], notes=notes)


ORDER = ("amnet", "no_ranking", "no_memory")  # §5.2: AMNet > without ranking loss > without memory
ORDER_METRICS = (("top1", "top-1"), ("recall1", "exact-target Recall@1"))


def ordering(summaries: Mapping[str, intervals.VariantSummary],
             diffs: Mapping[str, Mapping[str, stats.Interval]]) -> Section | None:
    """The paper's ordering AMNet > without ranking > without memory, checked on each yardstick: every
    variant's value with its interval, and whether AMNet's paired differences exclude zero."""
    present = [v for v in ORDER if v in summaries]
    if len(present) < 2 or present[0] != "amnet":
        return None
    lines = []
    for key, label in ORDER_METRICS:
        if not all(key in summaries[v].mean for v in present):
            continue
        values = {v: summaries[v].mean[key] for v in present}
        cells = []
        for v in present:
            iv = summaries[v].ci.get(key)
            cells.append(f"{v} {values[v]:.3f}" + (f" [{iv.low:.3f}, {iv.high:.3f}]" if iv else ""))
        holds = all(values[a] > values[b] for a, b in zip(present, present[1:], strict=False))
        paired = []
        for other in present[1:]:
            iv = diffs.get(other, {}).get(key)
            if iv is not None:
                verdict = "above zero" if iv.low > 0 else "below zero" if iv.high < 0 else "contains zero"
                paired.append(f"AMNet − {other} {iv.value:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}] ({verdict})")
        lines.append(f"{label}: {' > '.join(cells) if holds else ', '.join(cells)} — the paper's order "
                     f"{'holds' if holds else 'does not hold'} by the means" + (f"; {'; '.join(paired)}" if paired
                                                                               else "") + ".")
    if not lines:
        return None
    return Section("ordering", "The paper's ordering", paragraphs=[
        "§5.2 finds AMNet > AMNet without the ranking loss > AMNet without memory. Here, on each yardstick "
        "(values with their 95% intervals over queries; AMNet's paired differences):", *lines])


def exact_columns(results: Results) -> tuple[tuple[str, str], ...]:
    """The exact-target columns some variant measured; () without target ids (no table, no figure)."""
    return intervals.present_columns({v: p.get("metrics", {}) for v, p in results.items()}, EXACT_COLUMNS)


def exact_target(results: Results, summaries: Mapping[str, intervals.VariantSummary] | None = None) -> Section | None:
    """The second headline table: the exact target's Recall@K and median rank (composed-image retrieval's
    yardstick); None when no evaluation's queries carried target ids."""
    columns = exact_columns(results)
    if not columns:
        return None
    measured = {v: p for v, p in results.items() if any(k in p.get("metrics", {}) for k, _ in columns)}
    if summaries:
        rows = intervals.headline_rows({v: s for v, s in summaries.items() if v in measured}, columns)
    else:
        rows = [["variant", *[label for _, label in columns]]]
        rows += [[v, *[fmt(p["metrics"].get(key)) for key, _ in columns]] for v, p in measured.items()]
    plain = tuple(i + 1 for i, (key, _) in enumerate(columns) if _lower_is_better(key))
    return Section("exact", "Exact target: Recall@K and median rank", paragraphs=[
        "Each query drawn from a group of variants of one item has one exact target image (the split's "
        "target_id). Recall@K is the fraction of those queries whose target is among the first K results; the "
        "median rank is the median position of the target in the full ranking of the gallery (1 = first), so "
        "lower is better. This is how composed-image retrieval reports results (CSS / TIRG: Recall@1; "
        "FashionIQ: Recall@10 and Recall@50); top-k accuracy above counts any image with the target "
        "attributes instead. Queries without a target are left out."
        + (f" In brackets: the 95% bootstrap interval over queries ({stats.DEFAULT_RESAMPLES} resamples; the "
           "median rank's is the bootstrap of the median)." if summaries and any(s.ci for s in summaries.values())
           else "")],
        tables=[Table(rows, plain=plain, caption="Best Recall@K per column in bold.")],
        notes=_missing_note(results, list(measured), "The exact-target yardstick was"))


def recall_figure(results: Results) -> Section | None:
    """Beside Fig. 5: Recall@K of the exact target, K = 1..50, one- (and two-) attribute queries."""
    one = {v: p["recall_curves"]["1"] for v, p in results.items() if "1" in (p.get("recall_curves") or {})}
    two = {v: p["recall_curves"]["2"] for v, p in results.items() if "2" in (p.get("recall_curves") or {})}
    if not one and not two:
        return None
    figures = [Figure(name, caption, plots.recall_curves(curves, title)) for name, caption, curves, title in (
        ("fig5_recall.png", "Recall@K of the exact target, one-attribute manipulation; the legend gives R@10.", one,
         "One-attribute manipulation: exact target"),
        ("two_attribute_recall.png", "Recall@K of the exact target, two-attribute manipulation.", two,
         "Two-attribute manipulation: exact target")) if curves]
    return Section("fig5-recall", "Exact target: Recall@K", paragraphs=[
        "Fraction of the queries with an exact target whose target image is among the first K results "
        "(K = 1..50), beside Fig. 5's top-k accuracy (any image with the target attributes). The dotted lines "
        "mark K = 10 and 50, FashionIQ's cut-offs."], figures=figures,
        notes=_missing_note(results, list(one or two), "The Recall@K curve was"))


def decision(payload: Mapping[str, Any]) -> Section:
    """The registry gate's verdict (champion / challenger) when the caller passes one."""
    reasons = payload.get("reasons") or []
    lines = [f"- {r}" for r in ([reasons] if isinstance(reasons, str) else reasons)]
    md = f"**{verdict(payload)}**\n\n" + "\n".join(lines) + "\n"
    return Section("decision", "Registry decision", html=decision_html(payload), markdown=md)


def _curves(results: Results, n: str) -> dict[str, list[float]]:
    return {v: p["curves"][n] for v, p in results.items() if n in p.get("curves", {})}


def topk(results: Results) -> Section:
    """Fig. 5: top-k accuracy of one-attribute manipulation, k = 1..50."""
    curves = _curves(results, "1")
    figures = [Figure("fig5_topk.png", "Fig. 5. Top-k accuracy of one-attribute manipulation search; the "
                      "legend gives top-20 accuracy.", plots.topk_curves(curves, "One-attribute manipulation"))
               ] if curves else []
    return Section("fig5", "Fig. 5 · One-attribute manipulation: top-k accuracy", paragraphs=[
        "Fraction of one-attribute queries with an exact match among the first k results (§5.2). The dotted "
        "line marks k = 20, the paper's headline."], figures=figures,
        notes=_missing_note(results, list(curves), "The top-k curve was"))


def table2(results: Results) -> Section:
    """Table 2: NDCG@20 (attribute-level matching, §5.3) with top-k accuracy alongside."""
    rows = [["variant", "memory", "ranking loss", "NDCG@20", *[label for _, label in TOPK]]]
    rows += [[v, *MEM_RANK.get(v, ("", "")), fmt(p["metrics"].get("ndcg20")),
              *[fmt(p["metrics"].get(key)) for key, _ in TOPK]] for v, p in results.items()]
    return Section("table2", "Table 2 · Attribute-level matching: NDCG@20", paragraphs=[
        "NDCG@20 of one-attribute manipulation: rel(j) is the fraction of target attributes the j-th result "
        "matches, discounted by log2(j + 1) and normalised so 20 fully matching results score 1 (§5.3)."],
        tables=[Table(rows, caption="One-attribute manipulation; best value per column in bold.")])


def gallery(results: Results) -> tuple[Section, dict[str, float]]:
    """Fig. 6 (§5.4): top-20 accuracy on nested random gallery subsets, and the increase ratio."""
    have = {v: p for v, p in results.items() if p.get("gallery_curve")}
    if not have:
        return Section("fig6", "Fig. 6 · Gallery size", notes=_missing_note(results, [], "The gallery study was")), {}
    sizes = next(iter(have.values()))["gallery_sizes"]
    fractions = sorted(sizes, key=float)
    ratios = {v: increase_ratio(p["gallery_curve"]) for v, p in have.items()}
    present = {v: p.get("gallery_curve_present", {}) for v, p in have.items()}
    rows = [["variant", *[f"{float(f):.0%} ({sizes[f]})" for f in fractions], "change, all", "change, present"]]
    rows += [[v, *[fmt(p["gallery_curve"].get(f)) for f in fractions], percent(ratios[v]),
              percent(increase_ratio(present[v]))] for v, p in have.items()]
    answerable = next(iter(have.values())).get("gallery_answerable", {})
    notes = [f"Queries whose target is in the subset: "
             f"{', '.join(f'{float(f):.0%}: {fmt(answerable.get(f))}' for f in fractions)}."] if answerable else []
    notes += ["Paper (DARN): top-20 rose by 37.4% (AMNet), 58.9% (no memory), 99.4% (no ranking) and 33.0% "
              "(attribute-based) from its largest to its smallest gallery.",
              *_missing_note(results, list(have), "The gallery study was")]
    section = Section("fig6", "Fig. 6 · Gallery size", paragraphs=[
        f"Top-20 accuracy of the one-attribute queries when the search runs over seeded random subsets of the "
        f"gallery ({', '.join(f'{float(f):.0%}' for f in fractions)}; the same images for every variant). "
        "A query whose exact target is not in a subset cannot hit and is counted as a miss, so a smaller gallery "
        "both removes distractors (accuracy up) and removes the only correct answers (accuracy down). The right "
        "panel and last column keep only the queries whose target is still in the subset, which isolates the "
        "first effect — the paper's measure of robustness (a smaller increase means more robust features)."],
        figures=[Figure("fig6_gallery.png", "Fig. 6. Top-20 accuracy against gallery size.",
                        plots.gallery_sizes({v: p["gallery_curve"] for v, p in have.items()}, present, sizes))],
        tables=[Table(rows, caption="Top-20 accuracy by gallery size (images). Change = top-20 on the smallest / on "
                      "the largest gallery − 1; 'present' counts only queries whose target is in the subset.",
                      plain=(len(rows[0]) - 2, len(rows[0]) - 1))],
        notes=notes)
    return section, {v: r for v, r in ratios.items() if r is not None}


def two_attributes(results: Results) -> Section:
    """§5.5: two-attribute manipulation, table and top-k curve."""
    measured = {v: p for v, p in results.items() if "two_top20" in p["metrics"]}
    rows = [["variant", *[label for _, label in TOPK], "NDCG@20"]]
    rows += [[v, *[fmt(p["metrics"].get(f"two_{key}")) for key, _ in TOPK], fmt(p["metrics"].get("two_ndcg20"))]
             for v, p in measured.items()]
    curves = _curves(results, "2")
    figures = [Figure("two_attribute_topk.png", "Top-k accuracy of two-attribute manipulation search.",
                      plots.topk_curves(curves, "Two-attribute manipulation"))] if curves else []
    return Section("two", "Two-attribute manipulation (§5.5)", paragraphs=[
        "Queries that change two attributes at once; a hit needs both changes and every other attribute right."],
        figures=figures, tables=[Table(rows)] if measured else [],
        notes=_missing_note(results, list(measured), "Two-attribute search was"))


def attribute_counts(per_query: pd.DataFrame, names: list[str]) -> dict[str, int]:
    """One-attribute queries per changed attribute, keyed like the ``top20_<attribute>`` metrics.

    Those metrics list the changed attributes in attribute order, which is the sorted order of the
    ``changed`` indices; ``names`` are the metric names in that order ({} when they do not line up).
    """
    if not len(per_query):
        return {}
    first = one_run(per_query)
    first = first[first["num_changes"] == 1]
    counts = pd.Series([int(c) for ch in first["changed"] for c in ch]).value_counts().sort_index()
    return dict(zip(names, counts.tolist(), strict=True)) if len(counts) == len(names) else {}


def per_attribute(results: Results, per_query: pd.DataFrame) -> Section:
    """Top-20 accuracy by which attribute a one-attribute query changed: which manipulations fail."""
    values = {v: {k[len("top20_"):]: x for k, x in p["metrics"].items() if k.startswith("top20_")}
              for v, p in results.items()}
    values = {v: per for v, per in values.items() if per}
    attributes = list(dict.fromkeys(a for per in values.values() for a in per))
    counts = attribute_counts(per_query, attributes)
    rows = [["attribute changed", "queries", *values]] + [
        [a, str(counts.get(a, "-")), *[fmt(per.get(a)) for per in values.values()]] for a in attributes]
    figures = [Figure("per_attribute.png", "Top-20 accuracy by manipulated attribute.", plots.per_attribute(values))
               ] if values else []
    return Section("attributes", "Per-attribute breakdown", paragraphs=[
        "Top-20 accuracy of one-attribute queries grouped by the attribute they change; low bars are the "
        "manipulations a model fails at. Each group holds only part of the queries, so small differences are "
        "noise."], figures=figures,
        tables=[Table(rows, caption="Best variant per attribute in bold.", plain=(1,), by_row=True)] if values else [])


def _present(value: Any) -> bool:
    """A cell that holds a value (not None / NaN / NA)."""
    return value is not None and not (isinstance(value, float) and value != value) and value is not pd.NA


def example_blocks(frames: Mapping[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """One block per example query (in the evaluations' order): its thumbnail, manipulation, exact target
    (``target_id``/``target_thumb``, None for label-vector queries and for examples written before targets),
    ``rows = {variant: (thumbs, hits, ids, notes)}`` and ``exact = {variant: [result i is the exact target]}``
    for the variants that retrieved for it."""
    blocks: dict[str, dict[str, Any]] = {}
    for variant, df in frames.items():
        for r in df.itertuples(index=False):
            block = blocks.setdefault(r.query_id, {"query_id": r.query_id, "num_changes": int(r.num_changes),
                                                   "manipulation": r.manipulation, "query_thumb": r.query_thumb,
                                                   "target_id": None, "target_thumb": None, "rows": {}, "exact": {}})
            target_id, target_thumb = getattr(r, "target_id", None), getattr(r, "target_thumb", None)
            if block["target_thumb"] is None and _present(target_id) and _present(target_thumb):
                block["target_id"], block["target_thumb"] = str(target_id), bytes(target_thumb)
            ids = list(r.result_ids)
            block["rows"][variant] = (list(r.result_thumbs), [bool(h) for h in r.result_hits], ids,
                                      list(r.result_notes))
            exact = getattr(r, "result_exact", None)
            block["exact"][variant] = ([bool(e) for e in exact] if exact is not None and len(exact) == len(ids)
                                       else [False] * len(ids))
    return list(blocks.values())


def examples(frames: Mapping[str, pd.DataFrame]) -> Section:
    """Fig. 7: the same queries for every variant, top-5 thumbnails: the exact target framed in blue,
    results with every requested label in green."""
    title = "Fig. 7 · Retrieval examples"
    if not frames:
        return Section("fig7", title, notes=["Retrieval examples not measured (the evaluations predate them; "
                                             "rerun evaluate without the cache)."])
    blocks = example_blocks(frames)
    targets = any(b["target_thumb"] is not None for b in blocks)
    counts = [["#", "manipulation", *frames]]
    for i, b in enumerate(blocks):
        hits = {v: row[1] for v, row in b["rows"].items()}
        counts.append([str(i + 1), b["manipulation"],
                       *[f"{sum(hits[v])}/{len(hits[v])}" + (" + exact target" if any(b["exact"][v]) else "")
                         if v in hits else "-" for v in frames]])
    grid = plots.examples_grid([{**b, "rows": {v: (*row[:2], b["exact"][v]) for v, row in b["rows"].items()}}
                                for b in blocks])
    if targets:
        chosen = ("(queries with an exact target first, then the first one- and two-attribute queries by image "
                  "id)")
        frames_text = ("Beside each query is its exact target (this item, changed); a thick blue frame marks "
                       "that exact target among the results, a green frame a result with every requested label.")
        caption = ("Fig. 7. Top-5 results per variant; blue frame = the exact target (this item, changed), green "
                   "= has every requested label.")
    else:
        chosen = "(the first one- and two-attribute queries by image id)"
        frames_text = "A green frame marks a result with exactly the target attributes."
        caption = "Fig. 7. Top-5 results per variant; green frame = exact match."
    return Section("fig7", title, paragraphs=[
        f"The same {len(blocks)} queries for every variant {chosen}, each with its requested change, then the "
        f"top-5 results of each variant. {frames_text}"],
        figures=[Figure("fig7_examples.png", caption, grid, in_html=False)],  # the page draws it as HTML
        html=examples_html(blocks),
        markdown=f"Exact matches among the top 5{' (+ exact target: it is among them)' if targets else ''}:\n\n"
                 f"{markdown_table(counts)}")


def index_cell(index: dict | None) -> str:
    """'exact', or an approximate index with its measured recall against exact search."""
    if not index:
        return "exact"  # evaluations from before the index choice was recorded
    recall = index.get("recall_vs_exact")
    if recall is None:
        return str(index.get("kind"))
    return f"{index.get('kind')} (recall@{index.get('recall_k', 20)} {recall:.3f})"


def timing(results: Results) -> Section:
    """§5.6: featurization rate and per-query time of this run, with the hardware."""
    gallery = next(iter(results.values()), {}).get("timing", {}).get("gallery", "?")
    rows = [["variant", "featurize s", "images/s", "s per 1,000", "device", "manipulate ms", "search ms",
             "total ms", "index"]]
    hardware = {}
    for v, p in results.items():
        t = p.get("timing", {})
        f = t.get("featurize") or {}
        rate = f.get("images_per_s")
        rows.append([v, number(f.get("seconds"), 2), number(rate, 1), number(1000 / rate if rate else None, 2),
                     str(f.get("device", "-")), *[number(t.get(f"{k}_ms_per_query"), 3)
                                                   for k in ("manipulate", "search", "query")],
                     index_cell(t.get("index"))])
        if t.get("hardware"):
            hw = t["hardware"]
            hardware[v] = (f"{hw.get('processor') or hw.get('machine')}, {hw.get('cpu_count')} CPUs, torch device "
                           f"{hw.get('torch_device')}" + (f" ({hw['gpu']})" if hw.get("gpu") else ""))
    distinct = sorted(set(hardware.values()))
    if len(distinct) == 1:
        where = f"Evaluation ran on {distinct[0]}."
    elif distinct:
        where = "Evaluation hardware: " + "; ".join(f"{v}: {h}" for v, h in hardware.items()) + "."
    else:
        where = "Hardware not recorded."
    return Section("timing", "Timing (§5.6)", paragraphs=[
        "Featurizing the gallery (once per model) and answering a query: manipulating its representation "
        "(including decoding the query image) and searching the gallery (L2 through the index the pipeline picked "
        "for this gallery size: exact below 50,000 images, PQ fast-scan + exact re-ranking above, with its recall "
        "against exact search; the attribute-based baseline adds its attribute filter; image_only only encodes the "
        "query image and shares amnet's gallery features). Per-query times are averages over the batched "
        "queries.", where],
        tables=[Table(rows, best=False, caption=f"Featurizing the gallery of {gallery} images; ms per query.")],
        notes=["Paper: about 11 s per 1,000 images for feature extraction and about 0.2 s per query for "
               "manipulation and retrieval over 200,000 images, on an Intel i7 (3.4 GHz) server with two NVIDIA "
               "TITAN X."])
