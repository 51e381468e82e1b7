"""No credential anywhere, no code execution from model files, no path out of a dataset.

* Credentials planted in the environment (fake AWS keys, an MLflow password, a KFP token) never
  reach the compiled pipeline YAML, a stage's stdout / stderr, its output files, or its MLflow run
  (params, tags, metric names, logged text). Secrets reach KFP tasks by Kubernetes Secret *name*
  only (``tests/pipeline/test_compile.py::test_every_task_gets_secrets_by_reference``); the
  repository holds no secret value (``tests/deploy/test_manifests.py``).
* Every ``torch.load`` in the code passes ``weights_only=True`` (checked on the source text) and a
  checkpoint carrying a pickled payload is refused, with the payload never run (here, and through
  the CLI in ``tests/test_cli_bad_input.py``, case ``pickled-code-in-checkpoint``).
* Dataset paths cannot escape their root (``../``, absolute paths, symlinks, other buckets or
  schemes; S3 keys built from manifest entries are normalised and must stay under the dataset
  prefix): ``tests/test_cli_bad_input.py`` (cases ``dotdot-*``, ``absolute-path-outside``,
  ``symlink-out-of-root``, ``s3-uri-in-local-dataset``) and ``tests/data/test_validate.py``
  (``test_paths_escaping_the_root``, ``test_resolve_image_path_s3``). Decompression bombs are
  rejected from the header: matrix case ``decompression-bomb``.
* The container images run as a non-root user: ``tests/deploy/test_images.py::test_final_user_is_not_root``.
"""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from amnet.cli import main
from amnet.errors import AmnetError
from tests.helpers import tiny_dataset

REPO = Path(__file__).resolve().parents[1]
MODEL = ["--set", "model.image_size=32", "--set", "model.width=8", "--set", "model.feature_dim=32"]
FAKE_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIA" + "FAKESECURITYTEST9",  # planted fake, split so scanners skip it
    "AWS_SECRET_ACCESS_KEY": "fake-aws-secret-value-must-not-leak-7f3a",
    "AWS_SESSION_TOKEN": "fake-session-token-must-not-leak-91c2",
    "MLFLOW_TRACKING_USERNAME": "ci-user",
    "MLFLOW_TRACKING_PASSWORD": "fake-mlflow-password-must-not-leak-5d1e",
    "KF_PIPELINES_TOKEN": "fake-kfp-token-must-not-leak-0b8d",
    "HF_TOKEN": "hf_fakeTokenMustNotLeak4242",
}


def leaked(text: str) -> list[str]:
    """The names of the planted secrets that occur in ``text``."""
    return [name for name, value in FAKE_SECRETS.items()
            if name != "MLFLOW_TRACKING_USERNAME" and value in text]


# ------------------------------------------------------------------------------------------- YAML


def test_no_credential_in_the_compiled_pipeline(tmp_path, monkeypatch, capsys):
    pytest.importorskip("kfp")
    for name, value in FAKE_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://ci-user:{FAKE_SECRETS['MLFLOW_TRACKING_PASSWORD']}@mlflow.test")
    out = tmp_path / "amnet.yaml"
    assert main(["pipeline", "compile", "--out", str(out)]) == 0
    compiled = out.read_text()
    captured = capsys.readouterr()
    assert "amnet-s3" in compiled  # the secret is named...
    assert leaked(compiled) == [] and "@mlflow.test" not in compiled  # ...its values are not there
    assert leaked(captured.out + captured.err) == []


# ------------------------------------------------------------------------------------------- logs, MLflow


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("security")
    data = tiny_dataset(root, num_images=300, image_size=32)
    assert main(["data", "split", data, "--out", str(root / "split"), "--per-value", "4", "--gallery-size", "50",
                 "--num-queries", "5", "--shard-size", "100", "--no-progress"]) == 0
    return root / "split"


def test_a_tracked_stage_leaks_no_credential(split, tmp_path, mlflow_server):
    """``amnet step pretrain`` tracked, in a fresh process with fake credentials in its environment:
    none in its output, its files or its MLflow run."""
    from mlflow import MlflowClient

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    env.update(FAKE_SECRETS, MLFLOW_TRACKING_URI=mlflow_server.tracking_uri, MLFLOW_EXPERIMENT_NAME="amnet-security",
               OMP_NUM_THREADS="1")
    out = tmp_path / "attr"
    proc = subprocess.run([sys.executable, "-P", "-m", "amnet.cli", "step", "pretrain", "--split", str(split),
                           "--out", str(out), *MODEL, "--set", "epochs=2", "--set", "batch_size=32"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert leaked(proc.stdout + proc.stderr) == []
    for path in out.rglob("*"):
        if path.is_file():
            assert leaked(path.read_bytes().decode("latin-1")) == [], path

    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    exp = client.get_experiment_by_name("amnet-security")
    (run,) = client.search_runs([exp.experiment_id], "tags.`amnet.stage` = 'pretrain'")
    assert run.data.params["model.width"] == "8" and "loss" in run.data.metrics  # it did log
    logged = [run.data.params, run.data.tags, list(run.data.metrics), run.info.run_name]
    logged.append(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path)))
    logged.append(Path(logged[-1]).read_text())
    assert leaked(repr(logged)) == []


def test_safe_params_drop_a_credential_that_slipped_into_a_config_value(monkeypatch):
    from amnet.ops.tracking import runs

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRETS["AWS_SECRET_ACCESS_KEY"])
    params = {"model.weights": f"s3://bucket/{FAKE_SECRETS['AWS_SECRET_ACCESS_KEY']}/w.pt", "lr": 0.1,
              "mlflow_password": "x", "aws_secret_access_key": "y"}
    assert runs.safe_params(params) == {"lr": 0.1}


# ------------------------------------------------------------------------------------------- pickles


def torch_load_calls(path: Path) -> list[ast.Call]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
            calls.append(node)
    return calls


def test_every_torch_load_is_weights_only():
    sources = [p for folder in ("src", "components", "pipeline") for p in (REPO / folder).rglob("*.py")]
    calls = [(p, c) for p in sources for c in torch_load_calls(p)]
    assert calls, "no torch.load found: the check looks in the wrong place"
    for path, call in calls:
        flags = {kw.arg: kw.value for kw in call.keywords}
        assert "weights_only" in flags, f"{path}:{call.lineno}: torch.load without weights_only=True"
        value = flags["weights_only"]
        assert isinstance(value, ast.Constant) and value.value is True, f"{path}:{call.lineno}"
    for path in sources:  # and nothing else that unpickles
        text = path.read_text()
        for needle in ("pickle.load", "pickle.loads", "read_pickle", "allow_pickle=True", "yaml.load(",
                       "yaml.unsafe_load", "torch.jit.load", "dill."):
            assert needle not in text, f"{path}: {needle}"


class Payload:
    """Unpickling this runs a shell command (what an attacker would put in a shared model file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["model", "training_state", "prototypes", "initial_weights"])
def test_a_pickled_payload_is_refused_and_never_runs(kind, tmp_path):
    from amnet.config import ModelConfig
    from amnet.model_store import load_model_payload, load_payload
    from amnet.models.backbones import build_backbone
    from amnet.train.prototypes import load_prototypes
    from amnet.train.weights import load_backbone_weights

    marker = tmp_path / "payload-ran"
    evil = {"kind": "amnet", "model_config": {}, "vocab": "", "state_dict": {"w": torch.zeros(1)},
            "memory": torch.zeros(2, 2), "extra": Payload(marker)}
    buf = io.BytesIO()
    torch.save(evil, buf)
    path = tmp_path / {"model": "model.pt", "training_state": "train_state.pt", "prototypes": "prototypes.pt",
                       "initial_weights": "init.pt"}[kind]
    path.write_bytes(buf.getvalue())
    load = {
        "model": lambda: load_model_payload(str(tmp_path)),
        "training_state": lambda: load_payload(str(path)),
        "prototypes": lambda: load_prototypes(str(tmp_path)),
        "initial_weights": lambda: load_backbone_weights(build_backbone(ModelConfig(image_size=32, width=8,
                                                                                    feature_dim=32)), str(path)),
    }[kind]
    with pytest.raises(AmnetError, match=rf"{path.name}: not a readable .*refused, it holds Python objects"):
        load()
    assert not marker.exists()
    # the same file, loaded the unsafe way, would have run the payload: the test's payload is real
    torch.load(io.BytesIO(buf.getvalue()), weights_only=False)  # noqa: S614
    assert marker.exists()


def test_referenced_checks_exist():
    """The checks this module points to for paths and images are there (a rename must not hide one)."""
    expected = {
        "test_cli_bad_input.py": ["dotdot-escape-file-exists", "absolute-path-outside", "symlink-out-of-root",
                                     "s3-uri-in-local-dataset", "decompression-bomb", "pickled-code-in-checkpoint"],
        "data/test_validate.py": ["def test_paths_escaping_the_root", "def test_resolve_image_path_s3"],
        "deploy/test_images.py": ["def test_final_user_is_not_root"],
        "pipeline/test_compile.py": ["def test_every_task_gets_secrets_by_reference"],
    }
    for name, needles in expected.items():
        text = (REPO / "tests" / name).read_text()
        for needle in needles:
            assert needle in text, f"tests/{name}: {needle}"
