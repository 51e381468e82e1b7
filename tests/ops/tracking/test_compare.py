"""``amnet runs compare`` against the real MLflow server: pipeline parent runs side by side."""

from __future__ import annotations

import datetime
import json
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
    with pytest.raises(SystemExit) as exc:
        main(["runs", "compare", "--last", "0"])
    assert exc.value.code == 2  # argparse's usage error, before any request
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == "amnet runs compare: error: argument --last: must be >= 1 (got 0)"


def test_compare_unknown_experiment_names_it(tracked, capsys):
    name = f"no-such-experiment-{uuid.uuid4().hex[:8]}"
    assert main(["runs", "compare", "--experiment", name]) == 3  # bad input
    err = capsys.readouterr().err
    assert err.startswith("amnet runs compare: error: ") and repr(name) in err


def test_compare_unknown_run_id_is_one_error_line(tracked, capsys):
    missing = uuid.uuid4().hex
    assert main(["runs", "compare", missing, "--json"]) == 3
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if ": error: " in line]
    assert line.startswith(f"amnet runs compare: error: no MLflow run {missing!r}")


def test_compare_unreachable_server_exits_4(monkeypatch, capsys):
    """Nothing listens on the port: the health probe gives up, exit 4 (a service unreachable), one line."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    assert main(["runs", "compare", "--json"]) == 4
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert f"amnet runs compare: error: MLflow tracking server at http://127.0.0.1:{port} is not reachable" in err


@pytest.fixture
def interval_runs(tracked):
    """Two pipeline parent runs with seeds' sd, intervals, a paired difference and params (one the same in
    both, one differing, one only in run a): (experiment, run a, run b)."""
    experiment = f"compare-json-{uuid.uuid4().hex[:8]}"
    a = runs.start_parent(experiment, "pipeline-a", params={"dataset_uri": "s3://amnet/ds", "train_epochs": 8,
                                                            "only_a": "x"})
    b = runs.start_parent(experiment, "pipeline-b", params={"dataset_uri": "s3://amnet/ds", "train_epochs": 12})
    logged = {
        a: {"amnet_top20": 0.81234, "amnet_top20_sd": 0.0123, "amnet_top20_ci_low": 0.78765,
            "amnet_top20_ci_high": 0.86999, "amnet_ndcg20": 0.5, "attribute_based_top20": 0.61,
            "amnet_minus_attribute_based_top20": 0.20234, "amnet_minus_attribute_based_top20_ci_low": 0.15,
            "amnet_minus_attribute_based_top20_ci_high": 0.25012},
        b: {"amnet_top20": 0.7, "amnet_ndcg20": 0.45678},
    }
    for run_id, metrics in logged.items():
        for name, value in metrics.items():
            tracked.log_metric(run_id, name, value)
    tracked.set_tag(a, TAG_DECISION, "amnet v2: kept the champion")
    runs.finish_parent(a)
    runs.finish_parent(b, "FAILED")
    return experiment, a, b


def json_cell(entry: dict, signed: bool = False) -> tuple[str, str]:
    """(value cell, interval cell) of the table, written from one run's JSON metric entry."""
    f = "{:+.3f}" if signed else "{:.3f}"
    value = "-" if entry["value"] is None else f.format(entry["value"])
    if entry["value"] is not None and entry["sd"] is not None:
        value += "±" + f"{entry['sd']:.3f}"
    interval = "-" if entry["ci95"] is None else "[" + ",".join(f.format(x) for x in entry["ci95"]) + "]"
    return value, interval


def test_compare_json_holds_the_tables_numbers(interval_runs, tracked, capsys):
    experiment, a, b = interval_runs
    assert main(["runs", "compare", "--experiment", experiment]) == 0
    rows = table(capsys.readouterr().out)
    assert main(["runs", "compare", "--experiment", experiment, "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)  # stdout is exactly one JSON document
    assert data["experiment"] == experiment
    assert [r["run_id"] for r in data["runs"]] == [b, a]  # the table's order: newest first
    by_id = {r["run_id"]: r for r in data["runs"]}
    ra, rb = by_id[a], by_id[b]
    assert (ra["run_name"], ra["status"], ra["decision"]) == ("pipeline-a", "FINISHED", "kept")
    assert (rb["run_name"], rb["status"], rb["decision"]) == ("pipeline-b", "FAILED", None)
    for run_id, entry in by_id.items():
        info = tracked.get_run(run_id).info
        stamp = datetime.datetime.fromisoformat(entry["start_time"].replace("Z", "+00:00"))
        assert round(stamp.timestamp() * 1000) == info.start_time and entry["start_time"].endswith("Z")
        assert entry["experiment_id"] == info.experiment_id
        assert rows["status"][run_id[:8]] == entry["status"]
        assert rows["decision"][run_id[:8]] == (entry["decision"] or "-")
    # only the params that differ (train_epochs; only_a is missing from b); dataset_uri is the same in both
    assert ra["params"] == {"only_a": "x", "train_epochs": "8"} and rb["params"] == {"only_a": None,
                                                                                     "train_epochs": "12"}
    # the logged values, not rounded text
    assert ra["metrics"]["amnet_top20"] == {"value": 0.81234, "sd": 0.0123, "ci95": [0.78765, 0.86999]}
    assert ra["metrics"]["amnet_minus_attribute_based_top20"] == {"value": 0.20234, "sd": None,
                                                                  "ci95": [0.15, 0.25012]}
    assert rb["metrics"]["attribute_based_top20"] == {"value": None, "sd": None, "ci95": None}
    # every metric row of the table, and nothing else, with the same numbers in every cell
    assert list(ra["metrics"]) == list(rb["metrics"])
    assert {*ra["metrics"], *(f"{k}_ci95" for k in ("amnet_top20", "amnet_minus_attribute_based_top20"))} \
        == set(rows) - {"status", "decision"}
    for key in ra["metrics"]:
        signed = key.startswith("amnet_minus_")
        for run_id, entry in by_id.items():
            value, interval = json_cell(entry["metrics"][key], signed)
            assert rows[key][run_id[:8]] == value, (key, run_id)
            if f"{key}_ci95" in rows:
                assert rows[f"{key}_ci95"][run_id[:8]] == interval, (key, run_id)
    assert rows["amnet_top20"][a[:8]] == "0.812±0.012" and rows["amnet_top20_ci95"][a[:8]] == "[0.788,0.870]"


def test_compare_json_with_run_ids(two_runs, capsys):
    _, a, b = two_runs
    assert main(["runs", "compare", b, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["experiment"] is None  # ids given: the runs may come from several experiments
    (run,) = data["runs"]
    assert run["run_id"] == b and run["decision"] == "champion" and run["params"] == {}
    assert run["metrics"] == {"amnet_top20": {"value": 0.4, "sd": None, "ci95": None},
                              "amnet_ndcg20": {"value": 0.33333, "sd": None, "ci95": None}}


def test_compare_json_without_runs(tracked, capsys):
    experiment = f"compare-empty-{uuid.uuid4().hex[:8]}"
    runs.start_parent(experiment, "not-finished-yet")  # creates the experiment; the role tag matches
    from mlflow import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    for run in client.search_runs([exp.experiment_id]):
        client.delete_run(run.info.run_id)
    assert main(["runs", "compare", "--experiment", experiment, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"experiment": experiment, "runs": []}
