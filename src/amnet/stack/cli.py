"""``amnet stack up|down|status``: the endpoints table on stdout, or with ``--json`` one JSON document
(``state_dir``, ``services`` by name with ``endpoint``, ``pid``, ``running``, ``healthy``, ``log``, and
``healthy`` for the whole stack; never a credential). Progress goes to stderr."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from amnet.errors import AmnetError
from amnet.stack.services import ServiceStatus, stack_env, stack_status, start_stack, stop_stack
from amnet.stack.state import DEFAULT_BUCKET, DEFAULT_STATE_DIR, default_state_dir

log = logging.getLogger(__name__)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--dir", default=None,
                   help=f"state folder (default: $AMNET_STACK_DIR or ./{DEFAULT_STATE_DIR})")
    return p


def add_json_flag(p: Any) -> None:
    """``--json`` on a parser or a mutually exclusive group."""
    p.add_argument("--json", action="store_true",
                   help="print one JSON document (state folder, each service's endpoint, pid, health, log) "
                   "instead of the table")


def status_data(state_dir: Path, statuses: dict[str, ServiceStatus], **extra: Any) -> dict[str, Any]:
    """The stack as ``--json`` prints it: no credentials (``amnet stack status --env`` has those)."""
    services = {name: {"endpoint": st.endpoint, "pid": st.pid, "running": st.running, "healthy": st.healthy,
                       "log": st.log} for name, st in statuses.items()}
    healthy = bool(statuses) and all(st.healthy for st in statuses.values())
    return {"state_dir": str(state_dir), **extra, "healthy": healthy, "services": services}


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
    add_json_flag(p)
    args = p.parse_args(argv)
    state_dir = Path(args.dir).resolve() if args.dir else default_state_dir()
    t0 = time.monotonic()
    info = start_stack(state_dir, bucket=args.bucket, mlflow=not args.no_mlflow, timeout=args.timeout)
    if info.started:
        log.info("started %s in %.1f s", ", ".join(info.started), time.monotonic() - t0)
    else:
        log.info("local stack already running")
    if args.json:
        print(json.dumps(status_data(state_dir, stack_status(state_dir), bucket=info.bucket, started=info.started),
                         indent=2))
        return 0
    _print_endpoints(state_dir, stack_status(state_dir))
    print(f"  bucket          s3://{info.bucket}\n\nuse it from a shell:  eval \"$(amnet stack status --env"
          f"{' --dir ' + shlex.quote(str(state_dir)) if args.dir else ''})\"")
    return 0


def main_down(argv: list[str] | None = None) -> int:
    p = _parser("amnet stack down", "Stop the processes `amnet stack up` started (data is kept).")
    args = p.parse_args(argv)
    state_dir = Path(args.dir).resolve() if args.dir else default_state_dir()
    stopped = stop_stack(state_dir)
    if stopped:
        log.info("stopped %s", ", ".join(stopped))
    else:
        log.info("nothing running in %s", state_dir)
    return 0


def main_status(argv: list[str] | None = None) -> int:
    p = _parser("amnet stack status", "Show the local stack's endpoints and health; exit 1 unless all healthy.")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--env", action="store_true",
                       help="print `export VAR=...` lines (including the S3 secret) "
                       "for: eval \"$(amnet stack status --env)\"")
    add_json_flag(shown)
    args = p.parse_args(argv)
    state_dir = Path(args.dir).resolve() if args.dir else default_state_dir()
    statuses = stack_status(state_dir)
    if args.json:
        data = status_data(state_dir, statuses)
        print(json.dumps(data, indent=2))
        return 0 if data["healthy"] else 1
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
    from amnet.logs import setup

    setup()
    sys.exit(main_up())
