"""The embedded local stack: a real SeaweedFS S3 gateway and a real MLflow tracking server on loopback.

``amnet stack up`` starts both in the background (each in its own process group, so they outlive the
CLI), on free loopback ports, and keeps everything it needs to find and stop them again in a state
folder (default ``.amnet/stack`` under the current directory, or ``$AMNET_STACK_DIR``)::

    stack.json         ports, pids and the command-line marker of each process (no secrets)
    credentials.json   the S3 access key/secret, generated on first start (mode 0600)
    s3.json            SeaweedFS identity config holding the same key (mode 0600)
    seaweed/           SeaweedFS data (master, volumes, filer)
    mlflow.db          MLflow's SQLite backend store
    seaweed.log, mlflow.log

MLflow stores artifacts under ``s3://<bucket>/mlflow`` and serves them to clients through its own
HTTP proxy, so MLflow clients need no S3 credentials. ``stack_env(state_dir)`` returns the
environment a client (a stage, the pipeline, ``boto3``) needs to use the stack.

This module starts, stops and reports on the stack as a whole: ``start_stack``, ``start_seaweed``,
``stop_stack``, ``stack_status``, ``stack_env``. The parts: :mod:`amnet.stack.state` (the state folder,
lock and credentials), :mod:`amnet.stack.processes` (ports, process groups), :mod:`amnet.stack.seaweedfs`
(``weed_binary``, ``create_bucket``), :mod:`amnet.stack.mlflow_server`; the CLI ``amnet stack up|down|status``
is :mod:`amnet.stack.cli`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amnet.errors import AmnetError
from amnet.stack.mlflow_server import _launch_mlflow, _mlflow_healthy, _wait_mlflow
from amnet.stack.processes import _alive, _stop_groups
from amnet.stack.seaweedfs import _cleanup_sockets, _launch_seaweed, _s3_healthy, _wait_seaweed
from amnet.stack.state import (
    DEFAULT_BUCKET,
    HOST,
    REGION,
    _credentials,
    _load_state,
    _locked,
    _save_state,
    _state_path,
    default_state_dir,
)


@dataclass
class ServiceStatus:
    """What ``stack_status`` knows about one service."""

    name: str
    endpoint: str | None
    pid: int | None
    running: bool
    healthy: bool
    log: str


@dataclass
class StackInfo:
    """Where a started stack answers. Holds no secret: use ``env()`` for the credentials."""

    state_dir: Path
    bucket: str
    s3_endpoint: str | None
    mlflow_uri: str | None
    pids: dict[str, int] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)  # services this call started (the rest were running)

    def env(self) -> dict[str, str]:
        return stack_env(self.state_dir)


def start_stack(state_dir: str | os.PathLike | None = None, bucket: str = DEFAULT_BUCKET, seaweed: bool = True,
                mlflow: bool = True, timeout: float = 120) -> StackInfo:
    """Start whatever part of the stack is not running yet; return once every part answers.

    Idempotent: running, healthy services are reused. Both processes are spawned before waiting on
    either, so start-up costs the slower of the two, not their sum. MLflow keeps its artifacts in
    the stack's S3, so ``mlflow=True`` needs ``seaweed=True``. On failure, what this call started
    is stopped again.
    """
    if mlflow and not seaweed:
        raise AmnetError("the MLflow server keeps its artifacts in the stack's S3: it needs seaweed=True")
    state_dir = Path(state_dir).resolve() if state_dir else default_state_dir()
    started: list[str] = []
    with _locked(state_dir):
        try:
            sw, sw_new = _launch_seaweed(state_dir)
            started += ["seaweed"] if sw_new else []
            s3_endpoint = f"http://{HOST}:{sw['ports']['s3']}"
            ml: dict[str, Any] = {}
            if mlflow:
                ml, ml_new = _launch_mlflow(state_dir, bucket, s3_endpoint)
                started += ["mlflow"] if ml_new else []
            buckets = list(dict.fromkeys([bucket] + ([ml["bucket"]] if ml.get("bucket") else [])))
            _wait_seaweed(state_dir, sw, buckets, timeout)
            mlflow_uri = _wait_mlflow(ml, timeout) if mlflow else None
        except BaseException:
            _stop_services(state_dir, started)
            raise
    pids = {"seaweed": sw["pid"], **({"mlflow": ml["pid"]} if mlflow else {})}
    return StackInfo(state_dir=state_dir, bucket=bucket, s3_endpoint=s3_endpoint, mlflow_uri=mlflow_uri,
                     pids=pids, started=started)


def start_seaweed(state_dir: str | os.PathLike, bucket: str = DEFAULT_BUCKET, timeout: float = 60) -> StackInfo:
    """Start (or reuse) only the SeaweedFS S3 gateway and make sure ``bucket`` exists."""
    return start_stack(state_dir, bucket=bucket, mlflow=False, timeout=timeout)


def _stop_services(state_dir: Path, names: list[str]) -> list[str]:
    """Stop services by their saved pids, only where the command line is still ours; names those stopped.

    The ports stay in the state so the next ``up`` reuses them when free (exported env keeps working).
    """
    state = _load_state(state_dir)
    entries = {name: state[name] for name in names if state.get(name)}
    running = [name for name, e in entries.items() if _alive(e.get("pid"), e.get("marker"))]
    _stop_groups([entries[name]["pid"] for name in running])
    for name, entry in entries.items():
        if name == "seaweed":
            _cleanup_sockets(entry.get("ports", {}))
        entry["pid"] = None
    _save_state(state_dir, state)
    return running


def stop_stack(state_dir: str | os.PathLike | None = None,
               services: tuple[str, ...] = ("mlflow", "seaweed")) -> list[str]:
    """Stop what ``start_stack`` started from this state folder (data is kept); names those stopped.

    ``services=("mlflow",)`` stops only the MLflow server and leaves S3 running.
    """
    state_dir = Path(state_dir).resolve() if state_dir else default_state_dir()
    if not _state_path(state_dir).exists():
        return []
    with _locked(state_dir):
        return _stop_services(state_dir, list(services))


def stack_status(state_dir: str | os.PathLike | None = None) -> dict[str, ServiceStatus]:
    """Per service: endpoint, pid, whether it runs and whether it answers its health check."""
    state_dir = Path(state_dir).resolve() if state_dir else default_state_dir()
    state = _load_state(state_dir)
    out: dict[str, ServiceStatus] = {}
    sw = state.get("seaweed")
    if sw:
        endpoint = f"http://{HOST}:{sw['ports']['s3']}"
        running = _alive(sw.get("pid"), sw.get("marker"))
        healthy = running and _s3_healthy(endpoint, _credentials(state_dir))
        out["seaweed"] = ServiceStatus("seaweed", endpoint, sw.get("pid") if running else None, running, healthy,
                                       sw.get("log", str(state_dir / "seaweed.log")))
    ml = state.get("mlflow")
    if ml:
        uri = f"http://{HOST}:{ml['ports']['http']}"
        running = _alive(ml.get("pid"), ml.get("marker"))
        healthy = running and _mlflow_healthy(uri)
        out["mlflow"] = ServiceStatus("mlflow", uri, ml.get("pid") if running else None, running, healthy,
                                      ml.get("log", str(state_dir / "mlflow.log")))
    return out


def stack_env(state_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """The environment a client needs for this stack: S3 endpoint + credentials, MLflow URI.

    Built from the saved ports and credentials; it does not check that the services run.
    """
    state_dir = Path(state_dir).resolve() if state_dir else default_state_dir()
    state = _load_state(state_dir)
    if not state.get("seaweed"):
        raise AmnetError(f"no local stack in {state_dir}; start it with `amnet stack up`")
    creds = _credentials(state_dir)
    s3 = f"http://{HOST}:{state['seaweed']['ports']['s3']}"
    env = {
        "AWS_ENDPOINT_URL": s3,
        "AWS_ACCESS_KEY_ID": creds["access_key"],
        "AWS_SECRET_ACCESS_KEY": creds["secret_key"],
        "AWS_DEFAULT_REGION": REGION,
        "MLFLOW_S3_ENDPOINT_URL": s3,
    }
    if state.get("mlflow"):
        env["MLFLOW_TRACKING_URI"] = f"http://{HOST}:{state['mlflow']['ports']['http']}"
    return env
