"""MLflow going away in the middle of a training.

The slow tests use a real ``mlflow server`` of the test's own, stopped and restarted on the same port and
SQLite store while ``amnet.steps.train.run_step`` trains 6 tiny epochs:

* Back within the bound: the stage completes, the run ends FINISHED and holds every epoch's metrics at
  steps 1..6 (nothing lost); metrics logged while the server was away are written by the next epoch's
  call once it answers, and an outage at the stage's end is waited out.
* Never back: the stage fails after ``AMNET_TRACKING_OUTAGE_S`` with one line (exit 4) once the model
  and the last checkpoint are written; a rerun with the server back resumes (nothing left to train)
  and ends the same run FINISHED.

The fast ones pin down the pieces with a client that refuses connections like an absent server.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amnet.errors import EXIT_UNREACHABLE, ConfigError, ServiceUnreachable, exit_code
from amnet.names import MODEL_FILE, TRAIN_STATE
from amnet.ops.tracking import runs

TRAIN = {"epochs": 6, "steps_per_epoch": 2, "batch_size": 8}
EPOCH_METRICS = ("loss", "images_per_s", "lr")


class OwnMlflow:
    """An ``mlflow server`` for one test (SQLite store and local artifacts under ``root``, a free port),
    started with the stack's process helpers; ``stop`` and ``start`` again keep its port and store."""

    def __init__(self, root: Path):
        from amnet.stack.processes import _pick_ports

        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = _pick_ports(("http",))["http"]
        self.pid: int | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> None:
        from amnet.stack.mlflow_server import _mlflow_healthy
        from amnet.stack.processes import _spawn, _wait_ready

        args = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", "1"]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AMNET_"))},
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log = self.root / "mlflow.log"
        self.pid = _spawn(args, log, env=env)
        _wait_ready("MLflow server", self.pid, lambda: _mlflow_healthy(self.uri), log, timeout)

    def stop(self) -> None:
        from amnet.stack.processes import _stop_groups

        if self.pid is not None:
            _stop_groups([self.pid])
            self.pid = None

    def restart_later(self, delay_s: float) -> threading.Thread:
        """Start the server again ``delay_s`` seconds from now, in a thread (join it to wait for it)."""
        def run() -> None:
            time.sleep(delay_s)
            self.start()

        thread = threading.Thread(target=run, name="mlflow-restart", daemon=True)
        thread.start()
        return thread


@pytest.fixture
def own_mlflow(tmp_path, monkeypatch) -> Iterator[OwnMlflow]:
    """A running ``OwnMlflow``; this test's ``MLFLOW_TRACKING_URI`` points at it."""
    pytest.importorskip("mlflow")
    server = OwnMlflow(tmp_path / "mlflow")
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "AMNET_TRACKING_OUTAGE_S"):
        monkeypatch.delenv(name, raising=False)
    try:
        server.start()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        yield server
    finally:
        server.stop()


def on_epoch_end(monkeypatch, hooks: dict) -> None:
    """Call ``hooks[epoch]()`` right after the training loop ended epoch ``epoch`` (logged it, saved its
    checkpoint)."""
    from amnet.train import checkpoint

    original = checkpoint.end_epoch

    def end_epoch(uri, model, optimizer, scheduler, epoch, history, row, log, main, best=None):
        original(uri, model, optimizer, scheduler, epoch, history, row, log, main, best)
        if epoch in hooks:
            hooks[epoch]()

    monkeypatch.setattr(checkpoint, "end_epoch", end_epoch)


def train(chain, out: Path) -> dict:
    from amnet.steps import train as train_step

    return train_step.run_step(str(chain.split), str(chain.attr), str(chain.protos), str(out), "amnet", TRAIN,
                               progress=False)


def the_run(client, out: Path):
    from amnet.ops.tracking.lineage import read_marker

    run_id = read_marker(str(out)).get("run_id")
    assert run_id, f"{out} names no MLflow run"
    return client.get_run(run_id)


def steps(client, run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, metric))


@pytest.mark.slow
def test_training_rides_out_mlflow_restarts(trained_chain, own_mlflow, monkeypatch, tmp_path, caplog):
    """Server stopped after epoch 2 and back (restarted) before epoch 5 ends, then stopped again after
    the last epoch and restarted a few seconds later: the stage completes, the run is FINISHED and
    holds all 6 epochs of every per-epoch metric, each at its own step and once."""
    from mlflow import MlflowClient

    monkeypatch.setenv("AMNET_TRACKING_OUTAGE_S", "180")  # a slow restart on a busy machine still fits
    client = MlflowClient(own_mlflow.uri)
    restarts: list[threading.Thread] = []
    seen_mid_training: list[int] = []

    def stop_and_restart() -> None:
        own_mlflow.stop()
        restarts.append(own_mlflow.restart_later(3))

    def wait_for_restart() -> None:
        restarts[-1].join(timeout=200)
        assert own_mlflow.pid is not None, "the MLflow server did not come back"

    def check_flushed() -> None:  # epoch 5's call wrote what epochs 3 and 4 left pending
        run = client.search_runs([client.get_experiment_by_name("amnet").experiment_id])[0]
        seen_mid_training.extend(steps(client, run.info.run_id, "loss"))

    on_epoch_end(monkeypatch, {2: stop_and_restart, 4: wait_for_restart, 5: check_flushed, 6: stop_and_restart})
    out = tmp_path / "model"
    with caplog.at_level(logging.INFO, logger="amnet.ops.tracking.runs"):
        result = train(trained_chain, out)

    assert result["epochs"] == 6
    assert seen_mid_training == [1, 2, 3, 4, 5]
    run = the_run(client, out)
    assert run.info.status == "FINISHED"
    for metric in EPOCH_METRICS:  # epochs 1..6, and the final value (step 0) the stage logs at its end
        assert steps(client, run.info.run_id, metric) == [0, 1, 2, 3, 4, 5, 6], metric
    history = client.get_metric_history(run.info.run_id, "loss")
    times = [m.timestamp for m in sorted(history, key=lambda m: m.step) if m.step > 0]
    assert times == sorted(times)  # each value kept the time it was measured, not the time it was sent
    assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    messages = [r.getMessage() for r in caplog.records]
    assert sum("not answering while logging train-amnet" in m for m in messages) == 2, messages
    assert sum("answers again" in m for m in messages) == 2, messages


@pytest.mark.slow
def test_training_fails_in_one_line_when_mlflow_stays_away(trained_chain, own_mlflow, monkeypatch, tmp_path):
    """Server stopped after epoch 2 for good, bound 5 s: training still ends (model and checkpoint
    written), then the stage fails with one ServiceUnreachable line (exit 4) within the bound; with the
    server back, a rerun resumes with nothing left to train and ends the same run FINISHED."""
    from mlflow import MlflowClient

    from amnet.model_store import load_payload

    monkeypatch.setenv("AMNET_TRACKING_OUTAGE_S", "5")
    stopped: list[float] = []

    def stop() -> None:
        own_mlflow.stop()
        stopped.append(time.monotonic())

    on_epoch_end(monkeypatch, {2: stop})
    out = tmp_path / "model"
    with pytest.raises(ServiceUnreachable) as caught:
        train(trained_chain, out)
    waited = time.monotonic() - stopped[0]

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"MLflow at {own_mlflow.uri} unreachable for ")
    assert "while logging train-amnet (connection refused; gave up after AMNET_TRACKING_OUTAGE_S=5 s)" in message
    assert "rerun the stage" in message
    assert exit_code(caught.value) == EXIT_UNREACHABLE
    assert waited < 60, f"gave up {waited:.0f} s after the server went away"
    assert (out / MODEL_FILE).is_file()
    assert load_payload(str(out / "checkpoints" / TRAIN_STATE))["epoch"] == 6

    own_mlflow.start()
    client = MlflowClient(own_mlflow.uri)
    [left] = client.search_runs([client.get_experiment_by_name("amnet").experiment_id])
    assert left.info.status == "RUNNING"  # the server was away when the stage ended
    assert steps(client, left.info.run_id, "loss") == [1, 2]
    on_epoch_end(monkeypatch, {})
    train(trained_chain, out)
    run = the_run(client, out)
    assert run.info.run_id == left.info.run_id
    assert run.info.status == "FINISHED"


# ------------------------------------------------------------------------------- without a server


class FlakyClient:
    """An ``MlflowClient`` stand-in that fails like MLflow's REST client does when nothing listens
    (an ``MlflowException`` raised while handling the refused connection) until ``down`` is False."""

    def __init__(self) -> None:
        self.down = True
        self.batches: list[list] = []
        self.status = ""

    def _answer(self) -> None:
        from mlflow.exceptions import MlflowException

        if self.down:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except ConnectionRefusedError as exc:
                raise MlflowException(f"API request to http://127.0.0.1:9/api failed with exception {exc}")  # noqa: B904 (as MLflow does)

    def log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
        self._answer()
        self.batches.append(list(metrics))

    def set_terminated(self, run_id: str, status: str) -> None:
        self._answer()
        self.status = status


def test_the_outage_bound_is_parsed_strictly(monkeypatch):
    monkeypatch.delenv(runs.OUTAGE_ENV, raising=False)
    assert runs.outage_seconds() == 600
    monkeypatch.setenv(runs.OUTAGE_ENV, " 5 ")
    assert runs.outage_seconds() == 5
    for bad in ("ten", "-1", "nan", "inf", "5s"):
        monkeypatch.setenv(runs.OUTAGE_ENV, bad)
        with pytest.raises(ConfigError, match=f"AMNET_TRACKING_OUTAGE_S='{bad}' is not a number of seconds >= 0"):
            runs.outage_seconds()


def test_metrics_wait_in_memory_and_keep_their_steps_and_times(monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setattr(runs, "FIRST_RETRY_S", 0.0)  # every call may try again at once
    client = FlakyClient()
    run = runs.MlflowRun(client, "r1", buffered=True, label="train-amnet", uri="http://127.0.0.1:9", outage_s=30)
    for epoch in (1, 2, 3):
        run.log_metrics({"loss": 1.0 / epoch, "note": "not a number"}, epoch)  # never raises, never waits
    assert run.pending == 3 and client.batches == []
    written = [m.timestamp for m in run._pending]
    client.down = False
    run.log_metrics({"loss": 0.25}, 4)  # the next call writes what was kept, oldest first
    assert run.pending == 0
    [batch] = client.batches
    assert [(m.key, m.step) for m in batch] == [("loss", 1), ("loss", 2), ("loss", 3), ("loss", 4)]
    assert [m.timestamp for m in batch[:3]] == written
    run.close("FINISHED")
    assert client.status == "FINISHED"


def test_a_request_that_is_wrong_still_raises():
    pytest.importorskip("mlflow")
    from mlflow.exceptions import MlflowException

    class Refusing(FlakyClient):
        def log_batch(self, run_id: str, metrics=(), params=(), tags=()) -> None:
            raise MlflowException("INVALID_PARAMETER_VALUE: bad metric name")

    run = runs.MlflowRun(Refusing(), "r1", buffered=True, outage_s=30)
    with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE"):
        run.log_metrics({"loss": 1.0}, 1)


def test_giving_up_is_one_line_and_final(monkeypatch):
    pytest.importorskip("mlflow")
    client = FlakyClient()
    run = runs.MlflowRun(client, "r1", buffered=True, label="train-amnet", out="s3://b/model",
                         uri="http://127.0.0.1:9", outage_s=0.3)
    run.log_metrics({"loss": 1.0}, 1)
    started = time.monotonic()
    with pytest.raises(ServiceUnreachable) as caught:
        run.close("FINISHED")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("MLflow at http://127.0.0.1:9 unreachable for ")
    assert "while logging train-amnet (connection refused; gave up after AMNET_TRACKING_OUTAGE_S=0.3 s)" in message
    assert "outputs in s3://b/model" in message
    run.close("FAILED", failed=True)  # after giving up: a warning, no second wait, no error over the first
    started = time.monotonic()
    with pytest.raises(ServiceUnreachable):
        run.log_text("x", "x.txt")
    assert time.monotonic() - started < 0.1
    assert client.status == ""


def test_mlflow_request_retries_are_bounded_within_a_stage(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")  # an explicit setting wins
    with runs.http_bounds():
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
        assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"
        assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "15"
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "15"
