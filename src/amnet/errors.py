"""User-facing errors: one clear line that names the input and what to do, never a traceback.

Exit statuses of the ``amnet`` command (:func:`exit_code` maps an error to its status):

====  =========================================================================================
0     success
1     the run or command failed (a pipeline run that ended FAILED, a failed stage, a timeout)
2     usage: an unknown command or option, a missing argument (argparse)
3     bad input or settings (:class:`AmnetError`, :class:`ConfigError`, :class:`DatasetError`)
4     an outside service is unreachable (:class:`ServiceUnreachable`: MLflow, S3, Kubeflow Pipelines)
130   interrupted (Ctrl-C)
====  =========================================================================================
"""

from __future__ import annotations

import socket
import sys
import urllib.error

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_UNREACHABLE = 4
EXIT_INTERRUPTED = 130


class AmnetError(Exception):
    """An error caused by input or configuration; the CLI prints it as one line and exits 3."""


class DatasetError(AmnetError):
    """A dataset cannot be read at all (no manifest, wrong columns, empty...)."""


class ConfigError(AmnetError):
    """A configuration value is out of range or unknown."""


class ServiceUnreachable(AmnetError):
    """An outside service (MLflow, S3, a Kubeflow Pipelines API server) does not answer; exit 4."""


class RunFailed(AmnetError):
    """A pipeline run or stage ran and failed (its logs say why); exit 1."""


# connection-level failures of the clients amnet uses, by module (checked only when already imported)
_CONNECTION_ERRORS = {
    "botocore.exceptions": ("ConnectionError", "HTTPClientError"),  # no connection, a timeout, a dropped one
    "urllib3.exceptions": ("MaxRetryError", "NewConnectionError", "ConnectTimeoutError", "ProtocolError"),
    "requests.exceptions": ("ConnectionError", "ConnectTimeout"),
}


GATEWAY_STATUSES = (502, 503, 504)  # a proxy in front of the service answered that the service did not


def is_connection_error(exc: BaseException) -> bool:
    """``exc`` says a service could not be reached (refused, unresolvable, timed out, dropped, a gateway
    error), as opposed to a service that answered with an error or a TLS setting that is wrong."""
    if "SSLError" in {cls.__name__ for cls in type(exc).__mro__}:
        return False  # certificates: a setting to fix, not an outage
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in GATEWAY_STATUSES
    status = getattr(exc, "response", None)
    if isinstance(status, dict):  # botocore ClientError: the HTTP status of the answer
        return status.get("ResponseMetadata", {}).get("HTTPStatusCode") in GATEWAY_STATUSES
    if isinstance(exc, urllib.error.URLError):
        return isinstance(exc.reason, (ConnectionError, TimeoutError, socket.gaierror))
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)):
        return True
    for module, names in _CONNECTION_ERRORS.items():
        loaded = sys.modules.get(module)
        classes = tuple(getattr(loaded, name) for name in names if hasattr(loaded, name)) if loaded else ()
        if classes and isinstance(exc, classes):
            return True
    return False


def exit_code(exc: AmnetError) -> int:
    """The exit status of a command that ended with ``exc``: 4 when a service was unreachable (a
    :class:`ServiceUnreachable`, or an error raised from a connection failure), 1 for :class:`RunFailed`,
    else 3."""
    if isinstance(exc, ServiceUnreachable):
        return EXIT_UNREACHABLE
    if isinstance(exc, RunFailed):
        return EXIT_FAILED
    cause, seen = exc.__cause__, set()
    while cause is not None and id(cause) not in seen:
        if is_connection_error(cause):
            return EXIT_UNREACHABLE
        seen.add(id(cause))
        cause = cause.__cause__
    return EXIT_BAD_INPUT
