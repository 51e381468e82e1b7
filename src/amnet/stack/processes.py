"""The stack's server processes: free loopback ports, spawning in a process group of its own, whether
a saved pid is still ours, stopping whole groups, waiting until a server answers, a log's last line."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from amnet.errors import AmnetError
from amnet.stack.state import HOST

STOP_GRACE_S = 5.0  # SeaweedFS takes ~15 s to exit on SIGTERM after it has flushed; do not wait for it

# Processes started by this Python process, kept so they can be reaped (no zombies, no ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen] = {}


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
