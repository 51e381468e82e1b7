"""Many nodes: AMNet training as a Kubeflow Trainer TrainJob through the Kubeflow SDK.

No cluster here. ``test_trainjob_spec_fake_cluster`` runs the real ``TrainerClient`` (Kubernetes backend)
with only the Kubernetes API client faked: it answers the ``torch-distributed`` runtime lookup as a
cluster with Kubeflow Trainer installed does, and keeps the TrainJob the SDK sends. The SDK's local
process backend cannot run this job (it runs only ``CustomTrainer`` functions, in a virtual environment
it creates and pip-installs into per job), so ``test_train_on_nodes_fake_cluster_two_torchrun_nodes``
stands in for the Trainer controller instead: it starts the job's command once per node with the
``PET_*`` environment the controller sets, and amnet's ``train_on_nodes`` submits, streams the log,
waits and reads the model as it does against a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from amnet.errors import AmnetError
from amnet.model_store import load_payload
from amnet.ops.cluster import trainjob

pytest.importorskip("kubeflow.trainer")

# The ClusterTrainingRuntime Kubeflow Trainer installs (manifests/runtimes: torch-distributed), trimmed
# to the fields the SDK reads.
TORCH_DISTRIBUTED = {
    "apiVersion": "trainer.kubeflow.org/v1alpha1",
    "kind": "ClusterTrainingRuntime",
    "metadata": {"name": "torch-distributed", "labels": {"trainer.kubeflow.org/framework": "torch"}},
    "spec": {
        "mlPolicy": {"numNodes": 1, "torch": {"numProcPerNode": "auto"}},
        "template": {"spec": {"replicatedJobs": [{
            "name": "node",
            "template": {
                "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                "spec": {"template": {"spec": {"containers": [{
                    "name": "node", "image": "pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime",
                    "command": ["/bin/bash", "-c", "torchrun /workspace/train.py"]}]}}},
            },
        }]}},
    },
}
PLANTED = {"AWS_ACCESS_KEY_ID": "AKIA" + "PLANTEDNOTREAL9", "AWS_SECRET_ACCESS_KEY": "planted-secret-must-not-leak",
           "MLFLOW_TRACKING_PASSWORD": "planted-password-must-not-leak"}


class Thread:
    """What ``async_req=True`` returns: ``.get(timeout)``."""

    def __init__(self, value):
        self.value = value

    def get(self, timeout=None):
        return self.value


class FakeCustomObjectsApi:
    """The cluster's custom-resource API: the torch-distributed runtime exists cluster-wide; created
    objects are kept."""

    created: list[dict] = []

    def __init__(self, api_client=None):
        pass

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, async_req=False):
        from kubernetes.client import ApiException

        raise ApiException(status=404, reason="no namespaced runtime")

    def get_cluster_custom_object(self, group, version, plural, name, async_req=False):
        assert (group, plural, name) == ("trainer.kubeflow.org", "clustertrainingruntimes", "torch-distributed")
        return Thread(TORCH_DISTRIBUTED)

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        FakeCustomObjectsApi.created.append({"namespace": namespace, "plural": plural, "body": body})
        return body


class FakeCoreV1Api:
    def __init__(self, api_client=None):
        pass

    def read_namespaced_config_map(self, name, namespace):
        return SimpleNamespace(data={"kubeflow_trainer_version": "v2.1.0"})


def cluster_options(**overrides):
    from amnet_pipeline.amnet_pipeline import CompileOptions

    return CompileOptions(**{"train_nodes": 2, "train_gpus": 8, "gpu_node_selector": {"pool": "h100"},
                             **overrides})


def test_trainjob_spec_fake_cluster(monkeypatch):
    """train_nodes=2, train_gpus=8: the TrainJob the SDK would create holds the GPU image, the torchrun
    command of `amnet step train`, 2 nodes with 8 GPUs each, and the credentials as secret references
    (names and keys) only."""
    import kubernetes.client
    from amnet_components.images import GPU_IMAGE
    from kubeflow.common.types import KubernetesBackendConfig
    from kubeflow.trainer import TrainerClient

    for name, value in PLANTED.items():  # in the submitting pod's environment: none may reach the spec
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", FakeCustomObjectsApi)
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", FakeCoreV1Api)
    FakeCustomObjectsApi.created = []
    client = TrainerClient(KubernetesBackendConfig(namespace="ml-team",
                                                   client_configuration=kubernetes.client.Configuration()))

    cluster = trainjob.Cluster.from_dict(cluster_options().trainjob_cluster())
    command = trainjob.train_command("minio://mlpipeline/v2/artifacts/amnet/r1/split-dataset/split",
                                     "s3://bucket/run/attr", "s3://bucket/run/protos",
                                     "minio://mlpipeline/v2/artifacts/amnet/r1/train-amnet-trainjob/model", "amnet",
                                     {"epochs": 6, "batch_size": 256, "lr": 0.01}, "parent123",
                                     "s3://bucket/checkpoints/r1/train-amnet-abc", cluster.procs_per_node)
    name = trainjob.submit(client, cluster, command, labels={"amnet.variant": "amnet"})

    (sent,) = FakeCustomObjectsApi.created
    job = sent["body"]
    print(json.dumps(job, indent=1))
    assert (sent["namespace"], sent["plural"]) == ("ml-team", "trainjobs")
    assert (job["apiVersion"], job["kind"], job["metadata"]["name"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob",
                                                                        name)
    assert job["metadata"]["labels"] == {"amnet.variant": "amnet"}
    spec = job["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime"}
    trainer = spec["trainer"]
    assert trainer["image"] == GPU_IMAGE and GPU_IMAGE.endswith("-cuda")
    assert trainer["numNodes"] == 2
    resources = trainer["resourcesPerNode"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "8"
    assert resources["limits"]["cpu"] == "8" and resources["limits"]["memory"] == "32Gi"
    cmd = trainer["command"]
    assert cmd[:6] == ["torchrun", "--nproc-per-node=8", "--module", "amnet.cli", "step", "train"]
    args = {flag: cmd[i + 1] for i, flag in enumerate(cmd[:-1]) if flag.startswith("--") and flag != "--quiet"}
    assert args["--split"] == "s3://mlpipeline/v2/artifacts/amnet/r1/split-dataset/split"  # minio:// is S3
    assert args["--out"] == "s3://mlpipeline/v2/artifacts/amnet/r1/train-amnet-trainjob/model"
    assert args["--checkpoint-dir"] == "s3://bucket/checkpoints/r1/train-amnet-abc"
    assert args["--parent-run-id"] == "parent123" and args["--variant"] == "amnet"
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"] == ["batch_size=256", "epochs=6", "lr=0.01"]
    assert "env" not in trainer  # nothing by value

    (patch,) = spec["runtimePatches"]
    assert patch["manager"] == "trainer.kubeflow.org/kubeflow-sdk"
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == "node"
    pod = rjob["template"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "node"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert all(set(e) == {"name", "valueFrom"} for e in container["env"])  # no "value" anywhere
    assert refs["AWS_ACCESS_KEY_ID"] == {"name": "amnet-s3", "key": "AWS_ACCESS_KEY_ID", "optional": False}
    assert refs["AWS_SECRET_ACCESS_KEY"]["name"] == "amnet-s3"
    assert refs["AWS_ENDPOINT_URL"] == {"name": "amnet-s3", "key": "AWS_ENDPOINT_URL", "optional": True}
    assert refs["MLFLOW_TRACKING_URI"] == {"name": "amnet-mlflow", "key": "MLFLOW_TRACKING_URI", "optional": True}
    assert container["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert pod["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}]
    assert pod["nodeSelector"] == {"pool": "h100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["activeDeadlineSeconds"] == trainjob.DEFAULT_TIMEOUT_S
    text = json.dumps(job)
    assert not [name for name, value in PLANTED.items() if value in text]


def test_cpu_nodes_get_no_gpu_and_the_cpu_image():
    from amnet_components.images import PROJECT_IMAGE

    cluster = trainjob.Cluster.from_dict(cluster_options(use_gpu=False).trainjob_cluster())
    assert (cluster.image, cluster.gpus_per_node, cluster.procs_per_node) == (PROJECT_IMAGE, 0, 1)
    trainer, _ = trainjob.job_objects(cluster, ["torchrun"])
    assert "gpu" not in trainer.resources_per_node and not cluster.node_selector and not cluster.tolerations
    with pytest.raises(AmnetError, match="num_nodes must be"):
        trainjob.Cluster(image="x", num_nodes=0)


# ------------------------------------------------------------------------------ a fake cluster that runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeLocalNodesTrainerClient:
    """Stands in for ``TrainerClient`` + the Trainer controller: ``train`` starts the TrainJob's command
    once per node on this machine, with the ``PET_*`` environment the torch plugin sets and the secret
    references resolved from ``secrets`` (a name -> {key: value} mapping, as the cluster holds them)."""

    def __init__(self, secrets: dict[str, dict[str, str]], workdir: Path):
        self.secrets, self.workdir, self.nodes, self.submitted = secrets, workdir, [], []

    def train(self, runtime, trainer, options):
        from kubeflow.trainer.options import RuntimePatch, TrainerCommand

        command = next(o.command for o in options if isinstance(o, TrainerCommand))
        patch = next(o for o in options if isinstance(o, RuntimePatch))
        env_refs = patch.training_runtime_spec.template.spec.replicated_jobs[0].template.spec.template.spec \
            .containers[0].env or []
        self.submitted.append((runtime, trainer, command))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "AMNET_", "PET_"))}
        for ref in env_refs:  # what the kubelet does with secretKeyRef
            key = ref["valueFrom"]["secretKeyRef"]
            value = self.secrets.get(key["name"], {}).get(key["key"])
            assert value is not None or key["optional"], key
            if value is not None:
                env[ref["name"]] = value
        port = free_port()
        for rank in range(trainer.num_nodes):
            with open(self.workdir / f"node-{rank}.log", "w") as log:  # the node process keeps its own handle
                self.nodes.append(subprocess.Popen(
                    [sys.executable, "-m", "torch.distributed.run", *command[1:]], stdout=log,
                    stderr=subprocess.STDOUT, env={**env, "PET_NNODES": str(trainer.num_nodes),
                                                   "PET_NODE_RANK": str(rank), "PET_MASTER_ADDR": "127.0.0.1",
                                                   "PET_MASTER_PORT": str(port)}))
        return "fake-trainjob"

    def wait_for_job_status(self, name, status, timeout=600, polling_interval=2):
        if "Complete" in status and len(status) == 1:
            codes = [proc.wait(timeout=timeout) for proc in self.nodes]
            if any(codes):
                raise RuntimeError(f"TrainJob {name} is Failed (exit codes {codes})")
            return SimpleNamespace(status="Complete", num_nodes=len(self.nodes))
        return SimpleNamespace(status="Running", num_nodes=len(self.nodes))

    def get_job_logs(self, name, follow=False, step="node-0"):
        self.nodes[0].wait()
        yield from (self.workdir / "node-0.log").read_text().splitlines()


@pytest.mark.slow
def test_train_on_nodes_fake_cluster_two_torchrun_nodes(trained_chain, tmp_path, capsys, caplog):
    """The TrainJob path end to end with two CPU "nodes" (gloo): submit, stream node 0's log, wait, read
    the model rank 0 wrote to the task's output; the marker in the output names the job."""
    caplog.set_level(logging.INFO, logger="amnet")
    cluster = {**cluster_options(use_gpu=False).trainjob_cluster(), "timeout_s": 600}
    client = FakeLocalNodesTrainerClient({"amnet-s3": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}},
                                     tmp_path)
    out, marker = tmp_path / "model", tmp_path / "marker"
    result = trainjob.train_on_nodes(str(trained_chain.split), str(trained_chain.attr), str(trained_chain.protos),
                                     str(out), "amnet", {"epochs": 2, "steps_per_epoch": 3, "batch_size": 8}, "",
                                     str(tmp_path / "state"), cluster, marker_dir=str(marker), client=client)
    printed = capsys.readouterr().out
    (runtime, trainer, command), = client.submitted
    assert runtime == "torch-distributed" and trainer.num_nodes == 2 and "--nproc-per-node=1" in command
    logged = caplog.text  # the job's state is logged; node 0's lines are relayed to stdout as they are
    assert "TrainJob fake-trainjob: 2 node(s) x 1 rank(s)" in logged and "Complete on 2 node(s)" in logged
    assert "variant" in printed  # node 0's log (rank 0 prints the result) reached the task's log
    history = load_payload(str(out / "model.pt"))["extra"]["history"]
    assert len(history) == 2 and result["epochs"] == 2 and result["nodes"] == 2
    assert result["loss"] == pytest.approx(history[-1]["loss"])
    assert load_payload(str(tmp_path / "state" / "train_state.pt"))["epoch"] == 2  # checkpoints where asked
    assert json.loads((marker / trainjob.MARKER).read_text())["trainjob"] == "fake-trainjob"


@pytest.mark.slow
def test_a_failed_trainjob_fails_the_task_fake_cluster(trained_chain, tmp_path):
    cluster = {**cluster_options(use_gpu=False).trainjob_cluster(), "timeout_s": 300}
    client = FakeLocalNodesTrainerClient({"amnet-s3": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}},
                                     tmp_path)
    with pytest.raises(AmnetError, match="TrainJob fake-trainjob failed"):
        trainjob.train_on_nodes(str(trained_chain.split), str(tmp_path / "no-such-attr-model"),
                                str(trained_chain.protos), str(tmp_path / "model"), "amnet", {"epochs": 1}, "", "",
                                cluster, client=client)
