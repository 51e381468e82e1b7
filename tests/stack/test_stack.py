"""``amnet stack up|status|down`` with the real servers, and the safety rules around the pids it keeps."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from amnet import cli
from amnet.errors import AmnetError
from amnet.stack import processes, seaweedfs, services, state


def _gone(pid: int, kill=os.kill) -> bool:
    """Whether no process (``kill=os.killpg``: no process group) ``pid`` exists."""
    try:
        kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _group_gone(pgid: int) -> bool:
    return _gone(pgid, os.killpg)


def _parse_exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.strip().splitlines():
        assert line.startswith("export "), line
        key, _, value = line[len("export "):].partition("=")
        env[key] = shlex.split(value)[0]
    return env


def _needs_tools():
    pytest.importorskip("mlflow")
    pytest.importorskip("boto3")
    try:
        seaweedfs.weed_binary()
    except AmnetError as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
def test_cli_up_status_idempotent_up_down(tmp_path, monkeypatch, capsys):
    _needs_tools()
    state = tmp_path / "stack"
    monkeypatch.setenv("AMNET_STACK_DIR", str(state))
    try:
        assert cli.main(["stack", "up"]) == 0
        assert "started seaweed, mlflow" in capsys.readouterr().err  # logged; stdout: the endpoints
        saved = json.loads((state / "stack.json").read_text())
        pids = [saved["seaweed"]["pid"], saved["mlflow"]["pid"]]
        for name in ("credentials.json", "s3.json"):
            assert stat.S_IMODE((state / name).stat().st_mode) == 0o600

        assert cli.main(["stack", "status"]) == 0
        assert capsys.readouterr().out.count("healthy") == 2

        assert cli.main(["stack", "up"]) == 0
        assert "already running" in capsys.readouterr().err
        again = json.loads((state / "stack.json").read_text())
        assert [again["seaweed"]["pid"], again["mlflow"]["pid"]] == pids

        assert cli.main(["stack", "status", "--env"]) == 0
        env = _parse_exports(capsys.readouterr().out)
        assert env == services.stack_env(state)
        assert set(env) == {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                            "MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL"}
        with urllib.request.urlopen(env["MLFLOW_TRACKING_URI"] + "/health", timeout=10) as resp:
            assert resp.read().strip() == b"OK"
        secret = env["AWS_SECRET_ACCESS_KEY"]
        for name in ("stack.json", "seaweed.log", "mlflow.log"):
            assert secret not in (state / name).read_text(errors="replace"), name

        assert cli.main(["stack", "down"]) == 0
        assert "stopped mlflow, seaweed" in capsys.readouterr().err
        assert all(_gone(pid) and _group_gone(pid) for pid in pids)

        assert cli.main(["stack", "status"]) == 1
        assert "stopped" in capsys.readouterr().out
        assert cli.main(["stack", "status", "--env"]) == 3
        assert "not running; start it with `amnet stack up`" in capsys.readouterr().err
        assert cli.main(["stack", "down"]) == 0
        assert "nothing running" in capsys.readouterr().err
    finally:
        services.stop_stack(state)


@pytest.mark.slow
def test_seaweed_restart_keeps_data_and_ports(tmp_path):
    _needs_tools()
    state = tmp_path / "s3only"
    try:
        first = services.start_seaweed(state, bucket="keep")
        s3 = _client(services.stack_env(state))
        s3.put_object(Bucket="keep", Key="a/b.txt", Body=b"persisted")
        assert services.stop_stack(state) == ["seaweed"]

        second = services.start_seaweed(state, bucket="keep")
        assert second.s3_endpoint == first.s3_endpoint  # saved ports are reused: exported env stays valid
        stored = _client(services.stack_env(state)).get_object(Bucket="keep", Key="a/b.txt")["Body"].read()
        assert stored == b"persisted"
        assert services.stack_status(state)["seaweed"].healthy
        assert "mlflow" not in services.stack_status(state)
    finally:
        services.stop_stack(state)


def _client(env: dict[str, str]):
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


# ---------------------------------------------------------------------------- no servers needed below


def _spawn_group(script: str, log: Path) -> subprocess.Popen:
    """Start ``script`` the way the stack starts its servers (own process group, reaped by
    amnet.stack.processes)."""
    pid = processes._spawn(["/bin/sh", "-c", script], log)
    deadline = time.monotonic() + 10
    while script not in processes._cmdline(pid) and time.monotonic() < deadline:  # exec() has not happened yet
        time.sleep(0.01)
    return processes._CHILDREN[pid]


def _fake_state(state: Path, pid: int, marker: str) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "stack.json").write_text(json.dumps(
        {"seaweed": {"pid": pid, "marker": marker, "ports": {"s3": 1}, "log": str(state / "seaweed.log")}}))


def test_down_leaves_a_fake_server_process_whose_cmdline_is_not_ours(tmp_path):
    proc = _spawn_group("sleep 30", tmp_path / "sleep.log")
    try:
        _fake_state(tmp_path, proc.pid, marker=f"-dir={tmp_path}/seaweed")  # pid reused by someone else
        assert services.stop_stack(tmp_path) == []
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_down_stops_the_whole_process_group_of_a_fake_server(tmp_path):
    script = "sleep 31 & sleep 31; wait"
    proc = _spawn_group(script, tmp_path / "sleep.log")
    try:
        _fake_state(tmp_path, proc.pid, marker=script)
        assert services.stop_stack(tmp_path) == ["seaweed"]
        assert proc.poll() is not None
        assert _group_gone(proc.pid)
        assert json.loads((tmp_path / "stack.json").read_text())["seaweed"]["pid"] is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _fake_weed(tmp_path: Path, body: str) -> str:
    path = tmp_path / "weed"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def _fake_weed_fails_to_start(tmp_path: Path, monkeypatch, body: str, timeout: float, match: str) -> Path:
    """``start_seaweed`` with ``body`` as the weed binary, in ``tmp_path/stack``: fails with ``match``; the
    state folder."""
    pytest.importorskip("boto3")
    monkeypatch.setenv("AMNET_WEED", _fake_weed(tmp_path, body))
    state = tmp_path / "stack"
    with pytest.raises(AmnetError, match=match):
        services.start_seaweed(state, timeout=timeout)
    return state


def test_a_fake_server_that_dies_at_start_is_reported_with_its_log(tmp_path, monkeypatch):
    state = _fake_weed_fails_to_start(tmp_path, monkeypatch, "echo 'listen tcp: address already in use'; exit 3", 30,
                                      r"SeaweedFS exited with code 3 while starting; see .*seaweed\.log.*in use")
    assert json.loads((state / "stack.json").read_text())["seaweed"]["pid"] is None


def test_a_fake_server_that_never_answers_is_stopped_after_the_timeout(tmp_path, monkeypatch):
    state = _fake_weed_fails_to_start(tmp_path, monkeypatch, "exec sleep 60", 1,
                                      r"SeaweedFS did not become ready within 1 s; see .*seaweed\.log")
    saved = json.loads((state / "stack.json").read_text())
    assert saved["seaweed"]["pid"] is None
    assert services.stack_status(state)["seaweed"].running is False


def test_env_without_a_stack_is_a_clear_error(tmp_path):
    with pytest.raises(AmnetError, match="no local stack in .*amnet stack up"):
        services.stack_env(tmp_path / "nothing")


def test_mlflow_needs_seaweed(tmp_path):
    with pytest.raises(AmnetError, match="needs seaweed=True"):
        services.start_stack(tmp_path, seaweed=False, mlflow=True)


@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["stack", command, "--help"])
    assert exc.value.code == 0
    assert f"amnet stack {command}" in capsys.readouterr().out


def test_default_state_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMNET_STACK_DIR", str(tmp_path / "x"))
    assert state.default_state_dir() == (tmp_path / "x").resolve()
    monkeypatch.delenv("AMNET_STACK_DIR")
    monkeypatch.chdir(tmp_path)
    assert state.default_state_dir() == (tmp_path / ".amnet" / "stack").resolve()


def test_cli_module_runs_standalone():
    out = subprocess.run([sys.executable, "-m", "amnet.cli", "stack", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "stack up" in out.stdout


def test_the_server_without_the_full_mlflow_package_is_a_clear_error(monkeypatch):
    """Only the client (mlflow-skinny) installed: `stack up` names the extra to install."""
    import importlib.metadata

    from amnet.errors import AmnetError
    from amnet.stack import mlflow_server

    real = importlib.metadata.version

    def version(name: str) -> str:
        if name == "mlflow":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(AmnetError, match=r"amnet\[stack\]"):
        mlflow_server.check_server_package()
    monkeypatch.setattr(importlib.metadata, "version", real)
    mlflow_server.check_server_package()  # the full package (make install's stack extra) passes
