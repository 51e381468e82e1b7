"""Diagnostics through the standard ``logging`` module, set up once per process at an entry point.

Modules log their progress notes, warnings and timings with ``log = logging.getLogger(__name__)``;
only a command's result (a table, JSON, the value asked for) is printed to stdout. The entry points
call :func:`setup`: the ``amnet`` command (``-v`` / ``-q``), ``python -m amnet.<module>``, and the
ranks the torchrun launcher starts. It puts one handler on stderr for the ``amnet``,
``amnet_pipeline`` and ``amnet_components`` loggers, at ``--verbose`` / ``--quiet``'s level, else
``$AMNET_LOG_LEVEL``, else INFO; other libraries' loggers are left as they are.

On an interactive terminal a line is the bare message (``warning: ...`` for warnings and worse); in a
pipe, a file, a pod or a KFP task every line carries its time, level and logger. Inside a KFP
component nothing is set up here: kfp's executor configures the root logger (INFO, the task's
stdout) and amnet's records propagate to it.
"""

from __future__ import annotations

import logging
import os
import sys

LEVEL_ENV = "AMNET_LOG_LEVEL"
LOGGERS = ("amnet", "amnet_pipeline", "amnet_components")
FULL_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# set in every Kubernetes pod / by the KFP launcher in a task's pod
POD_ENV = ("KUBERNETES_SERVICE_HOST", "KFP_POD_NAME")
_HANDLER_NAME = "amnet"


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a redirect, pytest's capture), as the
    standard library's last-resort handler does."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr


class _TerminalFormatter(logging.Formatter):
    """The message alone; ``warning: `` / ``error: `` in front from WARNING up."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def parse_level(value: int | str) -> int:
    """``"debug"``, ``"INFO"``, ``"30"`` or ``logging.WARNING`` -> the level number; ValueError if none."""
    if isinstance(value, int) or str(value).strip().isdigit():
        return int(value)
    level = logging.getLevelName(str(value).strip().upper())
    if not isinstance(level, int):
        raise ValueError(f"not a log level: {value!r} (DEBUG, INFO, WARNING, ERROR)")
    return level


def interactive() -> bool:
    """stderr is a terminal and this is not a pod: the short format."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not any(os.environ.get(name) for name in POD_ENV)


def _installed() -> logging.Handler | None:
    return next((h for h in logging.getLogger(LOGGERS[0]).handlers if h.get_name() == _HANDLER_NAME), None)


def setup(level: int | str | None = None, *, timestamps: bool | None = None) -> None:
    """Send amnet's log records to stderr; a later call only sets the level and format again.

    ``level``: a level name or number; None: ``$AMNET_LOG_LEVEL``, else INFO (a bad value there is
    reported and INFO used). ``timestamps``: the full format (time, level, logger); None: unless
    :func:`interactive`."""
    bad_env = ""
    if level is None:
        try:
            level = parse_level(os.environ.get(LEVEL_ENV) or logging.INFO)
        except ValueError:
            bad_env, level = os.environ.get(LEVEL_ENV, ""), logging.INFO
    handler = _installed()
    if handler is None:
        handler = _Stderr()
        handler.set_name(_HANDLER_NAME)
        for name in LOGGERS:
            logging.getLogger(name).addHandler(handler)
    full = not interactive() if timestamps is None else timestamps
    handler.setFormatter(logging.Formatter(FULL_FORMAT) if full else _TerminalFormatter("%(message)s"))
    for name in LOGGERS:
        logging.getLogger(name).setLevel(parse_level(level))
    if bad_env:
        logging.getLogger(__name__).warning("%s=%r is not a log level; using INFO", LEVEL_ENV, bad_env)


def ensure() -> None:
    """:func:`setup` unless it already ran in this process (a library entry that must show its lines)."""
    if _installed() is None:
        setup()


def timestamped() -> None:
    """Every line with its time, level and logger from now on, on a terminal too (a long-running
    service's log, ``amnet serve``); sets amnet's logging up first when nothing has."""
    ensure()
    _installed().setFormatter(logging.Formatter(FULL_FORMAT))
