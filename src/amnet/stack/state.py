"""The local stack's state folder: ``stack.json`` (ports, pids, markers), the lock that serialises
``up`` / ``down``, the generated S3 credentials and SeaweedFS's identity file (both mode 0600)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from amnet.errors import AmnetError

HOST = "127.0.0.1"
REGION = "us-east-1"
DEFAULT_BUCKET = "amnet"
DEFAULT_STATE_DIR = ".amnet/stack"


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
