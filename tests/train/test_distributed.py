"""Rank-aware training on this CPU: gloo, two processes started by torchrun's launcher API.

Fast tests check the rank helpers with the torchrun environment set by hand; the ``slow`` ones train
the session's tiny chain (tests/conftest.py ``trained_chain``) with one and with two processes and the
same global batch and seed, and compare the loss curves and the retrieval metrics of the models.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from amnet.cli import main
from amnet.data.triplets import TripletBatch
from amnet.model_store import load_payload
from amnet.steps import pretrain, train
from amnet.train import distributed
from amnet.train.amnet_train import rank_part

TRAIN = {"epochs": 3, "steps_per_epoch": 8, "batch_size": 32}  # 16 triplets per rank with two ranks


def torchrun_env(monkeypatch, rank: int, world: int) -> None:
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))


def test_one_process_is_rank_zero_and_nothing_is_wrapped(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "3")  # ignored without WORLD_SIZE > 1
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    cpu = torch.device("cpu")
    assert distributed.setup(cpu) == cpu and not distributed.active()
    net = torch.nn.Linear(2, 2)
    assert distributed.wrap(net, cpu) is net and distributed.unwrap(net) is net
    assert distributed.shard(7) == slice(0, 7)
    values = torch.tensor([1.0, 2.0])
    assert distributed.mean_over_ranks(values) is values


@pytest.mark.parametrize("world", [2, 3, 8])
def test_rank_parts_are_disjoint_and_cover_the_global_batch(monkeypatch, world):
    n = 32
    batch = TripletBatch(ref=np.arange(n), pos=np.arange(n) + 100, neg=np.arange(n) + 200,
                         target=np.arange(2 * n).reshape(n, 2), changes=[[(0, i)] for i in range(n)])
    parts = []
    for r in range(world):
        torchrun_env(monkeypatch, r, world)
        assert distributed.is_main() == (r == 0)
        parts.append(rank_part(batch))
    assert np.concatenate([p.ref for p in parts]).tolist() == batch.ref.tolist()  # disjoint, in order, all
    assert sum((p.changes for p in parts), []) == batch.changes
    assert all(np.array_equal(p.pos, p.ref + 100) and len(p.target) == len(p.ref) for p in parts)
    assert max(len(p.ref) for p in parts) - min(len(p.ref) for p in parts) <= 1


def history(model_dir: Path) -> list[dict]:
    return load_payload(str(model_dir / "model.pt"))["extra"]["history"]


def evaluate(chain, model: Path) -> dict:
    feats, ev = model.with_name(model.name + "-feats"), model.with_name(model.name + "-eval")
    assert main(["step", "featurize", "--split", str(chain.split), "--model", str(model), "--out", str(feats),
                 "--quiet"]) == 0
    assert main(["step", "evaluate", "--split", str(chain.split), "--model", str(model), "--features", str(feats),
                 "--variant", "amnet", "--out", str(ev), "--quiet"]) == 0
    return json.loads((ev / "metrics.json").read_text())["metrics"]


@pytest.mark.slow
def test_two_processes_follow_the_single_process_loss_curve_and_metrics(trained_chain, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = (str(trained_chain.split), str(trained_chain.attr), str(trained_chain.protos))
    one, two = tmp_path / "one", tmp_path / "two"
    train.run_step(*args, str(one), "amnet", TRAIN, progress=False)
    r2 = train.run_step(*args, str(two), "amnet", TRAIN, progress=False, processes=2)
    h1, h2 = history(one), history(two)
    assert len(h1) == len(h2) == TRAIN["epochs"]
    print("epoch losses, 1 process :", [round(h["loss"], 4) for h in h1])
    print("epoch losses, 2 processes:", [round(h["loss"], 4) for h in h2])
    # same triplets, same averaged gradients; only BatchNorm sees 16 instead of 32 triplets per rank on the
    # CPU (SyncBatchNorm is GPU-only): the total loss stays within 3 %, the ranking term drifts most
    for a, b in zip(h1, h2, strict=True):
        for key, rel in (("loss", 0.03), ("loss_attr", 0.03), ("loss_rank", 0.1)):
            assert b[key] == pytest.approx(a[key], rel=rel), (key, a[key], b[key])
    assert r2["loss"] == pytest.approx(h2[-1]["loss"])  # rank 0's result is the all-reduced one
    assert not (two / "checkpoints" / "train_state.pt.tmp").exists()
    assert load_payload(str(two / "checkpoints" / "train_state.pt"))["epoch"] == TRAIN["epochs"]
    # "within noise": the noise is what another seed gives one process on these 20 + 20 queries
    other = tmp_path / "one-seed1"
    train.run_step(*args, str(other), "amnet", {**TRAIN, "seed": 1}, progress=False)
    m1, m2, noise = evaluate(trained_chain, one), evaluate(trained_chain, two), evaluate(trained_chain, other)
    shown = ("top1", "top5", "top20", "top50", "ndcg20", "two_top20")
    for name, m in (("1 process", m1), ("2 processes", m2), ("1 process, seed 1", noise)):
        print(f"metrics {name}:", {k: round(m[k], 3) for k in shown})
    for key in shown[1:]:  # one query is 0.05
        assert abs(m1[key] - m2[key]) <= abs(m1[key] - noise[key]) + 0.1, (key, m1[key], m2[key], noise[key])


@pytest.mark.slow
def test_pretraining_runs_under_two_processes(trained_chain, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = {"model": {"image_size": 32, "width": 8, "feature_dim": 32}, "epochs": 1, "batch_size": 32}
    one = pretrain.run_step(str(trained_chain.split), str(tmp_path / "one"), cfg, progress=False)
    two = pretrain.run_step(str(trained_chain.split), str(tmp_path / "two"), cfg, progress=False, processes=2)
    print("pretrain loss 1 vs 2 processes:", one["loss"], two["loss"], "acc_mean", history(tmp_path / "one")[-1]
          .get("acc_mean"), history(tmp_path / "two")[-1].get("acc_mean"))
    assert two["loss"] == pytest.approx(one["loss"], rel=0.03)
    assert (tmp_path / "two" / "model.pt").exists() and (tmp_path / "two" / "config.yaml").exists()
    assert "acc_mean" in history(tmp_path / "two")[-1]  # rank 0 measured the held-out part


def workers(pid: int) -> list[int]:
    """The launcher's worker processes (multiprocessing spawn children, not its resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                found.append(int(child))
    return sorted(found)


def kill_one_rank_after_the_first_checkpoint(cmd: list[str], state: Path, env: dict[str, str]) -> dict:
    """Start ``cmd`` (a step with ``--processes 2``), SIGKILL rank 1 as soon as rank 0's epoch-1 checkpoint
    ``state`` exists, check the launcher stops the job; returns that checkpoint."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not state.exists():
            assert proc.poll() is None, f"training ended before its first checkpoint: {proc.communicate()}"
            assert time.monotonic() < deadline, "no epoch-1 checkpoint in time"
            time.sleep(0.05)
        ranks = workers(proc.pid)
        assert len(ranks) == 2, ranks
        os.kill(ranks[-1], signal.SIGKILL)  # one worker (the launcher starts them in rank order)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode != 0
    first = load_payload(str(state))
    assert first["epoch"] == 1, "killed too late (make the epochs longer)"
    return first


def stage_command(stage: str, chain, out: Path) -> list[str]:
    """`amnet step train|pretrain` under 2 processes, 3 epochs, long enough to be killed mid-epoch."""
    cmd = [sys.executable, "-P", "-m", "amnet.cli", "step", stage, "--split", str(chain.split), "--out", str(out),
           "--quiet", "--processes", "2", "--set", "epochs=3"]
    if stage == "train":
        return cmd + ["--attr-model", str(chain.attr), "--prototypes", str(chain.protos),
                      "--set", "steps_per_epoch=60", "--set", "batch_size=8"]
    return cmd + ["--set", "batch_size=2", "--set", "model.image_size=32", "--set", "model.width=8",
                  "--set", "model.feature_dim=32"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["train", "pretrain"])
def test_killing_one_rank_mid_epoch_then_rerunning_resumes_every_rank(trained_chain, tmp_path, stage):
    """SIGKILL rank 1 during epoch 2 (AMNet training, and pretraining likewise): the launcher stops the
    job; the same command resumes both ranks from rank 0's epoch-1 checkpoint and finishes."""
    out = tmp_path / "model"
    cmd = stage_command(stage, trained_chain, out)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "AMNET_"))}
    state = out / "checkpoints" / "train_state.pt"
    first = kill_one_rank_after_the_first_checkpoint(cmd, state, env)
    assert not (out / "model.pt").exists()

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "1 of 3 epochs done" in rerun.stderr  # rank 0's log line (stderr)
    final = load_payload(str(state))
    assert final["epoch"] == 3 and final["history"][0] == first["history"][0]
    assert history(out) == final["history"]


@pytest.mark.slow
def test_two_processes_log_one_training_run_to_mlflow(trained_chain, tmp_path, stack_env, monkeypatch):
    """Tracking on (the session's MLflow server + S3): of two ranks only rank 0 logs, so the experiment
    holds one training run, FINISHED, with one loss point per epoch and the logged searcher model."""
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "two-ranks")
    out = tmp_path / "model"
    train.run_step(str(trained_chain.split), str(trained_chain.attr), str(trained_chain.protos), str(out), "amnet",
                   {"epochs": 2, "steps_per_epoch": 3, "batch_size": 8}, progress=False, processes=2)
    experiment = stack_env.get_experiment_by_name("two-ranks")
    runs = stack_env.search_runs([experiment.experiment_id])
    assert [r.data.tags.get("amnet.stage") for r in runs] == ["train-amnet"]
    (run,) = runs
    assert run.info.status == "FINISHED"
    # epochs 1 and 2, and the final result at step 0: once each (rank 1 logs nothing)
    assert sorted(m.step for m in stack_env.get_metric_history(run.info.run_id, "loss")) == [0, 1, 2]
    assert json.loads((out / "mlflow_run.json").read_text())["run_id"] == run.info.run_id


@pytest.mark.slow
def test_the_training_component_starts_its_ranks_inside_a_kfp_task(trained_chain, tmp_path, monkeypatch, capfd):
    """``processes=2`` on the train component (what ``--train-gpus 2`` compiles), run by kfp.local: the
    task's step starts two ranks through the launcher inside the task and writes one model."""
    from amnet_components.train import train_amnet
    from kfp import dsl, local
    from kfp.dsl import Dataset, Model

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    @dsl.pipeline(name="two-ranks")
    def two_ranks():
        split = dsl.importer(artifact_uri=str(trained_chain.split), artifact_class=Dataset, reimport=False)
        attr = dsl.importer(artifact_uri=str(trained_chain.attr), artifact_class=Model, reimport=False)
        protos = dsl.importer(artifact_uri=str(trained_chain.protos), artifact_class=Model, reimport=False)
        train_amnet(split=split.output, attr_model=attr.output, prototypes=protos.output, variant="amnet",
                    config={"epochs": 1, "steps_per_epoch": 2, "batch_size": 8}, parent_run_id="",
                    checkpoint_root="", run_id="r1", processes=2)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=True)
    two_ranks()
    out = capfd.readouterr()
    assert "starting 2 ranks on this machine (torchrun launcher" in out.out + out.err
    models = list(tmp_path.glob("two-ranks-*/train-amnet/model/model.pt"))
    assert len(models) == 1 and len(history(models[0].parent)) == 1
