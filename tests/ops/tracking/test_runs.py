"""amnet.ops.tracking.runs against a real MLflow server whose artifacts live in the stack's S3 (SeaweedFS)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from amnet.errors import AmnetError
from amnet.ops.tracking import runs


@pytest.fixture
def tracking_env(monkeypatch, mlflow_server):
    """Tracking on, pointed at the test server; no run handed over by KFP."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "amnet-tests")
    return mlflow_server


def _client(server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.tracking_uri)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------- without a server


def test_module_imports_without_mlflow():
    code = ("import sys; sys.modules['mlflow'] = None\n"  # any `import mlflow` now fails
            "import amnet.ops.tracking.runs as t\n"
            "with t.stage_run('x', None, {'a': 1}, {}) as run:\n"
            "    run.log_metrics({'loss': 1.0}, 0)\n"
            "assert t.start_parent('e', 'r') == ''\n")
    env = {"PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_tracking_off_gives_null_tracker(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert not runs.tracking_enabled()
    assert isinstance(runs.get_tracker(), runs.NullTracker)
    with runs.stage_run("pretrain", None, {"epochs": 1}, {}) as run:
        run.log_metrics({"loss": 0.5}, step=3)
        run.log_params({"x": 1})
        run.log_text("t", "t.txt")
        run.log_dict({"a": 1}, "a.json")
        run.log_artifact("/nonexistent")
        run.set_tags({"k": "v"})
    runs.finish_parent("", "FAILED")


def test_safe_params_drops_secrets_by_name_and_by_value():
    env = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value-xyz", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"}
    params = {
        "model": {"feature_dim": 256, "backbone": "small"},
        "train.lr": 0.01, "max_tokens": 5, "monkey_patch": True,
        "aws_secret_access_key": "anything", "hf_token": "t", "apiKey": "k", "db.password": "p",
        "storage.access_key_id": "AKIDEXAMPLE", "credentials": "c",
        "note": "AKIDEXAMPLE", "endpoint": "http://user:s3cr3t-value-xyz@host",
    }
    assert runs.safe_params(params, env=env) == {
        "model.feature_dim": 256, "model.backbone": "small", "train.lr": 0.01, "max_tokens": 5,
        "monkey_patch": True,
    }
    assert runs.safe_params({"sort_key": "name"}, allow=("sort_key",), env={}) == {"sort_key": "name"}


def test_unreachable_server_fails_fast():
    uri = f"http://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(AmnetError, match="not reachable.*amnet stack up.*MLFLOW_TRACKING_URI"):
        runs.check_tracking_server(uri, timeout=10)
    assert time.monotonic() - t0 < 5


def test_non_http_uri_needs_no_server(tmp_path):
    runs.check_tracking_server(f"sqlite:///{tmp_path}/x.db")


def test_bad_status_is_rejected():
    with pytest.raises(AmnetError, match="FINISHED, FAILED, KILLED"):
        runs.Tracker("http://127.0.0.1:1").finish_parent("whatever", "DONE")


# ----------------------------------------------------------------------------------------- with a server


def test_server_is_reachable(tracking_env):
    runs.check_tracking_server(tracking_env.tracking_uri, timeout=10)


def test_parent_and_nested_stage_run(tracking_env, tmp_path):
    client = _client(tracking_env)
    parent = runs.start_parent("amnet-tests", "pipeline-1", {"amnet.pipeline": "local"})
    artifact = tmp_path / "report.txt"
    artifact.write_text("hello artifact")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.yaml").write_text("a: 1\n")

    with runs.stage_run("pretrain", parent, {"model.feature_dim": 256, "epochs": 2},
                            {"amnet.extra": "yes"}) as run:
        for step, loss in enumerate([1.0, 0.5, 0.25]):
            run.log_metrics({"loss": loss, "top@1": 0.1 * step, "note": "skipped"}, step=step)
        run.log_metrics({"np_metric": np.float32(0.5), "torch_metric": torch.tensor(0.25)}, step=0)
        run.log_artifact(str(artifact))
        run.log_artifact(str(model_dir))
        run.log_text("k: v\n", "config.yaml")
        run.log_dict({"top1": 0.5}, "metrics.json")
        run.set_tags({"amnet.model": "attribute_cnn"})
        stage_id = run.run_id

    got = client.get_run(stage_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "pretrain"
    assert got.data.tags["mlflow.parentRunId"] == parent
    assert got.data.tags["amnet.stage"] == "pretrain"
    assert got.data.tags["amnet.extra"] == "yes"
    assert got.data.tags["amnet.model"] == "attribute_cnn"
    assert got.data.params == {"model.feature_dim": "256", "epochs": "2"}
    history = client.get_metric_history(stage_id, "loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    assert "top_1" in got.data.metrics  # '@' is not a valid MLflow name character: replaced
    assert "note" not in got.data.metrics
    assert got.data.metrics["np_metric"] == 0.5 and got.data.metrics["torch_metric"] == 0.25
    assert got.info.experiment_id == client.get_run(parent).info.experiment_id
    names = {a.path for a in client.list_artifacts(stage_id)}
    assert {"report.txt", "model", "config.yaml", "metrics.json"} <= names
    assert [a.path for a in client.list_artifacts(stage_id, "model")] == ["model/config.yaml"]

    assert client.get_run(parent).info.status == "RUNNING"
    runs.finish_parent(parent, "FINISHED")
    assert client.get_run(parent).info.status == "FINISHED"


def test_artifacts_land_in_the_s3_bucket(tracking_env, tmp_path):
    artifact = tmp_path / "weights.bin"
    artifact.write_bytes(b"\x01\x02\x03")
    with runs.stage_run("train", None, {}, {}) as run:
        run.log_artifact(str(artifact))
        run_id = run.run_id
    s3 = tracking_env.client()
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=tracking_env.bucket,
                                                                              Prefix="mlflow/")
            for o in page.get("Contents", [])]
    mine = [k for k in keys if run_id in k and k.endswith("/weights.bin")]
    assert len(mine) == 1, keys
    assert s3.get_object(Bucket=tracking_env.bucket, Key=mine[0])["Body"].read() == b"\x01\x02\x03"


def test_failing_stage_marks_run_failed(tracking_env):
    client = _client(tracking_env)
    parent = runs.start_parent("amnet-tests", "pipeline-fails")
    with pytest.raises(RuntimeError, match="boom"), runs.stage_run("train", parent, {}, {}) as run:
        run.log_metrics({"loss": 3.0}, step=0)
        stage_id = run.run_id
        raise RuntimeError("boom")
    assert client.get_run(stage_id).info.status == "FAILED"
    runs.finish_parent(parent, "failed")
    assert client.get_run(parent).info.status == "FAILED"


def test_mlflow_run_id_env_logs_into_that_run(tracking_env, monkeypatch):
    """KFP's MLflow integration creates the task's run and passes it in MLFLOW_RUN_ID: log there, don't end it."""
    client = _client(tracking_env)
    exp_id = runs.Tracker().experiment_id("amnet-tests")
    given = client.create_run(exp_id, run_name="kfp-task", tags={"kfp.task": "evaluate"}).info.run_id
    client.log_param(given, "epochs", "2")  # the launcher may have logged some params already
    before = len(client.search_runs([exp_id], max_results=1000))
    monkeypatch.setenv("MLFLOW_RUN_ID", given)

    with runs.stage_run("evaluate", "some-parent-id", {"epochs": 2, "k": 5}, {}) as run:
        assert run.run_id == given
        run.log_metrics({"top1": 0.7}, step=0)

    got = client.get_run(given)
    assert got.data.metrics["top1"] == pytest.approx(0.7)
    assert got.data.params == {"epochs": "2", "k": "5"}
    assert got.data.tags["amnet.stage"] == "evaluate"
    assert "mlflow.parentRunId" not in got.data.tags
    assert got.info.status == "RUNNING"  # KFP ends it
    assert len(client.search_runs([exp_id], max_results=1000)) == before


def test_secret_values_never_reach_the_server(tracking_env, monkeypatch):
    secret = tracking_env.env["AWS_SECRET_ACCESS_KEY"]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    params = {"storage.endpoint": "http://127.0.0.1", "copied_by_mistake": secret, "aws_secret": "x", "lr": 0.1}
    with runs.stage_run("split", None, params, {}) as run:
        run.log_params({"another": secret})
        run_id = run.run_id
    logged = _client(tracking_env).get_run(run_id).data.params
    assert logged == {"storage.endpoint": "http://127.0.0.1", "lr": "0.1"}
    assert secret not in str(logged)


def test_log_to_run_adds_metrics_and_files_to_an_existing_run(tracking_env, tmp_path):
    client = _client(tracking_env)
    parent = runs.start_parent("amnet-tests", "pipeline-report")
    (tmp_path / "report.md").write_text("# report\n")
    runs.log_to_run(parent, {"amnet_top20": 0.42}, {"report.md": str(tmp_path / "report.md")})
    got = client.get_run(parent)
    assert got.data.metrics["amnet_top20"] == pytest.approx(0.42)
    assert [a.path for a in client.list_artifacts(parent)] == ["report.md"]
    runs.finish_parent(parent)


def test_start_parent_fails_fast_when_the_server_is_down(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(AmnetError, match="not reachable"):
        runs.start_parent("amnet-tests", "nope")
