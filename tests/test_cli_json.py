"""Scripting the ``amnet`` command: ``--json`` on the commands that print a table (one JSON document on
stdout, diagnostics on stderr) and the exit statuses at the end of every ``--help``."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest

from amnet.cli import COMMANDS, EXIT_STATUSES, main
from tests.data.test_validate import mixed_dataset
from tests.pipeline.test_submit_fake_kfp_server import FakeKfpServer, kfp_env  # noqa: F401 (a fixture)


def test_every_help_ends_with_the_exit_statuses():
    for words in COMMANDS:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
            main([*words, "--help"])
        assert done.value.code in (0, None), words
        assert out.getvalue().endswith(EXIT_STATUSES), words
    for code in ("0", "1", "2", "3", "4", "130"):
        assert f"\n  {code:<3}  " in EXIT_STATUSES


def test_the_command_list_ends_with_the_exit_statuses(capsys):
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.endswith(EXIT_STATUSES + "\n")
    assert main(["data", "--help"]) == 0
    assert capsys.readouterr().out.endswith(EXIT_STATUSES + "\n")


# ------------------------------------------------------------------------------------ data validate


def test_data_validate_json(tmp_path, capsys):
    root = mixed_dataset(tmp_path)
    assert main(["data", "validate", root, "--no-progress", "--max-quarantine-fraction", "0.5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["rows_in"], data["kept"], data["quarantined"], data["passed"]) == (10, 8, 2, True)
    assert data["quarantined_fraction"] == pytest.approx(0.2)
    assert data["reasons"] == {"missing image file": 1, "unknown value 'teal' for attribute 'color'": 1}


def test_data_validate_json_over_the_limit_exits_1_with_the_reason(tmp_path, capsys):
    root = mixed_dataset(tmp_path)
    assert main(["data", "validate", root, "--no-progress", "--json"]) == 1
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["passed"] is False and "over the limit of 5.0%" in data["error"]
    assert "over the limit" in err


# -------------------------------------------------------------------------------------- stack status


def test_stack_status_json_without_a_stack_exits_1(tmp_path, capsys):
    assert main(["stack", "status", "--dir", str(tmp_path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {"state_dir": str(tmp_path.resolve()), "healthy": False,
                                                   "services": {}}


def test_stack_status_env_and_json_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["stack", "status", "--dir", str(tmp_path), "--json", "--env"])
    assert done.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_stack_json_of_a_running_stack_holds_no_secret(mlflow_server):
    """Through the console entry point, as a script calls it: stdout parses as JSON, secrets stay out."""
    for command in (["status"], ["up", "--bucket", mlflow_server.bucket]):
        done = subprocess.run([sys.executable, "-P", "-m", "amnet.cli", "stack", *command, "--dir",
                               str(mlflow_server.state_dir), "--json"], capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        assert data["healthy"] is True and set(data["services"]) == {"seaweed", "mlflow"}
        assert data["services"]["mlflow"]["endpoint"] == mlflow_server.tracking_uri
        assert all(s["running"] and s["pid"] for s in data["services"].values())
        assert mlflow_server.env["AWS_SECRET_ACCESS_KEY"] not in done.stdout
    assert data["bucket"] == mlflow_server.bucket and data["started"] == []  # `up` of a running stack


# -------------------------------------------------------------------------- pipeline submit, schedule


def test_pipeline_submit_json(kfp_env, capsys):  # noqa: F811 (the fixture)
    with FakeKfpServer() as server:
        assert main(["pipeline", "submit", "--host", server.url, "--set", "dataset=s3://amnet/ds", "--no-gpu",
                     "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run_id"] == "run-1" and data["url"] == f"{server.url}/#/runs/details/run-1"
    assert data["experiment"] == "amnet" and data["pipeline_version"]


def test_pipeline_submit_wait_json_gives_the_final_state(kfp_env, monkeypatch, capsys):  # noqa: F811
    from amnet_pipeline import cli

    monkeypatch.setattr(cli, "POLL_SECONDS", 0.01)
    with FakeKfpServer(run_states=["RUNNING", "FAILED"]) as server:
        assert main(["pipeline", "submit", "--host", server.url, "--set", "dataset=s3://amnet/ds", "--no-gpu",
                     "--wait", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert (data["run_id"], data["state"], data["ended"]) == ("run-1", "FAILED", True)


def test_pipeline_schedule_json(kfp_env, capsys):  # noqa: F811
    with FakeKfpServer() as server:
        for _ in range(2):
            assert main(["pipeline", "schedule", "--host", server.url, "--cron", "0 0 3 * * 0", "--name", "weekly",
                         "--set", "dataset=s3://amnet/ds", "--no-gpu", "--json"]) == 0
    first, second = (json.loads(doc) for doc in capsys.readouterr().out.replace("}\n{", "}\n\x00{").split("\x00"))
    assert first["recurring_run_id"].startswith("rr-") and first["replaced"] == []
    assert second["replaced"] == [first["recurring_run_id"]] and second["cron"] == "0 0 3 * * 0"


# ------------------------------------------------------------------------------------ amnet step ...


def test_a_stage_prints_its_result_as_json(trained_chain, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["step", "prototypes", "--split", str(trained_chain.split), "--attr-model", str(trained_chain.attr),
            "--quiet"]
    assert main([*args, "--out", str(tmp_path / "json"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert isinstance(result, dict) and result
    assert main([*args, "--out", str(tmp_path / "table")]) == 0  # the next command line prints a table again
    table = capsys.readouterr().out
    assert not table.lstrip().startswith("{") and all(key in table for key in result)
