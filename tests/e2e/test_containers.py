"""The CPU image, built for real, and the pipeline with every task inside it (``kfp.local.DockerRunner``).

Needs a Docker engine (``.ci/run`` installs Debian's docker.io and starts dockerd when none answers).
Without one every test here is skipped with the reason; with one, a missing image is built first
(``images/build.py``, as ``make images`` does), so these tests never pass on a stale or absent image.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import tiny_dataset

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.containers]

ROOT = Path(__file__).resolve().parents[2]
IMAGE_UID = 10001


def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def engine() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker client on PATH (Debian: apt-get install -y docker.io)")
    info = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if info.returncode != 0:
        pytest.skip(f"no Docker engine answers `docker info` ({info.stderr.strip()[:200]}); start dockerd")


@pytest.fixture(scope="session")
def project_image(engine) -> str:
    """The CPU image components/images.py names; built here (minutes) when it is not present."""
    from amnet_components.images import PROJECT_IMAGE

    if docker("image", "inspect", PROJECT_IMAGE).returncode != 0:
        subprocess.run([sys.executable, str(ROOT / "images" / "build.py"), "--tag", PROJECT_IMAGE], check=True,
                       timeout=3600)
    return PROJECT_IMAGE


def test_image_runs_amnet_as_uid_10001_with_writable_home_and_tmp(project_image):
    help_ = docker("run", "--rm", project_image, "amnet", "--help")
    assert help_.returncode == 0, help_.stderr
    assert "amnet" in help_.stdout and "step" in help_.stdout
    probe = docker("run", "--rm", "--entrypoint", "sh", project_image, "-c",
                   'id -u; id -g; echo "$HOME"; touch "$HOME/w" /tmp/w && echo writable')
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == [str(IMAGE_UID), str(IMAGE_UID), "/home/amnet", "writable"]


def test_image_holds_the_distribution_and_nothing_else_of_the_repository(project_image):
    script = (
        "import importlib.metadata as md, json, os, sysconfig\n"
        "import kfp, amnet, amnet_pipeline, amnet_components, amnet.steps.train\n"
        "site = sysconfig.get_paths()['purelib']\n"
        "found = [os.path.join(d, f) for top in ('/', ) for d, _, fs in os.walk(top)\n"
        "         if not d.startswith(('/proc', '/sys', '/dev')) for f in fs\n"
        "         if f in ('test_pipeline_local.py', 'paper-alexnet.yaml', 'demo.yaml', 'amnet_pipeline.yaml')]\n"
        "print(json.dumps({'kfp': md.version('kfp'), 'amnet': md.version('amnet'), 'site': site,\n"
        "  'pkgs': sorted(p for p in ('amnet', 'amnet_pipeline', 'amnet_components', 'tests')\n"
        "                 if os.path.isdir(os.path.join(site, p))),\n"
        "  'repo_files': found, 'build_dir': os.path.exists('/build'),\n"
        "  'amnet_file': amnet.__file__}))\n")
    out = docker("run", "--rm", "--entrypoint", "python3", project_image, "-c", script)
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    from importlib.metadata import version

    assert facts["kfp"] == version("kfp") and facts["amnet"] == version("amnet")
    assert facts["pkgs"] == ["amnet", "amnet_components", "amnet_pipeline"]  # no tests package
    assert facts["amnet_file"].startswith(facts["site"])  # installed, not a source checkout
    assert facts["repo_files"] == [] and facts["build_dir"] is False


def test_runner_mounts_only_the_dataset_read_only(project_image, tmp_path):
    """No host code reaches a task: kfp.local binds the pipeline root; we add the dataset, read-only."""
    from amnet_pipeline.local_run import docker_runner

    runner = docker_runner(project_image, [str(tmp_path)])
    args = runner.container_run_args
    assert args["network_mode"] == "host"
    assert [(m["Source"], m["Target"], m["ReadOnly"]) for m in args["mounts"]] == \
        [(str(tmp_path), str(tmp_path), True)]
    assert args["environment"]["AMNET_IMAGE"] == project_image


def test_missing_image_is_one_clear_error(engine):
    from amnet_pipeline.local_run import docker_runner

    from amnet.errors import AmnetError

    with pytest.raises(AmnetError, match="not built here; build it with `make images`"):
        docker_runner("amnet-no-such-image:0", [])


TINY = {"split_config": {"per_value": 10, "gallery_size": 300, "num_queries": 40},
        "pretrain_config": {"epochs": 1}, "train_config": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8}}


def test_pipeline_runs_with_every_task_in_the_image(project_image, tmp_path, mlflow_server, stack_env, monkeypatch):
    from amnet_pipeline.local_run import results_table, run_pipeline

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "containers")
    params = {**TINY, "dataset_uri": tiny_dataset(tmp_path), "variants": ["amnet"], "attribute_baseline": True,
              "experiment": "containers"}
    times: dict[str, str] = {}
    run_dir = run_pipeline(params, tmp_path / "work", cache=False, times=times, image=project_image)

    assert all(v.endswith(" s") for v in times.values()), times
    rows = {line.split()[0] for line in results_table(run_dir).splitlines()[2:]}
    assert rows == {"amnet", "attribute_based", "image_only"}
    # Every task ran as the image's non-root user: each wrote its executor output as uid 10001.
    outputs = list(run_dir.glob("**/executor_output.json"))
    assert len(outputs) >= len(times) - 2, (len(outputs), times)  # DAG tasks of nested pipelines write none
    owners = {p.relative_to(run_dir).parts[0]: p.stat().st_uid for p in outputs}
    assert set(owners.values()) == {IMAGE_UID}, owners
    model_files = list(run_dir.glob("**/train-amnet*/model/model.pt"))
    assert model_files and all(p.stat().st_uid == IMAGE_UID for p in model_files)

    # ...and reached the stack as in the subprocess run: tracked in MLflow, artifacts in S3.
    client = stack_env  # an MlflowClient on the session's server
    exp = client.get_experiment_by_name("containers")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`amnet.role` = 'pipeline'")
    assert parent.info.status == "FINISHED"
    runs = client.search_runs([exp.experiment_id])
    stages = {r.data.tags.get("amnet.stage") for r in runs}
    assert {"split", "pretrain", "train-amnet", "evaluate-amnet"} <= stages, stages
    keys = [o["Key"] for o in mlflow_server.client().list_objects_v2(
        Bucket=mlflow_server.bucket, Prefix="mlflow/").get("Contents", [])]
    assert any(k.endswith("/model.pt") for k in keys)
