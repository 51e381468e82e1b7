"""The ``amnet`` command's own paths (``amnet.cli.main``): usage and help, ``--version``, an unknown
command, exit statuses by kind of error, Ctrl-C, and a server whose port is taken. Bad input to the
sub-commands is tests/test_cli_bad_input.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import amnet
from amnet import cli
from amnet.cli import COMMANDS, main
from amnet.errors import AmnetError, ConfigError, DatasetError, ServiceUnreachable


def amnet_cmd(*args: str) -> list[str]:
    """The ``amnet`` CLI in a fresh interpreter (``-P``: the working folder never shadows the package)."""
    return [sys.executable, "-P", "-m", "amnet.cli", *args]


def listed_commands(text: str) -> set[str]:
    """The command names a usage text lists (the indented lines under ``commands:``, up to a blank line)."""
    block = text.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    return {line.strip().split("  ")[0] for line in block.splitlines()}


def usage_line(text: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith("usage: amnet ")]
    return line


def test_version_prints_the_package_version(capsys):
    assert main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == amnet.__version__ and err == ""
    done = subprocess.run(amnet_cmd("--version"), capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, amnet.__version__), done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["-h"], []])
def test_help_lists_every_command_on_stdout(argv, capsys):
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.startswith(f"amnet {amnet.__version__}: ")
    assert usage_line(out).endswith(" COMMAND [--help]") and " data " not in usage_line(out)
    assert listed_commands(out) == {" ".join(words) for words in COMMANDS}


def test_help_of_a_command_group_lists_only_that_group(capsys):
    assert main(["data", "--help"]) == 0
    out = capsys.readouterr().out
    assert usage_line(out).endswith(" data COMMAND [--help]")
    assert listed_commands(out) == {" ".join(w) for w in COMMANDS if w[0] == "data"}


@pytest.mark.parametrize(("argv", "group"), [(["frobnicate"], ()), (["data", "frobnicate", "--out", "x"], ("data",))])
def test_unknown_command_is_a_usage_error_naming_it(argv, group, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""  # everything on stderr: a script piping stdout gets nothing half-right
    assert usage_line(err).endswith(f" {' '.join(group) + ' ' if group else ''}COMMAND [--help]")
    assert f"amnet: unknown command {' '.join(argv)!r}" in err
    assert listed_commands(err) == {" ".join(w) for w in COMMANDS if w[: len(group)] == group}
    assert "Traceback" not in err


def test_unknown_command_exits_2_from_the_console_script():
    done = subprocess.run(amnet_cmd("frobnicate"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown command 'frobnicate'" in done.stderr and done.stdout == ""


def interrupted(argv: list[str]) -> int:
    """A fake command: what a command's function does when Ctrl-C arrives while it runs."""
    raise KeyboardInterrupt


def fake_failing(argv: list[str]) -> int:
    """A fake command: ends as ``argv[0]`` says (an error of some kind, or a failed run's status 1)."""
    what = argv[0]
    if what == "failed":
        return 1
    if what == "s3-down":  # how amnet.storage reports S3 that never answered: raised from botocore's error
        from botocore.exceptions import EndpointConnectionError

        try:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        except EndpointConnectionError as exc:
            raise AmnetError("s3://bucket/x: S3 did not answer after retrying") from exc
    if what == "s3-no-bucket":  # S3 answered: the bucket is missing (the user's to fix)
        from botocore.exceptions import ClientError

        answer = {"Error": {"Code": "NoSuchBucket"}, "ResponseMetadata": {"HTTPStatusCode": 404}}
        raise AmnetError("s3://bucket/x: the bucket does not exist") from ClientError(answer, "HeadObject")
    raise {"config": ConfigError, "dataset": DatasetError, "plain": AmnetError,
           "unreachable": ServiceUnreachable}[what](f"fake {what} error")


@pytest.mark.parametrize(("what", "code"), [
    ("failed", 1), ("config", 3), ("dataset", 3), ("plain", 3), ("s3-no-bucket", 3), ("unreachable", 4),
    ("s3-down", 4),
])
def test_exit_status_of_a_fake_command_by_kind_of_error(what, code, monkeypatch, capsys):
    """0 ok, 1 failed, 2 usage, 3 bad input or settings, 4 an outside service unreachable, 130 Ctrl-C."""
    monkeypatch.setitem(COMMANDS, ("data", "synth"), (f"{__name__}:fake_failing", "fails on purpose"))
    assert cli.main(["data", "synth", what]) == code
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    if code != 1:
        assert len(err.strip().splitlines()) == 1 and err.startswith("amnet data synth: error: "), err


def test_ctrl_c_in_a_fake_command_exits_130_with_one_line(monkeypatch, capsys):
    monkeypatch.setitem(COMMANDS, ("data", "synth"), (f"{__name__}:interrupted", "raises KeyboardInterrupt"))
    assert cli.main(["data", "synth", "--out", "x", "--num-images", "5"]) == 130
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == ["interrupted"] and out == ""


def test_sigint_during_synth_exits_130_without_a_traceback(tmp_path):
    """A real Ctrl-C (SIGINT to the process) while ``amnet data synth`` renders 100,000 images."""
    out = tmp_path / "synth"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    proc = subprocess.Popen(amnet_cmd("data", "synth", "--out", str(out), "--num-images", "100000",
                                      "--image-size", "32", "--no-progress"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a shell's background job (CI) starts with SIGINT ignored, and Python then installs
                            # no KeyboardInterrupt handler: give the command the default, as a terminal would
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and any(out.rglob("*.jpg"))):  # rendering has started
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "synth wrote no image in 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert stderr.strip().splitlines()[-1] == "interrupted" and "Traceback" not in stderr, stderr
    assert not (out / "manifest.parquet").exists()  # it stopped: no finished dataset was claimed


def test_serve_on_a_taken_port_is_one_clear_error(trained_chain, monkeypatch, capsys):
    """``amnet serve --port P`` with P already listening: exit 3 (a setting to change), one line naming
    host:port and ``--port``."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--model", str(trained_chain.model), "--gallery", str(trained_chain.split),
                     "--port", str(port), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3, err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith("amnet serve: error: cannot listen on ")
    assert f"127.0.0.1:{port}" in errors[0] and "--port" in errors[0], errors[0]
