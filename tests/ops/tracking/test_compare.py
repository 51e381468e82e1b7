"""``amnet runs compare`` against the real MLflow server: pipeline parent runs side by side."""

from __future__ import annotations

import uuid

import pytest

from amnet.cli import main
from amnet.ops.tracking import runs
from amnet.ops.tracking.runs import TAG_DECISION


@pytest.fixture
def tracked(monkeypatch, mlflow_server):
    """Tracking on, pointed at the test server; no run handed over by KFP."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.tracking_uri)


@pytest.fixture
def two_runs(tracked):
    """A fresh experiment with two finished pipeline parent runs: (experiment, run a, run b).

    a: amnet_top20 0.12345, amnet_ndcg20 0.2, no_memory_top20 0.0567, no decision;
    b: amnet_top20 0.4, amnet_ndcg20 0.33333, no no_memory metric, promoted to champion."""
    experiment = f"compare-{uuid.uuid4().hex[:8]}"
    a = runs.start_parent(experiment, "pipeline-a")
    b = runs.start_parent(experiment, "pipeline-b")
    for name, value in {"amnet_top20": 0.12345, "amnet_ndcg20": 0.2, "no_memory_top20": 0.0567}.items():
        tracked.log_metric(a, name, value)
    for name, value in {"amnet_top20": 0.4, "amnet_ndcg20": 0.33333}.items():
        tracked.log_metric(b, name, value)
    tracked.set_tag(b, TAG_DECISION, "amnet v1: promoted to champion (first model: no champion yet)")
    runs.finish_parent(a)
    runs.finish_parent(b)
    return experiment, a, b


def table(out: str) -> dict[str, dict[str, str]]:
    """``amnet runs compare`` output -> {row name: {run id prefix: cell}}."""
    lines = out.splitlines()
    header = lines[0].split()
    assert header[0] == "metric" and set(lines[1]) == {"-"}
    rows = {}
    for line in lines[2:]:
        cells = line.split()
        assert len(cells) == len(header), line
        rows[cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return rows


def test_start_parent_tags_the_pipeline_role(two_runs, tracked):
    experiment, a, b = two_runs
    for run_id in (a, b):
        run = tracked.get_run(run_id)
        assert run.data.tags["amnet.role"] == "pipeline" and run.info.status == "FINISHED"
        assert tracked.get_experiment(run.info.experiment_id).name == experiment


def test_compare_lists_the_experiments_runs_side_by_side(two_runs, capsys):
    experiment, a, b = two_runs
    assert main(["runs", "compare", "--experiment", experiment]) == 0
    rows = table(capsys.readouterr().out)
    pa, pb = a[:8], b[:8]
    assert set(rows["status"]) == {pa, pb}
    assert rows["status"] == {pa: "FINISHED", pb: "FINISHED"}
    assert rows["decision"] == {pa: "-", pb: "champion"}
    assert rows["amnet_top20"] == {pa: "0.123", pb: "0.400"}
    assert rows["amnet_ndcg20"] == {pa: "0.200", pb: "0.333"}
    assert rows["no_memory_top20"] == {pa: "0.057", pb: "-"}
    assert set(rows) == {"status", "decision", "amnet_top20", "amnet_ndcg20", "no_memory_top20"}


def test_compare_with_run_ids_shows_only_those_runs(two_runs, capsys):
    _, a, b = two_runs
    assert main(["runs", "compare", b]) == 0
    out = capsys.readouterr().out
    rows = table(out)
    assert a[:8] not in out
    assert rows["decision"] == {b[:8]: "champion"} and rows["amnet_top20"] == {b[:8]: "0.400"}
    assert "no_memory_top20" not in rows  # no shown run has it


def test_compare_last_zero_is_a_usage_error(capsys):
    assert main(["runs", "compare", "--last", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == ["amnet runs compare: error: --last must be >= 1 (got 0)"]


def test_compare_unknown_experiment_names_it(tracked, capsys):
    name = f"no-such-experiment-{uuid.uuid4().hex[:8]}"
    assert main(["runs", "compare", "--experiment", name]) == 2
    err = capsys.readouterr().err
    assert err.startswith("amnet runs compare: error: ") and repr(name) in err
