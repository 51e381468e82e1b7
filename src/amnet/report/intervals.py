"""Headline metrics with their uncertainty: the numbers behind every results table.

From the variants' evaluations (several per variant when each was trained with several seeds, the
seed in ``metrics.json``):

* per variant and metric: the mean across seeds, the standard deviation across seeds (two or more
  seeds) and a 95 % bootstrap interval over queries, pooled over the seeds
  (:mod:`amnet.retrieval.stats`);
* per baseline / ablation x: the paired 95 % bootstrap interval of AMNet − x over the same queries.

The report, ``amnet run --local``'s closing table and the MLflow parent run's metrics
(``amnet_top20_ci_low``, ``amnet_minus_attribute_based_top20_ci_high``, ``amnet_minus_image_only_top20``, ...)
all come from here.

The exact-target metrics (:data:`amnet.names.EXACT_METRICS`: ``recall1`` ... ``median_rank``, present
when the split's queries carry ``target_id``) get the same treatment, in a second table
(:data:`amnet.names.EXACT_COLUMNS`) shown only when some evaluation has them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from amnet import storage
from amnet.data import shards
from amnet.names import EXACT_COLUMNS, EXACT_METRICS, METRIC_COLUMNS, METRICS_JSON, PER_QUERY, variant_order
from amnet.retrieval import stats

REFERENCE = "amnet"  # differences are AMNet − each other variant
MERGED = ("metrics", "curves", "recall_curves", "gallery_curve", "gallery_curve_present", "gallery_answerable")
HEADLINE_METRICS = (*(k for k, _ in METRIC_COLUMNS), *EXACT_METRICS)  # every metric given an interval


@dataclass
class Evaluation:
    """One evaluation folder: its ``metrics.json`` payload (+ ``uri``) and per-query rows (None if absent)."""

    payload: dict[str, Any]
    per_query: pd.DataFrame | None = None

    @property
    def variant(self) -> str:
        return str(self.payload["variant"])

    @property
    def seed(self) -> int | None:
        return self.payload.get("seed")

    @property
    def ndcg_k(self) -> int:
        return int((self.payload.get("config") or {}).get("ndcg_k", 20))


@dataclass(frozen=True)
class VariantSummary:
    """One variant's headline metrics: mean and sd across seeds, intervals over queries (pooled over seeds)."""

    variant: str
    seeds: tuple[int | None, ...]
    mean: dict[str, float]
    sd: dict[str, float | None]
    ci: dict[str, stats.Interval] = field(default_factory=dict)


def read_evaluation(uri: str) -> Evaluation:
    payload = json.loads(storage.read_text(storage.join(uri, METRICS_JSON)))
    pq_uri = storage.join(uri, PER_QUERY)
    return Evaluation({**payload, "uri": uri}, shards.read_table(pq_uri) if storage.exists(pq_uri) else None)


def group(evaluations: Sequence[Evaluation]) -> dict[str, list[Evaluation]]:
    """variant -> its evaluations ordered by seed, variants in the paper's order."""
    out: dict[str, list[Evaluation]] = {}
    for ev in evaluations:
        out.setdefault(ev.variant, []).append(ev)
    for evs in out.values():
        evs.sort(key=lambda e: (e.seed is not None, e.seed if e.seed is not None else 0))
    return dict(sorted(out.items(), key=lambda kv: (variant_order(kv[0]), kv[0])))


def merge_seeds(evaluations: Sequence[Evaluation]) -> dict[str, Any]:
    """One payload for a variant: the first seed's, with metrics, curves and gallery study averaged over
    the seeds (the report's figures and tables then show means) and ``seeds`` listing them."""
    first = dict(evaluations[0].payload)
    if len(evaluations) > 1:
        for key in MERGED:
            parts = [e.payload.get(key) for e in evaluations]
            if all(isinstance(p, dict) for p in parts):
                shared = set(parts[0]).intersection(*parts[1:])
                first[key] = {k: (np.mean([p[k] for p in parts], axis=0).tolist() if isinstance(parts[0][k], list)
                                  else float(np.mean([p[k] for p in parts]))) for k in parts[0] if k in shared}
    first["seeds"] = [e.seed for e in evaluations]
    return first


def pooled_values(evaluations: Sequence[Evaluation], metric: str) -> tuple[list[str], np.ndarray] | None:
    """(query keys, per-query value averaged over the seeds) of ``metric``; None without per-query rows."""
    if not all(_scorable(e, metric) for e in evaluations):
        return None
    keys, total = None, None
    for ev in evaluations:
        rows, values = stats.metric_values(ev.per_query, metric, ev.ndcg_k)
        these = [stats.query_keys(ev.per_query)[r] for r in rows] if len(rows) else []
        if keys is None:
            keys, total = these, values.copy()
        else:
            _, ib = stats.pair(keys, these, (f"{ev.variant} seed {evaluations[0].seed}", f"seed {ev.seed}"))
            total += values[ib]
    return keys or [], total / len(evaluations)


def _scorable(ev: Evaluation, metric: str) -> bool:
    """Whether ``ev``'s per-query rows give ``metric`` (absent for old evaluations; ndcg only at its k)."""
    if ev.per_query is None or not {"num_changes", "first_hit_rank", "ndcg", "image_id", "changed",
                                    "target"} <= set(ev.per_query.columns):
        return False
    _, kind, k = stats.parse_metric(metric)
    if kind in ("recall", "median_rank"):
        return "target_rank" in ev.per_query.columns
    return kind == "top" or k == ev.ndcg_k


def summarize(evaluations: Sequence[Evaluation], metrics: Sequence[str], resamples: int = stats.DEFAULT_RESAMPLES,
              seed: int = stats.DEFAULT_SEED) -> VariantSummary:
    mean, sd, ci = {}, {}, {}
    for metric in metrics:
        values = [e.payload["metrics"][metric] for e in evaluations if metric in e.payload.get("metrics", {})]
        if not values:
            continue
        mean[metric], sd[metric] = stats.seed_spread(values)
        pooled = pooled_values(evaluations, metric) if resamples else None  # 0: values only
        if pooled is not None and len(pooled[1]):
            ci[metric] = stats.bootstrap(pooled[1], resamples, seed, statistic=stats.statistic_of(metric))
    return VariantSummary(evaluations[0].variant, tuple(e.seed for e in evaluations), mean, sd, ci)


def differences(groups: Mapping[str, Sequence[Evaluation]], metrics: Sequence[str], reference: str = REFERENCE,
                resamples: int = stats.DEFAULT_RESAMPLES, seed: int = stats.DEFAULT_SEED
                ) -> dict[str, dict[str, stats.Interval]]:
    """other variant -> metric -> paired interval of ``reference`` − other (pooled over each side's seeds).

    Raises :class:`~amnet.errors.AmnetError` when the two were scored on different query sets."""
    if reference not in groups:
        return {}
    out: dict[str, dict[str, stats.Interval]] = {}
    for other, evs in groups.items():
        if other == reference:
            continue
        for metric in metrics:
            a, b = pooled_values(groups[reference], metric), pooled_values(evs, metric)
            if a is None or b is None:
                continue
            ia, ib = stats.pair(a[0], b[0], (reference, other))
            out.setdefault(other, {})[metric] = stats.paired_difference(
                a[1][ia], b[1][ib], resamples, seed, statistic=stats.statistic_of(metric))
    return out


def analyse(evaluations: Sequence[Evaluation], metrics: Sequence[str] = HEADLINE_METRICS,
            resamples: int = stats.DEFAULT_RESAMPLES, seed: int = stats.DEFAULT_SEED
            ) -> tuple[dict[str, VariantSummary], dict[str, dict[str, stats.Interval]]]:
    """(variant -> summary, other -> metric -> AMNet − other) for the evaluations of one run
    (``resamples`` 0: means and sds only, no intervals)."""
    groups = group(evaluations)
    summaries = {v: summarize(evs, metrics, resamples, seed) for v, evs in groups.items()}
    return summaries, differences(groups, metrics, resamples=resamples, seed=seed) if resamples else {}


def scalars(summaries: Mapping[str, VariantSummary], diffs: Mapping[str, Mapping[str, stats.Interval]]
            ) -> dict[str, float]:
    """Flat MLflow / KFP metrics: ``amnet_top20_ci_low``/``_ci_high``, ``amnet_top20_sd`` and ``amnet_seeds``
    (several seeds), ``amnet_minus_attribute_based_top20`` (and ``amnet_minus_image_only_top20``, ...) with
    ``_ci_low``/``_ci_high``."""
    out: dict[str, float] = {}
    for v, s in summaries.items():
        for m, iv in s.ci.items():
            out[f"{v}_{m}_ci_low"], out[f"{v}_{m}_ci_high"] = iv.low, iv.high
        for m, sd in s.sd.items():
            if sd is not None:
                out[f"{v}_{m}_sd"] = sd
        if len(s.seeds) > 1:
            out[f"{v}_seeds"] = float(len(s.seeds))
    for other, per in diffs.items():
        for m, iv in per.items():
            base = f"{REFERENCE}_minus_{other}_{m}"
            out[base], out[f"{base}_ci_low"], out[f"{base}_ci_high"] = iv.value, iv.low, iv.high
    return out


# ------------------------------------------------------------------------------------------ cells
def value_cell(summary: VariantSummary, metric: str) -> str:
    """``0.830`` or ``0.830 ± 0.012`` (mean ± sd across seeds); ``-`` when not measured."""
    if metric not in summary.mean:
        return "-"
    sd = summary.sd.get(metric)
    return f"{summary.mean[metric]:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")


def interval_cell(iv: stats.Interval | None, signed: bool = False) -> str:
    if iv is None:
        return "-"
    return f"[{iv.low:+.3f}, {iv.high:+.3f}]" if signed else f"[{iv.low:.3f}, {iv.high:.3f}]"


def metric_cell(summary: VariantSummary, metric: str) -> str:
    """One table cell: value (± sd) and the interval, ``0.830 ± 0.012 [0.788, 0.870]``."""
    value = value_cell(summary, metric)
    iv = summary.ci.get(metric)
    return value if iv is None or value == "-" else f"{value} {interval_cell(iv)}"


def difference_cell(iv: stats.Interval | None) -> str:
    return "-" if iv is None else f"{iv.value:+.3f} {interval_cell(iv, signed=True)}"


def headline_rows(summaries: Mapping[str, VariantSummary], columns: Sequence[tuple[str, str]] = METRIC_COLUMNS,
                  first: str = "variant") -> list[list[str]]:
    """Header + one row per variant, each cell with its interval (the report's table)."""
    rows = [[first, *[label for _, label in columns]]]
    rows += [[_name(s), *[metric_cell(s, k) for k, _ in columns]] for s in summaries.values()]
    return rows


def difference_rows(diffs: Mapping[str, Mapping[str, stats.Interval]],
                    columns: Sequence[tuple[str, str]] = METRIC_COLUMNS) -> list[list[str]]:
    rows = [[f"{REFERENCE} − x", *[label for _, label in columns]]]
    rows += [[other, *[difference_cell(per.get(k)) for k, _ in columns]] for other, per in diffs.items()]
    return rows


def uncertainty_rows(summaries: Mapping[str, VariantSummary], diffs: Mapping[str, Mapping[str, stats.Interval]],
                     columns: Sequence[tuple[str, str]] = METRIC_COLUMNS) -> list[list[str]]:
    """Narrow rows for a terminal, under the values table: per variant its 95% interval (and the sd
    across seeds on a second line when several), then AMNet − x and its paired interval."""
    rows = [["95% CI over queries", *[label for _, label in columns]]]
    for s in summaries.values():
        rows.append([_name(s), *[interval_cell(s.ci.get(k)) for k, _ in columns]])
        if len(s.seeds) > 1:
            rows.append([f"  sd over {len(s.seeds)} seeds",
                         *[f"{s.sd[k]:.3f}" if s.sd.get(k) is not None else "-" for k, _ in columns]])
    for other, per in diffs.items():
        rows.append([f"{REFERENCE} − {other}", *[f"{per[k].value:+.3f}" if k in per else "-" for k, _ in columns]])
        rows.append(["  paired 95% CI", *[interval_cell(per.get(k), signed=True) for k, _ in columns]])
    return rows


def present_columns(by_variant: Mapping[str, Any], columns: Sequence[tuple[str, str]] = EXACT_COLUMNS
                    ) -> tuple[tuple[str, str], ...]:
    """The ``columns`` some variant measured (``by_variant``: variant -> its metrics mapping, or a
    :class:`VariantSummary`, whose means count); () when none did (no exact-target table then)."""
    def has(value: Any, key: str) -> bool:
        return key in (value.mean if isinstance(value, VariantSummary) else value)

    return tuple((k, label) for k, label in columns if any(has(v, k) for v in by_variant.values()))


def _name(summary: VariantSummary) -> str:
    n = len(summary.seeds)
    return summary.variant + (f" ({n} seeds)" if n > 1 else "")


def run_tables(evaluations: Sequence[str], resamples: int = stats.DEFAULT_RESAMPLES) -> tuple[str, str]:
    """The closing tables of a run (``amnet run --local``) from its evaluation folders, as text: the
    headline values (means over seeds) and, below them, their intervals and AMNet − x."""
    from amnet.report.tables import metric_rows, text_table

    summaries, diffs = analyse([read_evaluation(uri) for uri in evaluations], resamples=resamples)
    means = {v: s.mean for v, s in summaries.items()}
    values = text_table(metric_rows(means)).rstrip("\n")
    exact = present_columns(summaries)
    if exact:  # the exact-target table, only when the queries carried target ids
        values += f"\n\n{EXACT_TITLE}\n" + text_table(metric_rows(means, exact)).rstrip("\n")
    if not any(s.ci for s in summaries.values()):  # resamples 0, or evaluations without per-query rows
        return values, ""
    several = any(len(s.seeds) > 1 for s in summaries.values())
    pooled = "; pooled over seeds (values above: means over seeds)" if several else ""
    note = f"bootstrap over queries, B = {resamples}{pooled}; AMNet − x: paired bootstrap over the same queries"
    spread = text_table(uncertainty_rows(summaries, diffs)).rstrip("\n")
    if exact:
        spread += f"\n\n{EXACT_TITLE}\n" + text_table(uncertainty_rows(summaries, diffs, exact)).rstrip("\n")
        note += "; median rank: bootstrap of the median, AMNet − x < 0 = AMNet ranks the target higher"
    return values, spread + f"\n({note})"


EXACT_TITLE = "exact target (the query's one target image: Recall@K, median rank)"
