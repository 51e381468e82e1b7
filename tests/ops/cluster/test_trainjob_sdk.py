"""The Kubeflow SDK is optional (the ``cluster`` extra): without it amnet imports, compiles a many-node
pipeline, and submitting a TrainJob is one clear amnet error that says what to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

from amnet.errors import AmnetError
from amnet.ops.cluster import trainjob

MESSAGE = r"--train-nodes > 1 needs the Kubeflow SDK: pip install 'amnet\[cluster\]'"


@pytest.fixture()
def no_sdk(monkeypatch):
    """The SDK as if not installed: every ``kubeflow`` module blocked (None in sys.modules)."""
    for name in [n for n in sys.modules if n == "kubeflow" or n.startswith("kubeflow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "kubeflow", None)


def test_submitting_without_the_sdk_is_a_clear_error(no_sdk, tmp_path):
    cluster = trainjob.Cluster(image="registry.test/amnet:c-0123456789ab-cuda", num_nodes=2)
    with pytest.raises(AmnetError, match=MESSAGE):
        trainjob.client_for(cluster)
    with pytest.raises(AmnetError, match=MESSAGE):
        trainjob.job_objects(cluster, ["torchrun", "--module", "amnet.cli"])
    with pytest.raises(AmnetError, match=MESSAGE):
        trainjob.follow(object(), "job", timeout_s=1)
    with pytest.raises(AmnetError, match=MESSAGE):  # before anything is submitted
        trainjob.train_on_nodes("s3://b/split", "s3://b/attr", "", "s3://b/out", "amnet", {}, "", "",
                                cluster, marker_dir=str(tmp_path))


def test_a_many_node_pipeline_compiles_without_the_sdk(tmp_path):
    script = ("import sys; sys.modules['kubeflow'] = None; from amnet_pipeline.cli import main_compile; "
              f"sys.exit(main_compile(['--out', {str(tmp_path / 'p.yaml')!r}, '--train-nodes', '2']))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "train-amnet-trainjob" in (tmp_path / "p.yaml").read_text()
