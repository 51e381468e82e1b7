"""Fault injection: a killed trainer, an S3 server that goes away mid-write, an unreachable MLflow
server, and KFP retries (``set_retry``) of every kind of stage.

Observed behaviour, which these tests pin down:

* **SIGKILL in the middle of an epoch** (``kill -9`` of ``amnet step train`` during epoch 2 of 3):
  ``OUT/checkpoints/train_state.pt`` still holds epoch 1 (it is replaced atomically after each epoch,
  never half-written); running the same command again prints ``resuming from ...: 1 of 3 epochs done``,
  trains epochs 2 and 3 only and finishes. The resumed run's history starts with the first run's
  epoch-1 row *as measured by the first run* (its images/s timing included, which a restart would
  have measured anew), the optimiser's momentum buffers are restored, and the final weights are
  bit-identical to those of an uninterrupted run with the same seed.
* **S3 stopped and restarted while the split writes its shards** (a separate SeaweedFS, stopped with
  ``stop_stack`` right after the first shard lands and restarted on the same ports with
  ``start_seaweed``; it is away for about 5-10 s): the stage prints
  ``S3 not answering for s3://... (EndpointConnectionError); retrying for up to 60 s``, keeps going
  once the server is back and completes (exit 0; giving up fails the test); every shard reads back,
  the counts match ``split.json`` and the shards hold exactly what the same split writes to a local
  folder without an outage. botocore's standard retries alone (8 attempts with a 50 ms base backoff)
  give up after ~3 s, so ``amnet.storage`` retries connection errors, timeouts and 5xx answers with
  backoff for up to ``$AMNET_S3_RETRY_SECONDS`` (60 s; 180 s in the test, so a slow restart on a busy
  machine cannot end the retries early) before failing with one line (``S3 did not answer after
  retrying for N s``, the S3 endpoint that stays down below). A watcher reads every
  object the moment it is listed: no partial object is ever visible under a final key (each shard is
  one PUT, which S3 publishes only once complete; a PUT cut off half-way creates nothing, see
  ``tests/test_storage.py::test_interrupted_upload_leaves_no_partial_object``). An S3 endpoint
  that stays down fails the stage after the bounded retries with one line (tested with 2 s).
* **MLflow unreachable** (``MLFLOW_TRACKING_URI`` pointing at a closed port): the stage fails at its
  start, in about a second, with one line naming the URI, and writes nothing (exit 4: service unreachable). This is the
  documented choice (README): fail fast rather than train and lose the metrics. With the variable
  unset the same command trains untracked. A model is never lost to tracking: it is written before
  anything is logged, and per-epoch checkpoints make a rerun resume.
* **KFP retries are idempotent**: a split rerun into the same output writes byte-identical shards;
  a train rerun after it finished resumes "3 of 3 epochs done" and rewrites a byte-identical
  ``model.pt``; a featurize rerun skips every shard. In MLflow, a retried stage does not add a run:
  the attempt that was killed (its run left RUNNING) or that failed (FAILED) is continued by the
  retry, which logs the remaining epochs into the same run and ends it FINISHED; a rerun of a
  FINISHED stage logs nothing new and says so (runs carry a content key tag, ``amnet.run_key``:
  stage, parent run, config, input and output URIs). When KFP's MLflow integration hands over
  ``MLFLOW_RUN_ID``, KFP owns the run and none of this applies. The registry side (same model file -> same
  model version) is ``tests/ops/registry/test_gate.py::test_gate_against_the_real_registry``.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from amnet.cli import main
from amnet.model_store import load_payload
from tests.helpers import tiny_dataset, tiny_split_and_attribute_cnn

MODEL = ["--set", "model.image_size=32", "--set", "model.width=8", "--set", "model.feature_dim=32"]


def amnet_cmd(*args: str) -> list[str]:
    """The ``amnet`` CLI in a fresh interpreter (``-P``: the working folder never shadows the package)."""
    return [sys.executable, "-P", "-m", "amnet.cli", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without tracking or S3 settings, one thread (steady timing, same numerics)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "AMNET_"))}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A tiny split, attribute CNN and prototypes (everything AMNet training needs)."""
    root = tmp_path_factory.mktemp("faults")
    split = tiny_split_and_attribute_cnn(root, MODEL, shard_size=20)
    assert main(["step", "prototypes", "--split", str(split), "--attr-model", str(root / "attr"),
                 "--out", str(root / "protos"), "--quiet"]) == 0
    return root


def train_args(root: Path, out: Path, epochs: int, steps: int, *extra: str) -> list[str]:
    return ["step", "train", "--split", str(root / "split"), "--attr-model", str(root / "attr"),
            "--prototypes", str(root / "protos"), "--out", str(out), "--quiet", "--set", f"epochs={epochs}",
            "--set", f"steps_per_epoch={steps}", "--set", "batch_size=8", *extra]


def kill_during_second_epoch(cmd: list[str], out: Path, env: dict[str, str], timeout: float = 180,
                             state: Path | None = None) -> dict:
    """Start ``cmd``, wait for the epoch-1 checkpoint (``state``, default in ``out``), SIGKILL it during
    epoch 2; the checkpoint then."""
    state = state or out / "checkpoints" / "train_state.pt"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not state.exists():
            assert proc.poll() is None, f"training ended before its first checkpoint: {proc.communicate()}"
            assert time.monotonic() < deadline, "no epoch-1 checkpoint in time"
            time.sleep(0.02)
        time.sleep(0.15)  # into epoch 2 (an epoch takes about a second), far from its end
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    saved = load_payload(str(state))
    assert saved["epoch"] == 1, "killed too late: epoch 2 had already finished (make the epochs longer)"
    assert not (out / "model.pt").exists()
    return saved


def momentum_buffers(state: dict) -> list[torch.Tensor]:
    return [s["momentum_buffer"] for s in state["optimizer"]["state"].values() if "momentum_buffer" in s]


# ------------------------------------------------------------------------------------------- SIGKILL


@pytest.mark.slow
def test_sigkill_mid_epoch_then_the_same_command_resumes(prepared, tmp_path):
    out = tmp_path / "model"
    args = train_args(prepared, out, epochs=3, steps=80)
    first = kill_during_second_epoch(amnet_cmd(*args), out, clean_env())
    assert len(first["history"]) == 1
    assert momentum_buffers(first) and all(b.abs().sum() > 0 for b in momentum_buffers(first))

    rerun = subprocess.run(amnet_cmd(*args), env=clean_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming from {out}/checkpoints/train_state.pt: 1 of 3 epochs done" in rerun.stderr  # logged
    final = load_payload(str(out / "checkpoints" / "train_state.pt"))
    assert final["epoch"] == 3 and len(final["history"]) == 3
    # continued, not restarted: the epoch-1 row is the first run's own measurement (timing included)
    assert final["history"][0] == first["history"][0]
    assert final["history"][0]["images_per_s"] == first["history"][0]["images_per_s"]
    assert len(momentum_buffers(final)) == len(momentum_buffers(first))
    model_bytes = (out / "model.pt").read_bytes()
    assert load_payload(str(out / "model.pt"))["extra"]["history"] == final["history"]

    # the same weights as a run that was never interrupted (model, optimiser, scheduler, RNG restored)
    ref = tmp_path / "reference"
    done = subprocess.run(amnet_cmd(*train_args(prepared, ref, epochs=3, steps=80)), env=clean_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    resumed_w = load_payload(str(out / "model.pt"))["state_dict"]
    reference_w = load_payload(str(ref / "model.pt"))["state_dict"]
    assert resumed_w.keys() == reference_w.keys()
    assert all(torch.equal(resumed_w[k], reference_w[k]) for k in reference_w)

    # a KFP retry of the finished task: nothing retrained, byte-identical model.pt
    again = subprocess.run(amnet_cmd(*args), env=clean_env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "3 of 3 epochs done" in again.stderr
    assert (out / "model.pt").read_bytes() == model_bytes


@pytest.mark.slow
def test_a_retry_with_a_fresh_output_folder_resumes_from_the_checkpoint_prefix(prepared, tmp_path):
    """What a KFP retry of a killed pod sees: a new, empty output folder, the same checkpoint prefix
    (``amnet.steps.checkpoints.checkpoint_dir``: same run, task, inputs and config)."""
    from amnet.steps.checkpoints import checkpoint_dir

    inputs = [str(prepared / "split"), str(prepared / "attr"), str(prepared / "protos")]
    config = {"epochs": 3, "steps_per_epoch": 80, "batch_size": 8}
    state_dir = checkpoint_dir(str(tmp_path / "root"), str(tmp_path / "attempt-1" / "model"), "train-amnet",
                               "run-1", inputs, config)
    assert state_dir == checkpoint_dir(str(tmp_path / "root"), str(tmp_path / "attempt-2" / "model"),
                                       "train-amnet", "run-1", inputs, config)  # the output is not in the key
    first_out, retry_out = tmp_path / "attempt-1" / "model", tmp_path / "attempt-2" / "model"
    state = Path(state_dir) / "train_state.pt"
    first = kill_during_second_epoch(
        amnet_cmd(*train_args(prepared, first_out, 3, 80, "--checkpoint-dir", state_dir)), first_out, clean_env(),
        state=state)
    assert not (first_out / "checkpoints").exists()

    retry = subprocess.run(amnet_cmd(*train_args(prepared, retry_out, 3, 80, "--checkpoint-dir", state_dir)),
                           env=clean_env(), capture_output=True, text=True, timeout=300)
    assert retry.returncode == 0, retry.stderr
    assert f"resuming from {state}: 1 of 3 epochs done" in retry.stderr  # the epoch counter continues
    final = load_payload(str(state))
    assert final["epoch"] == 3 and final["history"][0] == first["history"][0]
    assert load_payload(str(retry_out / "model.pt"))["extra"]["history"] == final["history"]
    assert sorted(p.name for p in retry_out.iterdir()) == ["config.yaml", "model.pt"]  # no checkpoint folder


def test_checkpoint_prefix_is_keyed_by_run_task_inputs_and_config(tmp_path):
    from amnet.steps.checkpoints import checkpoint_dir

    key = ("s3://b/root", "s3://b/root/amnet/r1/train-amnet/7/model", "train-amnet", "r1", ["s3://b/split"], {})
    base = checkpoint_dir(*key)
    assert base.startswith("s3://b/root/checkpoints/r1/train-amnet-")
    for i, other in ((3, "r2"), (2, "train-no_memory"), (4, ["s3://b/split2"]), (5, {"epochs": 2})):
        changed = list(key)
        changed[i] = other
        assert checkpoint_dir(*changed) != base, other
    # no root given: next to the pipeline root of the output (S3), or the local run folder; cacheable: "shared"
    assert checkpoint_dir("", "s3://amnet/pipeline-root/amnet/r1/pretrain/9/model", "pretrain", "", [], {}
                          ).startswith("s3://amnet/pipeline-root/checkpoints/shared/pretrain-")
    assert checkpoint_dir("", str(tmp_path / "run" / "pretrain" / "model"), "pretrain", "", [], {}
                          ).startswith(str(tmp_path / "run" / "checkpoints" / "shared" / "pretrain-"))
    assert checkpoint_dir("", "gs://bucket/root/x/model", "pretrain", "", [], {}) == ""  # not writable: in the output


# ------------------------------------------------------------------------------------------- S3


class ObjectWatcher(threading.Thread):
    """Lists the prefix over and over and reads every new object at once: a partial object would show."""

    def __init__(self, env: dict[str, str], bucket: str, prefix: str):
        super().__init__(daemon=True)
        import boto3
        from botocore.config import Config

        self.client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                                   aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                   config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5))
        self.bucket, self.prefix = bucket, prefix
        self.seen: dict[str, int] = {}  # key -> size when first read
        self.broken: list[str] = []
        self.stop = threading.Event()

    def keys(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def check(self, key: str) -> None:
        data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        try:
            if key.endswith(".parquet"):
                pq.read_table(io.BytesIO(data))
            elif key.endswith(".json"):
                json.loads(data)
        except Exception as exc:  # noqa: BLE001
            self.broken.append(f"{key}: {type(exc).__name__}: {exc}")
        self.seen[key] = len(data)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for key in self.keys():
                    if key not in self.seen:
                        self.check(key)
            except Exception:  # noqa: BLE001  (the server is down for a while: that is the test)
                time.sleep(0.2)
            time.sleep(0.05)


@pytest.mark.slow
def test_s3_restart_while_the_split_writes_shards(tmp_path):
    pytest.importorskip("boto3")
    from amnet.errors import AmnetError
    from amnet.stack.seaweedfs import weed_binary
    from amnet.stack.services import stack_env, start_seaweed, stop_stack

    try:
        weed_binary()
    except AmnetError as exc:
        pytest.skip(str(exc))
    data = tiny_dataset(tmp_path, num_images=600, image_size=32)
    state_dir = tmp_path / "stack"  # our own SeaweedFS: the session's server is not touched
    bucket, prefix = "faults", "splits/restart"
    try:
        start_seaweed(state_dir, bucket=bucket, timeout=90)
        s3 = stack_env(state_dir)
        # one botocore attempt per request: the outage reaches amnet's own bounded retry loop (which says
        # so on stderr) instead of being absorbed silently by botocore's backoff
        env = clean_env(**{k: v for k, v in s3.items() if k.startswith("AWS_")}, AMNET_S3_MAX_ATTEMPTS="1",
                        AMNET_S3_RETRY_SECONDS="180")
        watcher = ObjectWatcher(s3, bucket, prefix + "/")
        watcher.start()
        cmd = amnet_cmd("data", "split", data, "--out", f"s3://{bucket}/{prefix}", "--per-value", "4",
                        "--gallery-size", "60", "--num-queries", "5", "--shard-size", "1", "--no-progress")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not watcher.seen:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stop_stack(state_dir)  # SIGTERM, then SIGKILL after the grace period: S3 is gone mid-write
        written_before = set(watcher.seen)
        assert not any(k.endswith("split.json") for k in written_before), "the split finished before the stop"
        time.sleep(1.0)
        start_seaweed(state_dir, bucket=bucket, timeout=90)  # same state folder: same ports, same data
        stdout, stderr = proc.communicate(timeout=240)
        time.sleep(0.5)
        watcher.stop.set()
        watcher.join(timeout=30)

        assert "Traceback" not in stderr
        assert not watcher.broken, watcher.broken
        assert proc.returncode == 0, stderr  # the split rode out the restart: giving up is a failure here
        assert "S3 not answering for s3://faults/splits/restart/" in stderr  # the fault was hit, and retried
        keys = watcher.keys()
        for key in keys:  # every object under a final key is complete
            if key not in watcher.seen:
                watcher.check(key)
        assert not watcher.broken, watcher.broken
        summary = json.loads(watcher.client.get_object(Bucket=bucket, Key=f"{prefix}/split.json")["Body"].read())
        for name in ("attr_train", "gallery", "queries", "triplet_pool"):
            parts = [k for k in keys if k.startswith(f"{prefix}/{name}/part-")]
            rows = sum(pq.read_table(io.BytesIO(watcher.client.get_object(Bucket=bucket, Key=k)["Body"].read()))
                       .num_rows for k in parts)
            assert rows == summary[name] == len(parts) > 0, name
        assert summary["rows_in"] == 600 == summary["kept"] + summary["quarantined"]

        # the output is the split's, not merely complete: the same split into a local folder, no outage
        local = tmp_path / "reference"
        assert main(["data", "split", data, "--out", str(local), "--per-value", "4", "--gallery-size", "60",
                     "--num-queries", "5", "--shard-size", "1", "--no-progress"]) == 0
        reference = json.loads((local / "split.json").read_text())
        assert {k: v for k, v in summary.items() if k not in ("seconds", "out")} == \
            {k: v for k, v in reference.items() if k not in ("seconds", "out")}
        local_parts = sorted(str(p.relative_to(local)) for p in local.rglob("part-*.parquet"))
        s3_parts = sorted(k[len(prefix) + 1:] for k in keys if k.endswith(".parquet") and "/part-" in k)
        assert s3_parts == local_parts and len(s3_parts) > 100, (len(s3_parts), len(local_parts))
        for rel in s3_parts:
            remote = pq.read_table(io.BytesIO(watcher.client.get_object(Bucket=bucket, Key=f"{prefix}/{rel}")
                                              ["Body"].read()))
            assert remote.equals(pq.read_table(local / rel)), rel
    finally:
        stop_stack(state_dir)


def test_s3_that_stays_down_fails_after_bounded_retries_in_one_line(monkeypatch, capsys):
    """No S3 at the endpoint at all: botocore's attempts, then ours up to $AMNET_S3_RETRY_SECONDS,
    then one line naming the URI and what to check (here 2 s instead of the default 60 s)."""
    pytest.importorskip("boto3")
    import boto3

    from amnet import storage

    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv(storage.RETRY_SECONDS_ENV, "2")
    storage._client.cache_clear()
    boto3.DEFAULT_SESSION = None
    try:
        start = time.monotonic()
        code = main(["data", "validate", "s3://catalog/shoes", "--no-progress"])
        elapsed = time.monotonic() - start
    finally:
        storage._client.cache_clear()
        boto3.DEFAULT_SESSION = None
    err = capsys.readouterr().err
    assert code == 4 and elapsed < 30, (code, elapsed)
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert re.search(r"s3://catalog/shoes/attributes\.json: S3 did not answer after retrying for 2 s "
                     r"\(EndpointConnectionError\); check that the S3 endpoint \(AWS_ENDPOINT_URL\) is up", errors[0])


# ------------------------------------------------------------------------------------------- MLflow


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_mlflow_fails_fast_and_writes_nothing(prepared, tmp_path, monkeypatch, capsys):
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    out = tmp_path / "model"
    start = time.monotonic()
    code = main(train_args(prepared, out, epochs=1, steps=2))
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    # not a speed check: MLflow's own client would retry for minutes; the health probe gives up in seconds
    assert code == 4 and elapsed < 60, (code, elapsed)
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err
    assert re.search(rf"MLflow tracking server at {re.escape(uri)} is not reachable .*unset MLFLOW_TRACKING_URI",
                     errors[0]), errors[0]
    assert not out.exists()  # nothing written, nothing trained

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert main(train_args(prepared, out, epochs=1, steps=2)) == 0
    assert (out / "model.pt").exists()


# ------------------------------------------------------------------------------------------- KFP retries


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_split_rerun_into_the_same_output_is_byte_identical(tmp_path):
    data = tiny_dataset(tmp_path, num_images=300, image_size=32)
    out = tmp_path / "split"
    args = ["data", "split", data, "--out", str(out), "--per-value", "4", "--gallery-size", "50",
            "--num-queries", "5", "--shard-size", "40", "--no-progress"]
    assert main(args) == 0
    before = all_files(out)
    assert main(args) == 0
    after = all_files(out)
    assert before.keys() == after.keys()
    for name in before:
        if name == "split.json":  # holds the wall time; everything else in it is the same
            a, b = json.loads(before[name]), json.loads(after[name])
            a.pop("seconds"), b.pop("seconds")
            assert a == b
        else:
            assert before[name] == after[name], name


def test_featurize_rerun_skips_every_shard(prepared, tmp_path, capsys):
    args = ["step", "featurize", "--split", str(prepared / "split"), "--model", str(prepared / "attr"),
            "--out", str(tmp_path / "feats"), "--quiet"]
    assert main(args) == 0
    shards_before = {k: v for k, v in all_files(tmp_path / "feats").items() if k.endswith(".parquet")}
    assert main(args) == 0
    meta = json.loads((tmp_path / "feats" / "features.json").read_text())
    assert meta["skipped_shards"] == meta["shards"] == len(shards_before) == 3 and meta["count"] == 60
    assert {k: v for k, v in all_files(tmp_path / "feats").items() if k.endswith(".parquet")} == shards_before


def test_featurize_retry_with_a_fresh_output_reuses_the_shards_kept_in_the_checkpoint_prefix(prepared, tmp_path):
    state = tmp_path / "ckpt" / "featurize-attribute_cnn"
    args = ["step", "featurize", "--split", str(prepared / "split"), "--model", str(prepared / "attr"), "--quiet",
            "--checkpoint-dir", str(state)]
    assert main([*args, "--out", str(tmp_path / "attempt-1")]) == 0
    kept = sorted(p.name for p in state.iterdir())
    assert len(kept) == 3 and all(name.endswith(".parquet") for name in kept)
    assert main([*args, "--out", str(tmp_path / "attempt-2")]) == 0
    meta = json.loads((tmp_path / "attempt-2" / "features.json").read_text())
    assert meta["skipped_shards"] == meta["shards"] == 3 and meta["count"] == 60
    for name in kept:
        assert (tmp_path / "attempt-2" / name).read_bytes() == (tmp_path / "attempt-1" / name).read_bytes()


@pytest.fixture
def tracked(monkeypatch, mlflow_server):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "amnet-faults")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.tracking_uri)


def stage_runs(client, parent: str, stage: str) -> list:
    exp = client.get_run(parent).info.experiment_id
    return client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}' and tags.`amnet.stage` = '{stage}'")


@pytest.mark.slow
def test_a_retried_tracked_stage_continues_its_run(prepared, tmp_path, tracked, capsys):
    """KFP kills the pod of a tracked training mid-epoch and retries it: one MLflow run, FINISHED, with
    every epoch logged once; a further retry after success adds nothing."""
    from amnet.ops.tracking import runs

    parent = runs.start_parent("amnet-faults", "retry-test")
    out = tmp_path / "model"
    args = [*train_args(prepared, out, epochs=2, steps=80), "--parent-run-id", parent]
    env = clean_env(MLFLOW_TRACKING_URI=os.environ["MLFLOW_TRACKING_URI"], MLFLOW_EXPERIMENT_NAME="amnet-faults")
    kill_during_second_epoch(amnet_cmd(*args), out, env)
    (killed,) = stage_runs(tracked, parent, "train-amnet")
    assert killed.info.status == "RUNNING"  # the killed attempt could not end its run

    retry = subprocess.run(amnet_cmd(*args), env=env, capture_output=True, text=True, timeout=300)
    assert retry.returncode == 0, retry.stderr
    (run,) = stage_runs(tracked, parent, "train-amnet")
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    assert sorted(m.step for m in tracked.get_metric_history(run.info.run_id, "loss")) == [0, 1, 2]
    assert run.data.tags[runs.TAG_RUN_KEY]

    again = subprocess.run(amnet_cmd(*args), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"already has a FINISHED run {run.info.run_id}" in again.stderr  # logged
    assert len(stage_runs(tracked, parent, "train-amnet")) == 1
    runs.finish_parent(parent)


def test_a_failed_tracked_attempt_is_continued_by_its_retry(prepared, tmp_path, tracked, capsys):
    """First attempt fails (its input is not there yet: run FAILED); the retry logs into that run."""
    import shutil

    from amnet.ops.tracking import runs

    parent = runs.start_parent("amnet-faults", "failed-attempt")
    split = tmp_path / "split"
    args = ["step", "featurize", "--split", str(split), "--model", str(prepared / "attr"),
            "--out", str(tmp_path / "feats"), "--quiet", "--parent-run-id", parent]
    assert main(args) == 3  # the gallery shards are not there yet
    (failed,) = stage_runs(tracked, parent, "featurize-attribute_cnn")
    assert failed.info.status == "FAILED"
    shutil.copytree(prepared / "split", split)
    assert main(args) == 0
    (run,) = stage_runs(tracked, parent, "featurize-attribute_cnn")
    assert run.info.run_id == failed.info.run_id and run.info.status == "FINISHED"
    assert run.data.metrics["count"] == 60
    runs.finish_parent(parent)


def test_tracked_split_component_rerun_adds_no_run(tmp_path, tracked, monkeypatch):
    """The split component (cached in KFP, so no parent run) rerun into the same output: one run.

    The runs are counted in an experiment of this test's own, *all* of them, whatever key they carry: a
    key that changed between the two calls (or was never matched) would show as a second run."""
    import uuid

    from amnet.ops.tracking.runs import TAG_RUN_KEY
    from amnet.steps.split import run_step

    experiment = f"amnet-faults-split-rerun-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", experiment)
    data = tiny_dataset(tmp_path, num_images=300, image_size=32)
    out = str(tmp_path / "split")
    params = {"per_value": 4, "gallery_size": 50, "num_queries": 5, "shard_size": 100}
    first = run_step(data, out, params)
    exp = tracked.get_experiment_by_name(experiment).experiment_id
    (run,) = tracked.search_runs([exp])
    second = run_step(data, out, params)
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in second.items() if k != "seconds"}
    (again,) = tracked.search_runs([exp])  # every run of the experiment: still the one
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert again.data.tags["amnet.stage"] == "split" and again.data.tags[TAG_RUN_KEY]
    # a split into another output is another run: the count above can grow
    run_step(data, str(tmp_path / "split-2"), params)
    assert len(tracked.search_runs([exp])) == 2


@pytest.mark.parametrize("raw", ["0", "-1", "many"])
def test_a_bad_s3_attempt_count_is_one_clear_error(raw, monkeypatch):
    from amnet import storage
    from amnet.errors import AmnetError

    monkeypatch.setenv("AMNET_S3_MAX_ATTEMPTS", raw)
    with pytest.raises(AmnetError, match="AMNET_S3_MAX_ATTEMPTS"):
        storage.max_attempts()
    monkeypatch.setenv("AMNET_S3_MAX_ATTEMPTS", "3")
    assert storage.max_attempts() == 3
