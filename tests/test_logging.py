"""Diagnostics go through ``logging`` to stderr; stdout keeps a command's result. ``amnet -v`` / ``-q``
(before the command words) and ``$AMNET_LOG_LEVEL`` set the level (``amnet.logs``)."""

from __future__ import annotations

import logging

import pytest

from amnet import cli, logs


@pytest.fixture(autouse=True)
def restore_levels(monkeypatch):
    monkeypatch.delenv(logs.LEVEL_ENV, raising=False)
    saved = {name: logging.getLogger(name).level for name in logs.LOGGERS}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def synth(tmp_path, *flags: str) -> int:
    return cli.main([*flags, "data", "synth", "--out", str(tmp_path / "d"), "--num-images", "2", "--image-size",
                     "32", "--no-progress"])


def test_help_documents_the_global_flags(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: amnet [-v | -q] COMMAND" in out and "-v, --verbose" in out and "-q, --quiet" in out
    assert logs.LEVEL_ENV in out


def test_a_note_goes_to_stderr_with_time_level_and_logger_off_a_terminal(tmp_path, capsys):
    assert synth(tmp_path) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert " INFO amnet.data.synth: wrote 2 images to " in line and line[:4].isdigit()


@pytest.mark.parametrize("flags,env,shown", [
    (["-q"], None, False),
    (["--quiet"], None, False),
    ([], "WARNING", False),
    ([], "info", True),
    (["-v"], "warning", True),  # the flag wins over the environment
    (["--verbose"], None, True),
])
def test_flags_and_environment_set_the_level(tmp_path, capsys, monkeypatch, flags, env, shown):
    if env:
        monkeypatch.setenv(logs.LEVEL_ENV, env)
    assert synth(tmp_path, *flags) == 0
    assert ("wrote 2 images" in capsys.readouterr().err) is shown


def test_verbose_shows_debug_records(capsys):
    assert cli.main(["-v", "--version"]) == 0
    logging.getLogger("amnet.test").debug("a debug line")
    assert cli.main(["--version"]) == 0  # back to INFO: the next command's own flags decide
    logging.getLogger("amnet.test").debug("hidden")
    err = capsys.readouterr().err
    assert "a debug line" in err and "hidden" not in err


def test_a_bad_level_in_the_environment_is_reported_and_info_used(capsys, monkeypatch):
    monkeypatch.setenv(logs.LEVEL_ENV, "loud")
    assert cli.main(["--version"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() and "AMNET_LOG_LEVEL='loud' is not a log level; using INFO" in captured.err
    assert logging.getLogger("amnet").level == logging.INFO


def test_setup_twice_keeps_one_handler_and_the_terminal_format_is_the_message():
    logs.setup()
    logs.setup(logging.DEBUG, timestamps=False)
    handlers = [h for h in logging.getLogger("amnet").handlers if h.get_name() == "amnet"]
    assert len(handlers) == 1 and logging.getLogger("amnet_pipeline").handlers.count(handlers[0]) == 1
    record = logging.LogRecord("amnet.x", logging.WARNING, __file__, 1, "S3 not answering", None, None)
    assert handlers[0].format(record) == "warning: S3 not answering"
    logs.setup(logging.INFO, timestamps=True)
    assert handlers[0].format(record).endswith(" WARNING amnet.x: S3 not answering")


def test_parse_level():
    assert logs.parse_level("debug") == logging.DEBUG and logs.parse_level("30") == logging.WARNING
    assert logs.parse_level(logging.ERROR) == logging.ERROR
    with pytest.raises(ValueError, match="not a log level"):
        logs.parse_level("chatty")
