"""Many nodes: the AMNet training step as a Kubeflow Trainer ``TrainJob``, through the Kubeflow SDK.

The job runs the same ``amnet step train`` as the in-pod path, under ``torchrun`` on each node of the
cluster's ``torch-distributed`` runtime (Kubeflow Trainer's controller sets ``PET_NNODES``,
``PET_NODE_RANK``, ``PET_MASTER_ADDR``/``PORT``, which torchrun reads), with one rank per GPU of a node.
Every rank reads the split from S3; rank 0 writes the checkpoints (under the task's checkpoint dir)
and the model (under the task's output URI) and logs the one MLflow training run, so the pipeline's
next stage reads the model where the TrainJob left it.

Built from the SDK's own objects (``CustomTrainerContainer``, ``TrainerCommand``, ``RuntimePatch``), not
hand-written YAML. Credentials reach the pods as ``secretKeyRef`` environment entries: the job spec
names the Kubernetes secrets and keys, never a value. The ``kubeflow`` package (the optional ``cluster``
extra) is imported only here and only inside functions, so the rest of amnet never needs it; where it is
missing, submitting a TrainJob says how to install it (:func:`kubeflow_sdk`).

The SDK's local process backend cannot run this job: it runs only ``CustomTrainer`` functions, each in
a fresh virtual environment it pip-installs into. The tests check the spec the SDK would send (with
the Kubernetes API client faked) and run the spec's command as two torchrun "nodes" on this machine.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from amnet import config as cfgmod
from amnet import storage
from amnet.errors import AmnetError

log = logging.getLogger(__name__)
RUNTIME = "torch-distributed"  # Kubeflow Trainer's ClusterTrainingRuntime for PyTorch (torchrun)
NODE = "node"  # the replicated job and trainer container of Trainer's torch runtimes
SHM_VOLUME = "dshm"
DEFAULT_TIMEOUT_S = 7 * 24 * 3600
MARKER = "trainjob.json"  # written into the output artifact: which TrainJob produced the model
SDK_MISSING = "--train-nodes > 1 needs the Kubeflow SDK: pip install 'amnet[cluster]'"


@contextmanager
def kubeflow_sdk() -> Iterator[None]:
    """Around the Kubeflow SDK's imports: a missing SDK (or a dependency of it) is one clear amnet error."""
    try:
        yield
    except ImportError as exc:
        raise AmnetError(f"{SDK_MISSING} ({exc})") from None


@dataclass(frozen=True)
class SecretEnv:
    """One environment variable of the training pods, read from a key of a Kubernetes secret."""

    env: str
    secret: str
    key: str
    optional: bool = False

    def to_k8s(self) -> dict[str, Any]:
        return {"name": self.env, "valueFrom": {"secretKeyRef": {"name": self.secret, "key": self.key,
                                                                   "optional": self.optional}}}


@dataclass(frozen=True)
class Cluster:
    """Where and how the TrainJob runs: fixed when the pipeline is compiled (``amnet_pipeline``)."""

    image: str
    num_nodes: int
    gpus_per_node: int = 1  # 0 = CPU nodes: one gloo rank per node
    cpu: str = "8"
    memory: str = "32Gi"
    shm_size: str = "8Gi"
    secret_env: tuple[SecretEnv, ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    runtime: str = RUNTIME
    namespace: str = ""  # "" = the SDK's default (the pod's own namespace in a cluster)
    timeout_s: int = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if not isinstance(self.num_nodes, int) or self.num_nodes < 1:
            raise AmnetError(f"num_nodes must be a whole number >= 1 (got {self.num_nodes!r})")
        if not isinstance(self.gpus_per_node, int) or self.gpus_per_node < 0:
            raise AmnetError(f"gpus_per_node must be a whole number >= 0 (got {self.gpus_per_node!r})")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Cluster:
        """From the plain mapping a KFP component receives (lists for tuples)."""
        values = dict(values)
        values["secret_env"] = tuple(SecretEnv(**s) for s in values.get("secret_env", ()))
        values["tolerations"] = tuple(dict(t) for t in values.get("tolerations", ()))
        return cls(**values)

    @property
    def procs_per_node(self) -> int:
        return max(1, self.gpus_per_node)


def pod_uri(uri: str) -> str:
    """An artifact URI as the training pods read it: KFP's ``minio://`` store is S3 to boto3."""
    return "s3://" + uri[len("minio://"):] if uri.startswith("minio://") else uri


def train_command(split: str, attr_model: str, prototypes: str, out: str, variant: str,
                  config: Mapping[str, Any] | None, parent_run_id: str, checkpoint_dir: str,
                  procs_per_node: int) -> list[str]:
    """``torchrun ... -m amnet.cli step train ...``: what every node runs. The node count, node rank and
    master address come from the ``PET_*`` environment Kubeflow Trainer sets; the config goes as
    ``--set key=value`` items (JSON values, which YAML reads back unchanged)."""
    cmd = ["torchrun", f"--nproc-per-node={procs_per_node}", "--module", "amnet.cli", "step", "train",
           "--split", pod_uri(split), "--attr-model", pod_uri(attr_model), "--out", pod_uri(out),
           "--variant", variant, "--quiet"]
    if prototypes:
        cmd += ["--prototypes", pod_uri(prototypes)]
    if checkpoint_dir:
        cmd += ["--checkpoint-dir", pod_uri(checkpoint_dir)]
    if parent_run_id:
        cmd += ["--parent-run-id", parent_run_id]
    for key, value in sorted(cfgmod.flatten(dict(config or {})).items()):
        if key != "variant":  # the pipeline's loop sets it (--variant)
            cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd


def job_objects(cluster: Cluster, command: list[str], labels: Mapping[str, str] | None = None):
    """The SDK objects of the TrainJob: ``(trainer, options)`` for ``TrainerClient.train``."""
    with kubeflow_sdk():
        from kubeflow.trainer import CustomTrainerContainer
        from kubeflow.trainer.options import (
            ActiveDeadlineSeconds,
            ContainerPatch,
            JobSetSpecPatch,
            JobSetTemplatePatch,
            JobSpecPatch,
            JobTemplatePatch,
            Labels,
            PodSpecPatch,
            PodTemplatePatch,
            ReplicatedJobPatch,
            RuntimePatch,
            TrainerCommand,
            TrainingRuntimeSpecPatch,
        )

    resources: dict[str, Any] = {"cpu": cluster.cpu, "memory": cluster.memory}
    if cluster.gpus_per_node:
        resources["gpu"] = str(cluster.gpus_per_node)  # a Kubernetes quantity, as cpu and memory
    trainer = CustomTrainerContainer(image=cluster.image, num_nodes=cluster.num_nodes, resources_per_node=resources)
    container = ContainerPatch(name=NODE, env=[s.to_k8s() for s in cluster.secret_env] or None,
                               volume_mounts=[{"name": SHM_VOLUME, "mountPath": "/dev/shm"}])
    pod = PodSpecPatch(containers=[container],
                       volumes=[{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": cluster.shm_size}}],
                       node_selector=dict(cluster.node_selector) or None,
                       tolerations=[_toleration(t) for t in cluster.tolerations] or None)
    patch = RuntimePatch(training_runtime_spec=TrainingRuntimeSpecPatch(template=JobSetTemplatePatch(
        spec=JobSetSpecPatch(replicated_jobs=[ReplicatedJobPatch(name=NODE, template=JobTemplatePatch(
            spec=JobSpecPatch(template=PodTemplatePatch(spec=pod))))]))))
    options = [TrainerCommand(command=list(command)), patch, ActiveDeadlineSeconds(seconds=cluster.timeout_s)]
    if labels:
        options.append(Labels(labels=dict(labels)))
    return trainer, options


def _toleration(t: Mapping[str, Any]) -> dict[str, Any]:
    """``kfp.kubernetes.add_toleration`` keywords (the compile options' form) -> a Kubernetes toleration."""
    return {"tolerationSeconds" if k == "toleration_seconds" else k: v for k, v in t.items()}


def client_for(cluster: Cluster):
    """A ``TrainerClient`` on the Kubernetes backend (in-cluster service account, or the kube config)."""
    with kubeflow_sdk():
        from kubeflow.common.types import KubernetesBackendConfig
        from kubeflow.trainer import TrainerClient

    return TrainerClient(KubernetesBackendConfig(namespace=cluster.namespace or None))


def submit(client, cluster: Cluster, command: list[str], labels: Mapping[str, str] | None = None) -> str:
    """Create the TrainJob; returns its name."""
    trainer, options = job_objects(cluster, command, labels)
    return client.train(runtime=cluster.runtime, trainer=trainer, options=options)


def follow(client, name: str, timeout_s: int, echo: Callable[[str], None] = print, poll_s: int = 10) -> None:
    """Stream node 0's log (rank 0: progress, losses) until the job ends; raise if it failed. ``echo``
    relays the node's lines as they are (they carry the node's own format); the job's state is logged."""
    with kubeflow_sdk():
        from kubeflow.trainer.constants import constants

    running = {constants.TRAINJOB_RUNNING, constants.TRAINJOB_COMPLETE, constants.TRAINJOB_FAILED}
    deadline = time.monotonic() + timeout_s
    client.wait_for_job_status(name, running, timeout=timeout_s, polling_interval=poll_s)
    try:
        for line in client.get_job_logs(name, follow=True):
            echo(line.rstrip("\n"))
    except Exception as exc:  # noqa: BLE001 (a lost log stream is not a failed job: the status decides)
        log.warning("TrainJob %s: log stream ended (%s); waiting for the job", name, exc)
    left = max(2 * poll_s, int(deadline - time.monotonic()))
    try:
        job = client.wait_for_job_status(name, {constants.TRAINJOB_COMPLETE}, timeout=left, polling_interval=poll_s)
    except RuntimeError as exc:
        raise AmnetError(f"TrainJob {name} failed ({exc}); `kubectl describe trainjob {name}` says why") from None
    log.info("TrainJob %s: %s on %s node(s)", name, job.status, job.num_nodes)


def train_on_nodes(split: str, attr_model: str, prototypes: str, out: str, variant: str,
                   config: Mapping[str, Any] | None, parent_run_id: str, checkpoint_dir: str,
                   cluster: Cluster | Mapping[str, Any], marker_dir: str = "", labels: Mapping[str, str] | None = None,
                   client=None) -> dict:
    """Train ``variant`` as a TrainJob on ``cluster`` and wait for it; the model lands at ``out`` (a URI the
    pods reach, e.g. the task's S3 output). Returns the final epoch's numbers from the written model.
    ``marker_dir``: a local folder (the component's output path) that gets :data:`MARKER` naming the job."""
    from amnet.model_store import load_payload
    from amnet.names import MODEL_FILE

    if not isinstance(cluster, Cluster):
        cluster = Cluster.from_dict(cluster)
    command = train_command(split, attr_model, prototypes, out, variant, config, parent_run_id, checkpoint_dir,
                            cluster.procs_per_node)
    client = client or client_for(cluster)
    name = submit(client, cluster, command, labels)
    log.info("TrainJob %s: %s node(s) x %s rank(s), runtime %s, image %s", name, cluster.num_nodes,
             cluster.procs_per_node, cluster.runtime, cluster.image)
    follow(client, name, cluster.timeout_s)
    history = load_payload(storage.join(pod_uri(out), MODEL_FILE))["extra"]["history"]
    if marker_dir:
        storage.write_text(storage.join(marker_dir, MARKER), json.dumps(
            {"trainjob": name, "num_nodes": cluster.num_nodes, "ranks_per_node": cluster.procs_per_node,
             "model": pod_uri(out)}, indent=2))
    return {"variant": variant, "epochs": len(history), "nodes": cluster.num_nodes, **history[-1]}
