"""The exact-target metrics downstream of evaluation: intervals, paired differences, the report, the closing
tables, the parent run's note, ``amnet runs compare`` and ``quality/rescore.py`` — shown only when present.

Evaluation folders are written by hand (no training), like tests/report/test_intervals.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amnet.names import EXACT_METRICS
from amnet.report import intervals
from amnet.report.report import run_report
from amnet.retrieval import metrics as rmetrics
from amnet.retrieval import stats
from tests.helpers import load_quality

N = 80  # 40 one-attribute, 40 two-attribute queries; every other one has an exact target


def per_query(first_hit: np.ndarray, target_rank: np.ndarray | None) -> pd.DataFrame:
    changes = [1] * (N // 2) + [2] * (N // 2)
    df = pd.DataFrame({
        "image_id": [f"q{i:03d}" for i in range(N)], "num_changes": changes,
        "changed": [[i % 3] if c == 1 else [0, 1] for i, c in enumerate(changes)],
        "target": [[i % 3, 1, 2] for i in range(N)], "first_hit_rank": first_hit, "ndcg": [0.5] * N,
        "results": [[f"g{(i + j) % 200:03d}" for j in range(50)] for i in range(N)]})
    if target_rank is not None:
        has = np.arange(N) % 2 == 0
        df["target_id"] = pd.array([f"g{(i + int(r) - 1) % 200:03d}" if h and r <= 50 else ("g999" if h else None)
                                    for i, (h, r) in enumerate(zip(has, target_rank, strict=True))], dtype="string")
        df["target_rank"] = pd.array([int(r) if h else None for h, r in zip(has, target_rank, strict=True)],
                                     dtype="Int64")
    return df


def write_eval(root: Path, name: str, variant: str, pq: pd.DataFrame) -> str:
    out = root / name
    out.mkdir(parents=True)
    pq.to_parquet(out / "per_query.parquet")
    metrics = {k: float(stats.metric_values(pq, k)[1].mean())
               for k in ("top1", "top5", "top10", "top20", "top50", "ndcg20", "two_top20", "two_ndcg20")}
    payload = {"variant": variant, "metrics": metrics, "config": {"ndcg_k": 20, "queries": "test"}, "seed": None}
    if "target_rank" in pq.columns:
        ranks = stats.pd_float(pq["target_rank"])
        groups = pq["num_changes"].to_numpy()
        for prefix, n in (("", 1), ("two_", 2)):
            sel = ranks[groups == n]
            metrics.update({f"{prefix}recall{k}": v for k, v in rmetrics.recall_at_k(sel, (1, 5, 10, 50)).items()})
            metrics[f"{prefix}median_rank"] = rmetrics.median_rank(sel)
        payload["recall_curves"] = {str(n): list(rmetrics.recall_at_k(ranks[groups == n], range(1, 51)).values())
                                    for n in (1, 2)}
    (out / "metrics.json").write_text(json.dumps(payload))
    return str(out)


def make(root: Path, targets: bool) -> list[str]:
    """amnet (its target always 3 places higher than the others'), no_memory, attribute_based."""
    rng = np.random.default_rng(0)
    base = rng.integers(4, 80, N)
    hit = rng.integers(2, 40, N)
    return [write_eval(root, "a", "amnet", per_query(hit - 1, base - 3 if targets else None)),
            write_eval(root, "nm", "no_memory", per_query(hit, base if targets else None)),
            write_eval(root, "ab", "attribute_based", per_query(hit + 3, base + 10 if targets else None))]


@pytest.fixture
def with_targets(tmp_path) -> list[str]:
    return make(tmp_path / "t", True)


@pytest.fixture
def without_targets(tmp_path) -> list[str]:
    return make(tmp_path / "p", False)


# ------------------------------------------------------------------------------------------ statistics
def test_metric_values_of_the_exact_target():
    pq = per_query(np.ones(N, int), np.arange(1, N + 1) * 2)
    rows, v = stats.metric_values(pq, "recall10")
    assert list(rows) == [0, 2, 4] + list(range(6, 40, 2)) and list(v[:4]) == [1, 1, 1, 0]  # ranks 2, 6, 10, 14
    rows, v = stats.metric_values(pq, "two_median_rank")
    assert list(rows) == list(range(40, 80, 2)) and v[0] == 82
    assert stats.parse_metric("two_median_rank") == (2, "median_rank", 0) and stats.statistic_of("recall1") == "mean"
    with pytest.raises(Exception, match="no target_rank"):
        stats.metric_values(per_query(np.ones(N, int), None), "recall1")


def test_median_bootstrap_and_paired_median_difference():
    values = np.random.default_rng(0).integers(1, 100, 201).astype(float)
    iv = stats.bootstrap(values, statistic="median", resamples=300)
    assert iv.value == np.median(values) and iv.low <= iv.value <= iv.high and iv.n == 201
    diff = stats.paired_difference(values - 3, values, resamples=300, statistic="median")
    assert diff == stats.Interval(-3.0, -3.0, -3.0, 201)  # a constant shift survives every resample


def test_intervals_and_paired_differences_for_the_exact_metrics(with_targets):
    summaries, diffs = intervals.analyse([intervals.read_evaluation(e) for e in with_targets], resamples=200)
    amnet = summaries["amnet"]
    for metric in EXACT_METRICS:
        assert metric in amnet.ci and amnet.ci[metric].n == 20, metric
    assert amnet.ci["median_rank"].value == amnet.mean["median_rank"]
    assert diffs["no_memory"]["median_rank"] == stats.Interval(-3.0, -3.0, -3.0, 20)
    assert diffs["attribute_based"]["recall50"].value >= 0
    scalars = intervals.scalars(summaries, diffs)
    assert "amnet_recall10_ci_low" in scalars and scalars["amnet_minus_no_memory_median_rank"] == -3.0


# ------------------------------------------------------------------------------------- report and tables
def test_report_has_the_exact_target_table_and_figure_only_when_present(with_targets, without_targets, tmp_path):
    report = run_report(with_targets, str(tmp_path / "r1"))
    md = (tmp_path / "r1" / "report.md").read_text()
    assert "## Exact target: Recall@K and median rank" in md and "## Paired differences, exact target" in md
    row = next(line for line in md.splitlines() if line.startswith("| amnet |") and "[" in line
               and md.index(line) > md.index("## Exact target"))
    assert len(row.split("|")) - 2 == 6  # variant + R@1, R@10, R@50, median rank, 2-attr R@10
    assert (tmp_path / "r1" / "fig5_recall.png").is_file() and "fig5_recall.png" in md
    assert "no_memory (median rank" in md  # AMNet's lower median rank is on its side of zero
    assert report.headline["amnet_recall10"] >= 0 and "amnet_median_rank_ci_high" in report.headline
    results = json.loads((tmp_path / "r1" / "results.json").read_text())
    assert "recall1" in results["intervals"]["amnet"]["ci95"]
    assert results["differences"]["amnet-no_memory"]["median_rank"]["diff"] == -3.0

    plain = run_report(without_targets, str(tmp_path / "r2"))
    md = (tmp_path / "r2" / "report.md").read_text()
    assert "Exact target" not in md and "exact target" not in md and "R@1" not in md
    assert not (tmp_path / "r2" / "fig5_recall.png").exists()
    assert not any("recall" in k or "median_rank" in k for k in plain.headline)


def test_closing_tables_and_parent_note(with_targets, without_targets):
    from amnet.steps.report import results_note

    values, spread = intervals.run_tables(with_targets, resamples=100)
    assert intervals.EXACT_TITLE in values and intervals.EXACT_TITLE in spread and "median rank" in values
    exact_lines = values.split(intervals.EXACT_TITLE)[1].strip().splitlines()
    assert exact_lines[0].split()[:3] == ["variant", "R@1", "R@10"] and len(exact_lines) == 5
    first, _ = values.split("\n\n")
    assert all(len(ln.split()) == 9 for ln in first.splitlines()[2:])  # the headline table is unchanged
    values, spread = intervals.run_tables(without_targets, resamples=100)
    assert intervals.EXACT_TITLE not in values + spread and "R@1" not in values + spread

    def note(evs):
        summaries, diffs = intervals.analyse([intervals.read_evaluation(e) for e in evs], resamples=50)
        headline = {f"{v}_{k}": x for v, s in summaries.items() for k, x in s.mean.items()}
        return results_note({**headline, **intervals.scalars(summaries, diffs)})

    assert "**Exact target**" in note(with_targets) and "| R@1 |" in note(with_targets)
    assert "Exact target" not in note(without_targets) and "R@1" not in note(without_targets)


def test_local_run_fallback_table_adds_the_exact_table_only_when_present(tmp_path):
    from amnet_pipeline.local_run import results_table

    for name, extra in (("with", {"recall1": 0.2, "recall10": 0.5, "median_rank": 12.0}), ("without", {})):
        task = tmp_path / name / "evaluate-retrieval-0"
        task.mkdir(parents=True)
        (task / "executor_output.json").write_text(json.dumps({"artifacts": {
            "evaluation": {"artifacts": [{"uri": "/nowhere", "metadata": {"variant": "amnet"}}]},
            "metrics": {"artifacts": [{"metadata": {"top20": 0.4, **extra}}]}}}))
    table = results_table(tmp_path / "with")
    assert intervals.EXACT_TITLE in table and "12.000" in table and "R@50" not in table  # measured columns only
    assert intervals.EXACT_TITLE not in results_table(tmp_path / "without")


def test_compare_rows_show_exact_metrics_only_when_logged():
    from amnet.ops.tracking.compare import comparison_rows
    from amnet.report.tables import text_table

    logged = {"amnet_top20": 0.8, "amnet_recall10": 0.31, "amnet_recall10_ci_low": 0.2, "amnet_recall10_ci_high": 0.4,
              "amnet_median_rank": 14.0, "amnet_minus_no_memory_median_rank": -3.0,
              "amnet_minus_no_memory_median_rank_ci_low": -5.0, "amnet_minus_no_memory_median_rank_ci_high": -1.0}
    rows = comparison_rows([("aaaaaaaaaa", "FINISHED", "-", logged),
                            ("bbbbbbbbbb", "FINISHED", "-", {"amnet_top20": 0.5})])
    table = {ln.split()[0]: ln.split()[1:] for ln in text_table(rows).splitlines()[2:]}
    assert table["amnet_recall10"] == ["0.310", "-"] and table["amnet_recall10_ci95"] == ["[0.200,0.400]", "-"]
    assert table["amnet_median_rank"] == ["14.000", "-"]
    assert table["amnet_minus_no_memory_median_rank_ci95"] == ["[-5.000,-1.000]", "-"]
    plain = text_table(comparison_rows([("cccccccccc", "FINISHED", "-", {"amnet_top20": 0.5})]))
    assert "recall" not in plain and "median" not in plain


# -------------------------------------------------------------------------------------------- rescore
def tiny_truth(root: Path) -> Path:
    """A dataset folder: 3 attributes of 3 values; gallery images g000..g199, queries q000..q079; each query
    in item group ``i<n>`` with its target image."""
    dataset = root / "dataset"
    dataset.mkdir()
    values = ["a", "b", "c"]
    rows = []
    for g in range(200):
        rows.append({"image_id": f"g{g:03d}", "c0": values[g % 3], "c1": "b", "c2": "c", "item_id": f"i{g}"})
    for i in range(N):
        rows.append({"image_id": f"q{i:03d}", "c0": "a", "c1": "a", "c2": "a", "item_id": ""})
    manifest = pd.DataFrame(rows)
    (dataset / "attributes.json").write_text(json.dumps({"attributes": [
        {"name": n, "values": values} for n in ("c0", "c1", "c2")]}))
    return dataset, manifest


def test_rescore_agrees_on_recall_and_checks_the_saved_positions(tmp_path):
    rescore = load_quality("rescore")
    ranks = np.array([1 + (7 * i) % 70 for i in range(N)])  # some beyond the 50 saved results
    pq = per_query(np.full(N, -1), ranks)
    pq["target"] = [[int(t[1:]) % 3, 1, 2] for t in pq["results"].str[0]]  # the first result's attributes
    dataset, manifest = tiny_truth(tmp_path)
    # each query's target (and g999, the one beyond the saved results) shares the query's item group
    groups = {tid: f"grp{i}" for i, tid in enumerate(pq["target_id"]) if isinstance(tid, str)}
    manifest["item_id"] = [groups.get(i, g) for i, g in zip(manifest["image_id"], manifest["item_id"], strict=True)]
    manifest.loc[manifest["image_id"].str.startswith("q"), "item_id"] = [
        f"grp{i}" if isinstance(t, str) else "" for i, t in enumerate(pq["target_id"])]
    want = {tid: [["a", "b", "c"][int(t[0])], "b", "c"] for tid, t in zip(pq["target_id"], pq["target"], strict=True)
            if isinstance(tid, str)}
    for tid, attrs in want.items():
        if tid == "g999":
            manifest.loc[len(manifest)] = {"image_id": "g999", "c0": attrs[0], "c1": "b", "c2": "c", "item_id": ""}
        else:
            manifest.loc[manifest["image_id"] == tid, ["c0", "c1", "c2"]] = attrs
    manifest.to_parquet(dataset / "manifest.parquet")
    ev_dir = Path(write_eval(tmp_path, "ev", "amnet", pq))
    truth = rescore.read_truth(dataset)
    mine, problems = rescore.exact_target(truth, ev_dir)
    payload = json.loads((ev_dir / "metrics.json").read_text())["metrics"]
    assert {"recall1", "recall5", "recall10", "recall50", "two_recall1", "two_recall50"} <= set(mine)
    for key, value in mine.items():
        assert value == payload[key], key
    # the saved positions agree; the only findings concern g999, the stand-in for targets beyond the saved
    # results (one image for several queries: no group, not every query's attributes)
    assert problems and all("target g999 " in p for p in problems)
    # a target_rank that disagrees with the saved position is found
    pq.loc[0, "target_rank"] = 2
    bad = Path(write_eval(tmp_path, "bad", "amnet", pq))
    assert any("target_rank 2, but the target is result 1" in p for p in rescore.exact_target(truth, bad)[1])
