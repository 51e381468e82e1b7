"""Intervals for the headline metrics: bootstrap over queries, paired differences, seeds.

Unit tests on tiny hand-made per-query tables: the statistics (amnet.retrieval.stats), the report's
tables and sections built from evaluation folders written here (no training), the closing table of
``amnet run --local``, ``amnet runs compare``'s rows and the run file's ``seeds`` expansion.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amnet.errors import AmnetError
from amnet.report import intervals
from amnet.report.report import run_report
from amnet.retrieval import stats


def per_query(first_hit: list[int], ndcg: list[float] | None = None, changes: list[int] | None = None,
              ids: list[str] | None = None) -> pd.DataFrame:
    n = len(first_hit)
    changes = changes or [1] * n
    return pd.DataFrame({
        "image_id": ids or [f"q{i:03d}" for i in range(n)], "num_changes": changes,
        "changed": [[i % 3] if c == 1 else [0, 1] for i, c in enumerate(changes)],
        "target": [[i % 3, 1, 2] for i in range(n)], "first_hit_rank": first_hit,
        "ndcg": ndcg if ndcg is not None else [0.5] * n})


# ------------------------------------------------------------------------------------------ stats
def test_metric_values_follow_the_metric_definitions():
    pq = per_query([1, 3, 21, -1, 5, 1], ndcg=[0.9, 0.5, 0.1, 0.0, 0.3, 0.7], changes=[1, 1, 1, 1, 2, 2])
    rows, v = stats.metric_values(pq, "top1")
    assert list(rows) == [0, 1, 2, 3] and list(v) == [1, 0, 0, 0]
    assert list(stats.metric_values(pq, "top20")[1]) == [1, 1, 0, 0]  # rank 21 is not in the top 20
    assert list(stats.metric_values(pq, "top50")[1]) == [1, 1, 1, 0]  # -1: no exact match at all
    rows, v = stats.metric_values(pq, "two_top5")
    assert list(rows) == [4, 5] and list(v) == [1, 1]
    assert stats.metric_values(pq, "two_ndcg20")[1].tolist() == [0.3, 0.7]
    with pytest.raises(AmnetError, match="NDCG@20, not NDCG@10"):
        stats.metric_values(pq, "ndcg10")
    assert stats.parse_metric("three_top10") == (3, "top", 10)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = (np.random.default_rng(0).random(300) < 0.8).astype(float)
    a, b = stats.bootstrap(values, seed=3), stats.bootstrap(values, seed=3)
    assert a == b and a.n == 300 and a.value == pytest.approx(values.mean())
    assert a.low < a.value < a.high
    # binomial standard error at p ~ 0.8, N = 300 is ~0.023: the 95% interval is about +-1.96 se
    se = np.sqrt(a.value * (1 - a.value) / 300)
    assert a.high - a.low == pytest.approx(2 * 1.96 * se, rel=0.2)
    assert stats.bootstrap(values, seed=4) != a
    assert stats.bootstrap(np.ones(50)) == stats.Interval(1.0, 1.0, 1.0, 50)


def test_identical_rankings_give_a_zero_difference_interval():
    pq = per_query(list(np.random.default_rng(1).integers(-1, 30, 200)), ndcg=list(np.linspace(0, 1, 200)))
    for metric in ("top1", "top20", "ndcg20"):
        _, a = stats.metric_values(pq, metric)
        iv = stats.paired_difference(a, a.copy())
        assert (iv.value, iv.low, iv.high) == (0.0, 0.0, 0.0) and not iv.excludes_zero()


def test_a_variant_that_is_always_better_has_an_interval_above_zero():
    rng = np.random.default_rng(2)
    worse = rng.random(200) * 0.5
    better = worse + 0.002 + rng.random(200) * 0.01  # better on every query, by little
    iv = stats.paired_difference(better, worse)
    assert 0 < iv.low < iv.value < iv.high and iv.excludes_zero()
    # a small but consistent lead the unpaired intervals cannot separate is clear when paired
    a, b = stats.bootstrap(better), stats.bootstrap(worse)
    assert a.low < b.high and iv.low > 0


def test_the_interval_is_the_percentile_interval_of_the_seeded_resamples():
    """Percentile bootstrap (chosen over BCa by benchmarks/bootstrap_coverage.py): the 2.5 / 97.5
    percentiles of B resampled means drawn from ``default_rng(seed)``, so a seed repeats bit for bit."""
    values = (np.random.default_rng(5).random(238) < 0.97).astype(float)  # a near-ceiling Recall@10
    iv = stats.bootstrap(values, resamples=500, seed=7)
    idx = np.random.default_rng(7).integers(0, 238, size=(500, 238))
    low, high = np.quantile(values[idx].mean(1), [0.025, 0.975])
    assert (iv.value, iv.low, iv.high, iv.n) == (values.mean(), low, high, 238)
    assert stats.bootstrap(values, resamples=500, seed=7) == iv and iv.low < iv.value <= iv.high <= 1.0
    median = stats.bootstrap(np.arange(1.0, 52.0), resamples=500, seed=7, statistic="median")
    assert median == stats.bootstrap(np.arange(1.0, 52.0), resamples=500, seed=7, statistic="median")
    assert median.value == 26.0 and median.low < 26.0 < median.high


def test_all_hits_give_a_zero_width_interval_at_the_value():
    ones = np.ones(300)  # every query hit: each resample has the same mean
    assert stats.bootstrap(ones, seed=3) == stats.Interval(1.0, 1.0, 1.0, 300)
    assert stats.bootstrap(np.zeros(238)) == stats.Interval(0.0, 0.0, 0.0, 238)
    assert stats.paired_difference(ones, ones) == stats.Interval(0.0, 0.0, 0.0, 300)
    assert stats.paired_difference(ones, np.zeros(300)) == stats.Interval(1.0, 1.0, 1.0, 300)
    assert stats.bootstrap(np.full(238, 1.0), statistic="median") == stats.Interval(1.0, 1.0, 1.0, 238)
    assert np.isnan(stats.bootstrap(np.array([])).value) and stats.bootstrap(np.array([])).n == 0


def test_paired_difference_of_correlated_hits():
    """Two variants' hits on the same queries, agreeing on most: the paired interval is the bootstrap of
    the per-query differences, seeded, and much narrower than if the two were independent."""
    u = np.random.default_rng(11).random(300)
    a = (u < 0.62).astype(float)  # hits on 62 % of the queries
    b = ((u >= 0.10) & (u < 0.65)).astype(float)  # 55 %, sharing 52 % with a
    iv = stats.paired_difference(a, b, seed=4)
    assert iv.value == pytest.approx(a.mean() - b.mean()) and iv.n == 300
    assert iv == stats.bootstrap(a - b, seed=4) == stats.paired_difference(a, b, seed=4)
    assert iv.low < iv.value < iv.high and iv != stats.paired_difference(a, b, seed=5)
    ia, ib = stats.bootstrap(a, seed=4), stats.bootstrap(b, seed=4)
    unpaired = np.hypot(ia.high - ia.low, ib.high - ib.low)  # the difference's width were a and b independent
    assert iv.high - iv.low < 0.7 * unpaired
    flipped = stats.paired_difference(b, a, seed=4)  # b − a: the mirror image on the same resamples
    assert (flipped.value, flipped.low, flipped.high) == pytest.approx((-iv.value, -iv.high, -iv.low))
    with pytest.raises(AmnetError, match="differ in length"):
        stats.paired_difference(a, b[:-1])


def test_pairing_by_query_key_and_refusing_different_query_sets():
    a = per_query([1, 2, 3])
    b = a.iloc[[2, 0, 1]].reset_index(drop=True)  # same queries, other order
    ia, ib = stats.pair(stats.query_keys(a), stats.query_keys(b))
    assert list(a["image_id"][ia]) == list(b["image_id"][ib])
    other = per_query([1, 2, 3], ids=["q000", "q001", "x"])
    with pytest.raises(AmnetError, match="different query sets .*1 queries only in amnet, 1 only in no_memory"):
        stats.pair(stats.query_keys(a), stats.query_keys(other), ("amnet", "no_memory"))
    changed = a.copy()
    changed.at[0, "target"] = [9, 9, 9]  # same image, other manipulation: another query
    with pytest.raises(AmnetError, match="different query sets"):
        stats.pair(stats.query_keys(a), stats.query_keys(changed))
    assert stats.seed_spread([0.8]) == (0.8, None)
    assert stats.seed_spread([0.8, 0.9, 1.0])[1] == pytest.approx(0.1)


# ----------------------------------------------------------------------------- evaluation folders
def write_eval(root: Path, name: str, variant: str, pq: pd.DataFrame, seed: int | None = None) -> str:
    """An evaluation folder as `amnet step evaluate` writes it (metrics computed from the per-query rows)."""
    out = root / name
    out.mkdir(parents=True)
    pq.to_parquet(out / "per_query.parquet")
    metrics = {}
    for key in ("top1", "top5", "top10", "top20", "top50", "ndcg20", "two_top20", "two_ndcg20"):
        _, values = stats.metric_values(pq, key)
        metrics[key] = float(values.mean())
    payload = {"variant": variant, "metrics": metrics, "config": {"ndcg_k": 20, "queries": "test"}, "seed": seed}
    (out / "metrics.json").write_text(json.dumps(payload))
    return str(out)


@pytest.fixture
def evaluations(tmp_path) -> list[str]:
    """amnet with 2 seeds (better than the baseline on every query), no_memory, attribute_based."""
    rng = np.random.default_rng(0)
    n = 120
    changes = [1] * 60 + [2] * 60
    base = rng.integers(2, 40, n)
    ndcg = rng.random(n) * 0.5
    return [
        write_eval(tmp_path, "a0", "amnet", per_query(list(np.maximum(1, base - 1)), list(ndcg + 0.2), changes), 0),
        write_eval(tmp_path, "a1", "amnet", per_query(list(np.maximum(1, base - 2)), list(ndcg + 0.3), changes), 1),
        write_eval(tmp_path, "nm", "no_memory", per_query(list(base), list(ndcg + 0.1), changes), 0),
        write_eval(tmp_path, "ab", "attribute_based", per_query(list(base + 5), list(ndcg), changes)),
    ]


def test_seeds_are_summarised_as_mean_and_sd_with_pooled_intervals(evaluations):
    summaries, diffs = intervals.analyse([intervals.read_evaluation(e) for e in evaluations], resamples=200)
    assert list(summaries) == ["amnet", "no_memory", "attribute_based"]
    amnet = summaries["amnet"]
    assert amnet.seeds == (0, 1)
    one = [json.loads((Path(e) / "metrics.json").read_text())["metrics"]["ndcg20"] for e in evaluations[:2]]
    assert amnet.mean["ndcg20"] == pytest.approx(np.mean(one))
    assert amnet.sd["ndcg20"] == pytest.approx(np.std(one, ddof=1))
    assert amnet.ci["ndcg20"].value == pytest.approx(np.mean(one))  # pooled: the mean of the per-query seed means
    assert summaries["no_memory"].sd["top20"] is None  # one seed: no spread
    assert set(diffs) == {"no_memory", "attribute_based"}
    assert diffs["attribute_based"]["ndcg20"].low > 0 and diffs["attribute_based"]["two_ndcg20"].low > 0
    scalars = intervals.scalars(summaries, diffs)
    assert scalars["amnet_seeds"] == 2 and "amnet_top20_sd" in scalars and "no_memory_top20_sd" not in scalars
    assert scalars["amnet_top20_ci_low"] <= amnet.mean["top20"] <= scalars["amnet_top20_ci_high"]
    assert scalars["amnet_minus_attribute_based_ndcg20_ci_low"] > 0


def test_report_shows_intervals_and_paired_differences(evaluations, tmp_path):
    report = run_report(evaluations, str(tmp_path / "report"))
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Paired differences: AMNet − x" in md and "| attribute_based | +" in md
    row = next(line for line in md.splitlines() if line.startswith("| amnet (2 seeds) |"))
    assert " ± " in row and "[" in row  # mean ± sd [interval]
    assert "95% bootstrap interval over queries" in md and "pools the seeds" in md
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<td class=best>" in page  # the best value of a column is still found in "0.8 [..]" cells
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert results["intervals"]["amnet"]["seeds"] == [0, 1]
    assert results["differences"]["amnet-attribute_based"]["ndcg20"]["ci95"][0] > 0
    assert results["bootstrap"] == {"resamples": 1000, "seed": 0, "level": 0.95}
    assert report.headline["amnet_top20_ci_high"] >= report.headline["amnet_top20"]
    per_query_rows = pd.read_parquet(tmp_path / "report" / "per_query.parquet")
    assert len(per_query_rows) == 4 * 120 and set(per_query_rows["seed"].dropna()) == {0, 1}
    # the summary counts each query once, not once per seed
    assert "60 changing 1 attribute, 60 changing 2 attributes" in md


def test_report_refuses_evaluations_of_different_query_sets(evaluations, tmp_path):
    other = write_eval(tmp_path, "val", "no_ranking", per_query([1] * 120, changes=[1] * 60 + [2] * 60,
                                                                ids=[f"v{i}" for i in range(120)]))
    with pytest.raises(AmnetError, match="different query sets"):
        run_report([*evaluations, other], str(tmp_path / "report"))


def test_results_note_and_closing_tables(evaluations):
    from amnet.steps.report import results_note

    values, spread = intervals.run_tables(evaluations, resamples=200)
    lines = values.splitlines()
    assert lines[0].split()[0] == "variant" and [ln.split()[0] for ln in lines[2:]] == [
        "amnet", "no_memory", "attribute_based"]
    assert all(len(ln.split()) == 9 for ln in lines[2:])  # variant + 8 numbers: the table tests parse
    assert "amnet (2 seeds)" in spread and "sd over 2 seeds" in spread and "amnet − attribute_based" in spread
    assert "paired 95% CI" in spread and "B = 200" in spread
    assert intervals.run_tables(evaluations, resamples=0)[1] == ""
    summaries, diffs = intervals.analyse([intervals.read_evaluation(e) for e in evaluations], resamples=100)
    headline = {f"{v}_{k}": x for v, s in summaries.items() for k, x in s.mean.items()}
    note = results_note({**headline, **intervals.scalars(summaries, diffs)})
    assert "| amnet | 0." in note and " ± " in note and "In brackets: 95% bootstrap" in note


def test_local_run_tables_read_the_evaluation_folders(evaluations, tmp_path):
    from amnet_pipeline.local_run import results_table, uncertainty_table

    run_dir = tmp_path / "run"
    for i, ev in enumerate(evaluations):
        task = run_dir / f"evaluate-retrieval-{i}"
        task.mkdir(parents=True)
        (task / "executor_output.json").write_text(json.dumps({"artifacts": {
            "evaluation": {"artifacts": [{"uri": ev, "metadata": {"variant": "?"}}]},
            "metrics": {"artifacts": [{"metadata": {}}]}}}))
    rows = {ln.split()[0]: ln.split()[1:] for ln in results_table(run_dir).splitlines()[2:]}
    assert set(rows) == {"amnet", "no_memory", "attribute_based"} and all(len(c) == 8 for c in rows.values())
    assert "amnet − no_memory" in uncertainty_table(run_dir)


def test_compare_rows_show_sd_intervals_and_differences():
    from amnet.ops.tracking.compare import comparison_rows
    from amnet.report.tables import text_table

    metrics = {"amnet_top20": 0.83, "amnet_top20_sd": 0.012, "amnet_top20_ci_low": 0.79, "amnet_top20_ci_high": 0.87,
               "attribute_based_top20": 0.8, "amnet_minus_attribute_based_top20": 0.03,
               "amnet_minus_attribute_based_top20_ci_low": -0.01, "amnet_minus_attribute_based_top20_ci_high": 0.07}
    rows = comparison_rows([("aaaaaaaaaa", "FINISHED", "-", metrics), ("bbbbbbbbbb", "FINISHED", "kept",
                                                                          {"amnet_top20": 0.5})])
    table = {line.split()[0]: line.split()[1:] for line in text_table(rows).splitlines()[2:]}
    assert table["amnet_top20"] == ["0.830±0.012", "0.500"]
    assert table["amnet_top20_ci95"] == ["[0.790,0.870]", "-"]
    assert table["attribute_based_top20"] == ["0.800", "-"]
    assert table["amnet_minus_attribute_based_top20"] == ["+0.030", "-"]
    assert table["amnet_minus_attribute_based_top20_ci95"] == ["[-0.010,+0.070]", "-"]
    assert "amnet_ndcg20" not in table and "amnet_minus_no_memory_top20" not in table


# ------------------------------------------------------------------------------ image-only baseline
@pytest.fixture
def with_image_only(evaluations, tmp_path) -> list[str]:
    """The evaluations above plus image_only (amnet's model, query unmanipulated: worse than amnet on every
    query, one evaluation per amnet seed) and an image output its evaluate task left empty."""
    rng = np.random.default_rng(0)
    changes = [1] * 60 + [2] * 60
    base, ndcg = rng.integers(2, 40, 120), rng.random(120) * 0.5  # the same draws as `evaluations`
    images = [write_eval(tmp_path, f"io{s}", "image_only", per_query(list(base + 3), list(ndcg + 0.05), changes), s)
              for s in (0, 1)]
    from amnet.steps.evaluate import write_not_evaluated

    write_not_evaluated(str(tmp_path / "io-skipped"), "image_only", "image_baseline is off")
    return [*evaluations, *images, str(tmp_path / "io-skipped")]


def test_image_only_is_a_baseline_row_with_its_paired_difference(with_image_only, tmp_path):
    from amnet.ops.tracking.compare import comparison_rows
    from amnet.report.tables import text_table
    from amnet.steps.report import is_evaluation, results_note, run_step

    *scored, skipped = with_image_only
    assert [is_evaluation(e) for e in with_image_only] == [True] * len(scored) + [False]
    headline = run_step(scored[:4], str(tmp_path / "report"), image_evaluations=[*scored[4:], skipped])
    md = (tmp_path / "report" / "report.md").read_text()
    summary = md.split("## Summary", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ")[0].lstrip("| ") for line in summary.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["amnet (2 seeds)", "no_memory", "attribute_based", "image_only (2 seeds)"], rows
    assert "image_only = plain visual search: the query image's own representation r, no change applied" in md
    differences = md.split("## Paired differences: AMNet − x", 1)[1].split("\n## ", 1)[0]
    assert "| image_only | +" in differences
    assert headline["amnet_minus_image_only_ndcg20_ci_low"] > 0 and "image_only_top20" in headline
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert list(results["variants"]) == ["amnet", "no_memory", "attribute_based", "image_only"]
    assert results["intervals"]["image_only"]["seeds"] == [0, 1]
    assert results["differences"]["amnet-image_only"]["ndcg20"]["ci95"][0] > 0
    assert any(line.startswith("| image_only |") for line in results_note(headline).splitlines())
    table = {line.split()[0]: line.split()[1:] for line in text_table(comparison_rows(
        [("aaaaaaaaaa", "FINISHED", "-", headline)])).splitlines()[2:]}
    assert "image_only_top20" in table and table["amnet_minus_image_only_top20"][0].startswith("+")


def test_local_run_tables_add_the_image_only_outputs(with_image_only, tmp_path):
    """``amnet run --local``'s closing table: each evaluate task's image output, skipped when left empty; from
    the tasks' Metrics (``image_only_*`` keys) when the folders are not on this machine."""
    from amnet_pipeline.local_run import results_table

    *scored, skipped = with_image_only
    run_dir = tmp_path / "run"
    for i, (ev, image) in enumerate(zip(scored[:4], [scored[4], scored[5], skipped, skipped], strict=True)):
        task = run_dir / f"evaluate-retrieval-{i}"
        task.mkdir(parents=True)
        (task / "executor_output.json").write_text(json.dumps({"artifacts": {
            "evaluation": {"artifacts": [{"uri": ev, "metadata": {"variant": "?"}}]},
            "image_evaluation": {"artifacts": [{"uri": image, "metadata": {}}]},
            "metrics": {"artifacts": [{"metadata": {}}]}}}))
    rows = {ln.split()[0]: ln.split()[1:] for ln in results_table(run_dir).splitlines()[2:]}
    assert set(rows) == {"amnet", "no_memory", "attribute_based", "image_only"}
    image_top20 = np.mean([json.loads((Path(e) / "metrics.json").read_text())["metrics"]["top20"] for e in scored[4:]])
    assert float(rows["image_only"][3]) == pytest.approx(image_top20, abs=5e-4)

    remote = tmp_path / "remote"  # the folders elsewhere (a cluster's S3): the Metrics outputs give the rows
    task = remote / "evaluate-retrieval"
    task.mkdir(parents=True)
    (task / "executor_output.json").write_text(json.dumps({"artifacts": {
        "evaluation": {"artifacts": [{"uri": "s3://b/eval", "metadata": {"variant": "amnet"}}]},
        "image_evaluation": {"artifacts": [{"uri": "s3://b/image", "metadata": {"variant": "image_only"}}]},
        "metrics": {"artifacts": [{"metadata": {"top20": 0.9, "image_only_top20": 0.4}}]}}}))
    rows = {ln.split()[0]: ln.split()[1:] for ln in results_table(remote).splitlines()[2:]}
    assert rows["amnet"][3] == "0.900" and rows["image_only"][3] == "0.400"


# ---------------------------------------------------------------------------------------- seeds
def test_seeds_expand_variants_for_the_pipeline_loop():
    from amnet_pipeline import run_config

    assert run_config.variant_items(["amnet", "no_memory"], 2, 5) == [
        {"variant": "amnet", "seed": 5}, {"variant": "amnet", "seed": 6},
        {"variant": "no_memory", "seed": 5}, {"variant": "no_memory", "seed": 6}]
    rc = run_config.parse({"variants": ["amnet"], "seeds": 3, "train": {"seed": 1}})
    assert rc.seeds == 3 and rc.variant_items() == [{"variant": "amnet", "seed": s} for s in (1, 2, 3)]
    assert run_config.parse({}).variant_items() == [{"variant": v, "seed": 0}
                                                    for v in ("amnet", "no_memory", "no_ranking")]
    for bad in (0, -1, "two", 1.5, True):
        with pytest.raises(AmnetError, match="seeds must be an integer >= 1"):
            run_config.parse({"seeds": bad})
    assert "seeds" not in run_config.parse({}).pipeline_arguments()  # seeds: 1 = the pipeline as before
    assert rc.pipeline_arguments()["seeds"] == 3


def test_the_report_states_the_papers_ordering_on_each_yardstick():
    from amnet.report import sections
    from amnet.report.intervals import VariantSummary
    from amnet.retrieval.stats import Interval

    def summary(v, top1, r1):
        return VariantSummary(v, (0,), {"top1": top1, "recall1": r1}, {"top1": None, "recall1": None},
                              {"top1": Interval(top1, top1 - 0.05, top1 + 0.05, 300),
                               "recall1": Interval(r1, r1 - 0.06, r1 + 0.06, 200)})

    summaries = {"amnet": summary("amnet", 0.70, 0.72), "no_memory": summary("no_memory", 0.60, 0.50),
                 "no_ranking": summary("no_ranking", 0.71, 0.60)}
    diffs = {"no_ranking": {"top1": Interval(-0.01, -0.04, 0.02, 300), "recall1": Interval(0.12, 0.07, 0.17, 200)},
             "no_memory": {"top1": Interval(0.10, 0.05, 0.15, 300), "recall1": Interval(0.22, 0.15, 0.29, 200)}}
    section = sections.ordering(summaries, diffs)
    top1, recall = section.paragraphs[1], section.paragraphs[2]
    assert top1.startswith("top-1: amnet 0.700 [0.650, 0.750], no_ranking 0.710") and "does not hold" in top1
    assert "AMNet − no_ranking -0.010 [-0.040, +0.020] (contains zero)" in top1
    assert recall.startswith("exact-target Recall@1: amnet 0.720 [0.660, 0.780] > no_ranking 0.600")
    assert "holds" in recall and "does not hold" not in recall and "(above zero)" in recall
    assert sections.ordering({"no_memory": summaries["no_memory"], "no_ranking": summaries["no_ranking"]}, {}) is None
