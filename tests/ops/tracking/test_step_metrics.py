"""Curves as MLflow step metrics, metrics logged against a logged model, and system metrics through
MLflow's public API (amnet.ops.tracking.runs), against the real MLflow server; the naming without one."""

from __future__ import annotations

import os
import time

import pytest

from amnet.ops.tracking import runs


@pytest.fixture
def tracking_env(monkeypatch, mlflow_server):
    """Tracking on, pointed at the test server; no run handed over by KFP."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "amnet-step-metrics")
    return mlflow_server


def _client(server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.tracking_uri)


# ------------------------------------------------------------------------------------- without a server


def test_curve_series_names_one_series_per_curve_and_number_of_changes():
    payload = {"curves": {"1": [0.1, 0.2, 0.3], "2": [0.05, 0.1, 0.2]}, "recall_curves": {"1": [0.3, 0.4, 0.5]},
               "metrics": {"top1": 0.1}}
    assert runs.curve_series(payload) == {
        "curve/top_k_accuracy": [0.1, 0.2, 0.3], "curve/two_top_k_accuracy": [0.05, 0.1, 0.2],
        "curve/exact_recall": [0.3, 0.4, 0.5]}
    assert set(runs.curve_series(payload, "amnet")) == {
        "curve/amnet_top_k_accuracy", "curve/amnet_two_top_k_accuracy", "curve/amnet_exact_recall"}
    assert runs.curve_series({"metrics": {}}) == {}


def test_null_run_takes_series_and_model_metrics(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with runs.stage_run("evaluate-amnet") as run:
        run.log_series({"curve/top_k_accuracy": [0.1, 0.2]})
        run.log_metrics({"top1": 0.1}, 0, model_id="m-123", dataset=("d", "abc"))
    with runs.system_metrics(None):
        pass


# ------------------------------------------------------------------------------------------ the server


def test_series_are_step_metrics_from_k_1(tracking_env):
    client = _client(tracking_env)
    with runs.stage_run("evaluate-amnet") as run:
        run.log_series({"curve/top_k_accuracy": [0.1, 0.2, float("nan"), 0.4]})
    history = client.get_metric_history(run.run_id, "curve/top_k_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2), (4, 0.4)]  # NaN left out


def test_log_to_run_adds_series_to_the_parent_run(tracking_env):
    client = _client(tracking_env)
    parent = runs.start_parent("amnet-step-metrics", "curves")
    runs.log_to_run(parent, {"amnet_top1": 0.5}, series={"curve/amnet_top_k_accuracy": [0.5, 0.6, 0.7]})
    runs.finish_parent(parent)
    assert client.get_run(parent).data.metrics["amnet_top1"] == 0.5
    steps = [m.step for m in client.get_metric_history(parent, "curve/amnet_top_k_accuracy")]
    assert sorted(steps) == [1, 2, 3]


def test_metrics_logged_against_a_model_show_on_the_logged_model(tracking_env):
    client = _client(tracking_env)
    with runs.stage_run("train-amnet") as train:
        experiment_id = client.get_run(train.run_id).info.experiment_id
        model = client.create_logged_model(experiment_id, name="amnet", source_run_id=train.run_id)
    with runs.stage_run("evaluate-amnet") as run:
        run.log_metrics({"top20": 0.8, "recall10": 0.6}, 0, model_id=model.model_id, dataset=("synth", "0123abcd"))
    metrics = {m.key: m for m in client.get_logged_model(model.model_id).metrics}
    assert metrics["top20"].value == 0.8 and metrics["recall10"].value == 0.6
    assert (metrics["top20"].run_id, metrics["top20"].dataset_name, metrics["top20"].dataset_digest) == (
        run.run_id, "synth", "0123abcd")
    assert client.get_run(run.run_id).data.metrics["top20"] == 0.8  # the run holds them too


def test_system_metrics_use_the_public_api_and_leave_the_run_to_its_owner(tracking_env, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    client = _client(tracking_env)
    with runs.stage_run("featurize-amnet") as run:
        monkeypatch.setenv("MLFLOW_RUN_ID", run.run_id)  # as KFP hands a run over
        with runs.system_metrics(run.run_id):
            time.sleep(2.5)
        assert client.get_run(run.run_id).info.status == "RUNNING"
        assert os.environ["MLFLOW_RUN_ID"] == run.run_id and mlflow.active_run() is None
        monkeypatch.delenv("MLFLOW_RUN_ID")
    info = client.get_run(run.run_id)
    assert info.info.status == "FINISHED"
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
        steps = sorted(m.step for m in client.get_metric_history(run.run_id, key))
        assert len(steps) >= 2 and steps == list(range(len(steps))), (key, steps)  # monitor + closing sample


def test_a_block_shorter_than_the_interval_still_records_one_sample(tracking_env):
    client = _client(tracking_env)
    with runs.stage_run("train-amnet") as run, runs.system_metrics(run.run_id):
        pass
    metrics = client.get_run(run.run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_percentage"} <= set(metrics)
