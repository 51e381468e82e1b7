"""The stack's MLflow tracking server (``python -m mlflow server``): command line, environment, health, start."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

from amnet.errors import AmnetError
from amnet.stack.processes import _alive, _pick_ports, _spawn, _wait_ready
from amnet.stack.state import HOST, REGION, _credentials, _load_state, _save_state

MLFLOW_PORTS = ("http",)


def _mlflow_args(state_dir: Path, bucket: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{state_dir / 'mlflow.db'}",
        "--artifacts-destination", f"s3://{bucket}/mlflow",
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]


def _mlflow_marker(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'mlflow.db'}"


def _mlflow_env(s3_endpoint: str, creds: dict[str, str]) -> dict[str, str]:
    """The server's environment: ours, minus other AWS identities, plus the stack's S3 credentials."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                        "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")}
    env.update({
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": creds["access_key"],
        "AWS_SECRET_ACCESS_KEY": creds["secret_key"],
        "AWS_DEFAULT_REGION": REGION,
        # The job runner forks ~8 more Python processes (GenAI scorers, trace rollups) we never use;
        # on a small machine they triple the start time.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    })
    return env


def _mlflow_healthy(uri: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=timeout) as resp:
            return resp.status == 200 and resp.read().strip() == b"OK"
    except Exception:
        return False


def check_server_package() -> None:
    """The tracking server needs the full ``mlflow`` distribution; the stages need only ``mlflow-skinny``
    (amnet's core dependency), which cannot serve. A clear error instead of the server's own traceback."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("mlflow")
    except PackageNotFoundError:
        raise AmnetError("`amnet stack up` runs an MLflow tracking server, which needs the full mlflow package "
                         "(only the client, mlflow-skinny, is installed): pip install 'amnet[stack]' "
                         "(make install does)") from None


def _launch_mlflow(state_dir: Path, bucket: str, s3_endpoint: str) -> tuple[dict[str, Any], bool]:
    """Spawn the MLflow server unless ours already runs (it needs S3 only once artifacts are logged)."""
    state = _load_state(state_dir)
    entry = state.get("mlflow") or {}
    if _alive(entry.get("pid"), entry.get("marker")):
        return entry, False
    check_server_package()
    ports = _pick_ports(MLFLOW_PORTS, entry.get("ports"))
    bucket = entry.get("bucket", bucket)  # artifacts already logged live there: never move them
    log = state_dir / "mlflow.log"
    env = _mlflow_env(s3_endpoint, _credentials(state_dir))
    pid = _spawn(_mlflow_args(state_dir, bucket, ports["http"]), log, env=env)
    entry = {"pid": pid, "ports": ports, "marker": _mlflow_marker(state_dir), "log": str(log), "bucket": bucket}
    state["mlflow"] = entry
    _save_state(state_dir, state)
    return entry, True


def _wait_mlflow(entry: dict[str, Any], timeout: float) -> str:
    uri = f"http://{HOST}:{entry['ports']['http']}"
    _wait_ready("MLflow server", entry["pid"], lambda: _mlflow_healthy(uri), Path(entry["log"]), timeout)
    return uri
