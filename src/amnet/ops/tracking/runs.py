"""MLflow tracking for the pipeline: one parent run per pipeline run, one nested run per stage.

Tracking is on when ``MLFLOW_TRACKING_URI`` is set; otherwise ``get_tracker()`` returns a
``NullTracker`` and the stages run exactly the same without MLflow. ``mlflow`` is imported only
inside the functions that talk to a server, so this module imports on a bare GPU node.

Inside Kubeflow Pipelines with its MLflow integration, KFP creates the nested run of each task and
hands it over in ``MLFLOW_RUN_ID``; a stage then logs into that run and leaves its lifecycle to KFP.

Params are the stage's resolved config, flattened; ``safe_params`` drops anything that looks like a
credential, by key name or because its value is one of the credentials in the environment.

Retries (KFP ``set_retry``, or a rerun by hand) do not add runs: a stage run may carry a content key
(tag ``amnet.run_key``: stage, parent run, config, input and output URIs, see ``run_key``). A stage
that finds a FAILED, KILLED or still RUNNING run with its key (the attempt that was killed) logs into
that run again and ends it; one that finds a FINISHED run with its key logs nothing new
(``finished_run``): its outputs are the same, because every stage is idempotent.

MLflow going away mid-stage does not end a long training: a stage run's metrics (the training loop's
per-epoch callback) are buffered in memory when the server does not answer (a connection error, a
timeout, a 5xx) and written, with their steps and timestamps, by a later call once it answers again;
the stage's other calls (its end, texts, artifacts, tags) wait for the server with exponential
backoff, up to ``$AMNET_TRACKING_OUTAGE_S`` (600 s) per outage, then fail with one line
(:class:`ServiceUnreachable`, exit 4). Within a stage, MLflow's own HTTP retries are cut to one retry
and a 60 s timeout per request (``MLFLOW_HTTP_BOUNDS``, unless set in the environment), so no single
call hangs for minutes and the waiting is this module's.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import numbers
import os
import re
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from amnet.config import flatten
from amnet.errors import GATEWAY_STATUSES, AmnetError, ConfigError, ServiceUnreachable, is_connection_error

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "amnet"
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TAG_RUN_KEY = "amnet.run_key"  # content key of a stage run: a retry with the same key reuses the run
TAG_DECISION = "amnet.decision"  # the registry gate's verdict, on the model version and the pipeline's parent run

# Words that mark a key as a credential (matched against the key's words, camelCase split).
SECRET_WORDS = frozenset({"secret", "secrets", "password", "passwd", "pwd", "token", "credential",
                          "credentials", "key", "apikey", "accesskey", "secretkey", "privatekey", "auth"})
# Fragments that mark a key even inside a longer word ("dbPassword2", "SECRETKEY").
SECRET_FRAGMENTS = ("secret", "password", "passwd", "apikey", "accesskey", "privatekey")
# Environment variables whose values must never appear in a param.
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN",
                   "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")

MAX_PARAM_VALUE = 6000  # MLflow's limit
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
# An evaluation's curves (metrics.json key -> step-metric name; step = K): the MLflow chart view draws one
# line per run, so variants and pipeline runs overlay. Under ``curve/``: the UI groups them in one section.
CURVE_METRICS = (("curves", "top_k_accuracy"), ("recall_curves", "exact_recall"))
CURVE_SECTION = "curve/"
CHANGES_PREFIX = {"1": "", "2": "two_", "3": "three_"}  # number of changed attributes -> metric prefix
_INVALID_NAME_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")

OUTAGE_ENV = "AMNET_TRACKING_OUTAGE_S"  # how long a stage waits for an unreachable MLflow server
DEFAULT_OUTAGE_S = 600.0
MAX_BUFFERED_METRICS = 100_000  # metric values kept while MLflow is away (an epoch's row is ~10)
FIRST_RETRY_S = 1.0  # backoff between tries while MLflow is away: 1, 2, 4 ... up to MAX_RETRY_GAP_S
MAX_RETRY_GAP_S = 60.0
# MLflow's own retries per HTTP request, within a stage (its defaults, 7 retries with backoff up to 120 s
# and a 120 s timeout, can hold one call for many minutes); an explicit environment setting wins.
MLFLOW_HTTP_BOUNDS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}
T = TypeVar("T")


# ------------------------------------------------------------------------------------------ switches


def tracking_enabled() -> bool:
    """Tracking is on exactly when ``MLFLOW_TRACKING_URI`` is set (and not empty)."""
    return bool(os.environ.get("MLFLOW_TRACKING_URI"))


def _unreachable(uri: str, why: str) -> ServiceUnreachable:
    return ServiceUnreachable(f"MLflow tracking server at {uri} is not reachable ({why}); start it with "
                      "`amnet stack up` or unset MLFLOW_TRACKING_URI")


def check_tracking_server(uri: str | None = None, timeout: float = 10) -> None:
    """Fail fast, before any work, when the tracking server does not answer ``GET /health``.

    A stage would otherwise train for an hour and then lose its metrics (the MLflow client retries
    for minutes). Non-HTTP URIs (a local ``file:`` or ``sqlite:`` store) need no server.
    """
    uri = (uri or os.environ.get("MLFLOW_TRACKING_URI") or "").rstrip("/")
    if not uri.startswith(("http://", "https://")):
        return
    deadline = time.monotonic() + timeout
    why = "no answer"
    for attempt in range(3):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=left) as resp:
                if resp.status == 200:
                    return
                why = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):  # an authenticating proxy answered: the server is there
                return
            why = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            why = str(getattr(exc, "reason", exc))
        if attempt < 2:
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    raise _unreachable(uri, why)


# ------------------------------------------------------------------------------------------- outages


def outage_seconds() -> float:
    """How long a stage waits for an unreachable MLflow server (``$AMNET_TRACKING_OUTAGE_S``, default 600).

    Read when a stage run starts, so a bad value fails before any training, not after it."""
    raw = os.environ.get(OUTAGE_ENV, "").strip()
    if not raw:
        return DEFAULT_OUTAGE_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{OUTAGE_ENV}={raw!r} is not a number of seconds >= 0 (how long a stage waits for "
                          f"an unreachable MLflow server; default {DEFAULT_OUTAGE_S:g})")
    return value


@contextlib.contextmanager
def http_bounds() -> Iterator[None]:
    """MLflow's per-request retries and timeout bounded (``MLFLOW_HTTP_BOUNDS``) while the block runs, so
    one call to a server that is away returns in seconds and this module's backoff does the waiting.
    Variables already set in the environment are left as they are."""
    added = {k: v for k, v in MLFLOW_HTTP_BOUNDS.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key, value in added.items():
            if os.environ.get(key) == value:
                del os.environ[key]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it was raised from or during (MLflow wraps request errors without ``from``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """``exc`` says the MLflow server is away or overloaded (no connection, a timeout, a 5xx answer after
    MLflow's own retries), not that the request itself is wrong: worth trying again later."""
    for err in _chain(exc):
        if is_connection_error(err):
            return True
        names = {cls.__name__ for cls in type(err).__mro__}
        if names & {"RetryError", "Timeout", "ConnectionError"} and type(err).__module__.startswith("requests"):
            return True
        if "MlflowException" in names:
            text = str(err)
            if "failed with timeout exception" in text:
                return True
            status = re.search(r"failed with error code (\d{3})", text)
            if status and int(status.group(1)) in (500, *GATEWAY_STATUSES):
                return True
            if "RestException" in names and err.get_http_status_code() in (500, *GATEWAY_STATUSES):
                return True
    return False


_REASONS = ((r"too many (\d{3}) error responses|error code (\d{3})", "HTTP {}"),
            (r"[Cc]onnection refused", "connection refused"),
            (r"timed out|[Tt]imeout", "timed out"),
            (r"Name or service not known|nodename nor servname|Temporary failure in name resolution",
             "host name not resolved"))


def _reason(exc: BaseException) -> str:
    """A few words for why a call failed ("connection refused", "HTTP 503"...), for the one-line error."""
    text = " ".join(str(e) for e in _chain(exc))
    for pattern, label in _REASONS:
        found = re.search(pattern, text)
        if found:
            return label.format(next((g for g in found.groups() if g), ""))
    return type(exc).__name__


class Outage:
    """Retry state of one run's tracking calls while the MLflow server is away.

    ``wait(fn)`` calls ``fn`` until it works, with exponential backoff, for up to ``bound_s`` seconds,
    then gives up for good (later calls fail at once: the stage is ending anyway) with one
    :class:`ServiceUnreachable` line. ``failed`` / ``due`` / ``recovered`` let a caller that must not
    block (the training loop's metrics) try at most once per backoff interval."""

    def __init__(self, uri: str, label: str, bound_s: float, out: str = ""):
        self.uri, self.label, self.bound_s, self.out = uri, label, bound_s, out
        self.since: float | None = None  # time.monotonic() of the first failure of the current outage
        self.gap = FIRST_RETRY_S
        self.next_try = 0.0
        self.gave_up = False
        self.last_error: BaseException | None = None
        self.caught_up = 0  # metric values written from the buffer since the outage began

    def due(self) -> bool:
        """True unless a try failed less than the backoff interval ago."""
        return self.since is None or time.monotonic() >= self.next_try

    def failed(self, exc: BaseException, pending: int = 0) -> None:
        """A transient failure: start (and announce) the outage, or push the next try back."""
        now = time.monotonic()
        self.last_error = exc
        if self.since is None:
            self.since, self.gap = now, FIRST_RETRY_S
            kept = f"{pending} metric value(s) kept in memory; " if pending else ""
            log.warning("MLflow at %s not answering while logging %s (%s); %sretrying with backoff, waiting up "
                        "to %s=%g s where the stage needs it", self.uri, self.label, _reason(exc), kept,
                        OUTAGE_ENV, self.bound_s)
        else:
            self.gap = min(self.gap * 2, MAX_RETRY_GAP_S)
        self.next_try = now + self.gap

    def recovered(self) -> None:
        """A call worked: end the outage, if there was one."""
        if self.since is not None:
            log.info("MLflow at %s answers again after %.0f s; logged the %d metric value(s) of %s kept "
                     "meanwhile", self.uri, time.monotonic() - self.since, self.caught_up, self.label)
        self.since, self.gap, self.next_try, self.caught_up = None, FIRST_RETRY_S, 0.0, 0

    def error(self) -> ServiceUnreachable:
        """The one line a stage fails with once it has given up waiting."""
        away = time.monotonic() - self.since if self.since is not None else self.bound_s
        where = f" in {self.out}" if self.out else ""
        why = _reason(self.last_error) if self.last_error is not None else "no answer"
        return ServiceUnreachable(
            f"MLflow at {self.uri} unreachable for {away:.0f} s while logging {self.label} ({why}; gave up "
            f"after {OUTAGE_ENV}={self.bound_s:g} s); the stage's outputs{where} and training checkpoints "
            "are kept: rerun the stage to log them (it resumes)")

    def wait(self, fn: Callable[[], T]) -> T:
        """``fn()``, tried again while it fails transiently, for up to ``bound_s`` seconds from now."""
        if self.gave_up:
            raise self.error()
        deadline = time.monotonic() + self.bound_s
        while True:
            try:
                result = fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.failed(exc)
                left = deadline - time.monotonic()
                if left <= 0:
                    self.gave_up = True
                    raise self.error() from exc
                time.sleep(min(self.gap, left))
                continue
            self.recovered()
            return result


class RetryingClient:
    """An ``MlflowClient`` whose every call waits out an outage (``Outage.wait``): what a stage's code
    reaches through ``run.client`` (dataset inputs, tags) rides out the same outages as the run."""

    def __init__(self, client: Any, outage: Outage):
        self._client = client
        self._outage = outage

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._outage.wait(lambda: attr(*args, **kwargs))

        return call


def _client_uri(client: Any) -> str:
    """The tracking URI an ``MlflowClient`` talks to (for messages)."""
    uri = getattr(getattr(client, "_tracking_client", None), "tracking_uri", None)
    return str(uri or os.environ.get("MLFLOW_TRACKING_URI") or "the tracking URI")


# ------------------------------------------------------------------------------------------- params


def _key_words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def is_secret_key(key: str) -> bool:
    """True for keys that name a credential: ``aws_secret_access_key``, ``hf_token``, ``apiKey``...

    ``model.feature_dim`` or ``max_tokens`` are not: whole words are matched, not substrings, except
    for the unambiguous fragments in ``SECRET_FRAGMENTS``.
    """
    squashed = re.sub(r"[^a-z0-9]", "", key.lower())
    return any(w in SECRET_WORDS for w in _key_words(key)) or any(f in squashed for f in SECRET_FRAGMENTS)


def _secret_values(env: Mapping[str, str]) -> list[str]:
    return [env[name] for name in SECRET_ENV_VARS if env.get(name)]


def safe_params(params: Mapping[str, Any], allow: tuple[str, ...] = (),
                env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``params`` flattened, without credentials: secret-looking keys (unless listed in ``allow``)
    and any value that equals or contains a credential from the environment (``SECRET_ENV_VARS``)."""
    secrets_ = _secret_values(os.environ if env is None else env)
    out: dict[str, Any] = {}
    for key, value in flatten(params).items():
        if key not in allow and is_secret_key(key):
            continue
        text = str(value)
        if any(s == text or (len(s) >= 8 and s in text) for s in secrets_):
            continue
        out[key] = value
    return out


def _name(key: str) -> str:
    """A metric/param name MLflow accepts (letters, digits, ``_ - . /`` and space)."""
    return _INVALID_NAME_CHARS.sub("_", str(key))[:250]


def _as_float(value: Any) -> float | None:
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalar
        with contextlib.suppress(TypeError, ValueError):
            return float(value.item())
    return None


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def curve_series(payload: Mapping[str, Any], variant: str = "") -> dict[str, list[float]]:
    """An evaluation's curves (``metrics.json``: top-k accuracy and exact-target Recall@K per number of
    changes, K = 1..50) as step-metric series: ``curve/top_k_accuracy``, ``curve/two_exact_recall``, ...;
    with ``variant`` (the parent run holds every variant) ``curve/amnet_top_k_accuracy``, ..."""
    head = f"{CURVE_SECTION}{variant + '_' if variant else ''}"
    out: dict[str, list[float]] = {}
    for key, name in CURVE_METRICS:
        for changes, values in sorted((payload.get(key) or {}).items()):
            prefix = CHANGES_PREFIX.get(str(changes), f"n{changes}_")
            out[f"{head}{prefix}{name}"] = [float(v) for v in values]
    return out


# ---------------------------------------------------------------------------------------------- runs


class RunLogger(Protocol):
    """What a stage logs through (``stage_run`` yields one)."""

    run_id: str | None

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, *, model_id: str | None = None,
                    dataset: tuple[str, str] | None = None) -> None: ...
    def log_series(self, series: Mapping[str, Sequence[float]], first_step: int = 1) -> None: ...
    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_artifact(self, path: str, artifact_path: str | None = None) -> None: ...
    def log_text(self, text: str, name: str) -> None: ...
    def log_dict(self, data: Mapping[str, Any], name: str) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def retrying(self, fn: Callable[[], T]) -> T: ...


class MlflowRun:
    """Logs into one existing MLflow run through ``MlflowClient`` (no global "active run" state).

    Every call rides out an MLflow outage (:class:`Outage`, up to ``outage_s``, default
    :func:`outage_seconds`). ``buffered`` (a stage run, whose ``log_metrics`` is the training loop's
    per-epoch callback): metrics never wait nor raise for an outage; they stay in memory (at most
    ``MAX_BUFFERED_METRICS`` values, oldest dropped first) with their steps and timestamps and are written
    by a later call once the server answers, or by :meth:`flush` (which waits) at the stage's end.
    ``client`` is the same client with its calls made outage-proof (:class:`RetryingClient`)."""

    def __init__(self, client: Any, run_id: str, shared: bool = False, *, buffered: bool = False,
                 label: str = "", out: str = "", uri: str = "", outage_s: float | None = None):
        self._raw = client
        self.run_id = run_id
        self.shared = shared  # a run we did not create (MLFLOW_RUN_ID): it may already hold params
        self.buffered = buffered
        self.outage = Outage(uri or _client_uri(client), label or f"run {run_id}",
                             outage_seconds() if outage_s is None else outage_s, out)
        self.client = RetryingClient(client, self.outage)
        self._pending: deque = deque()  # metrics not yet accepted by the server, oldest first
        self._dropped = 0

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, *, model_id: str | None = None,
                    dataset: tuple[str, str] | None = None) -> None:
        """Numbers (Python, numpy, 0-d tensors; bools count as 0/1); other values are skipped, not errors.

        ``model_id``: the metrics also belong to that logged model (MLflow's Models page lists them, with
        ``dataset`` = (name, digest) of the data they were measured on)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        name, digest = dataset or (None, None)
        items = [Metric(_name(k), value, now, int(step), model_id=model_id, dataset_name=name,
                        dataset_digest=digest, run_id=self.run_id)
                 for k, v in metrics.items() if (value := _as_float(v)) is not None]
        self._log(items)

    def log_series(self, series: Mapping[str, Sequence[float]], first_step: int = 1) -> None:
        """Each series as one step metric: value i at step ``first_step + i`` (a curve over K = 1, 2, ...;
        the chart view draws it as a line). Values that are not finite numbers are left out."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_name(k), value, now, first_step + i) for k, values in series.items()
                 for i, v in enumerate(values) if (value := _as_float(v)) is not None and math.isfinite(value)]
        self._log(items)

    def _log(self, metrics: list) -> None:
        self._pending.extend(metrics)
        overflow = len(self._pending) - MAX_BUFFERED_METRICS
        if overflow > 0:
            for _ in range(overflow):
                self._pending.popleft()
            if not self._dropped:
                log.warning("MLflow away for long: more than %d metric values of %s waiting; dropping the "
                            "oldest", MAX_BUFFERED_METRICS, self.outage.label)
            self._dropped += overflow
        if self.buffered:
            self._try_flush()
        else:
            self.flush()

    def _send(self) -> int:
        """Write the pending metrics (oldest first, ``MAX_METRICS_PER_BATCH`` a request; each batch leaves
        the buffer once accepted); returns how many were written."""
        sent = 0
        while self._pending:
            chunk = [self._pending[i] for i in range(min(MAX_METRICS_PER_BATCH, len(self._pending)))]
            self._raw.log_batch(self.run_id, metrics=chunk)
            for _ in chunk:
                self._pending.popleft()
            sent += len(chunk)
            if self.outage.since is not None:
                self.outage.caught_up += len(chunk)
        return sent

    def _try_flush(self) -> None:
        """One try at writing the pending metrics, unless the last one failed within the backoff interval;
        an outage leaves them pending (never raises for one, never waits)."""
        if not self._pending or self.outage.gave_up or not self.outage.due():
            return
        try:
            self._send()
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.outage.failed(exc, pending=len(self._pending))
            return
        self.outage.recovered()

    @property
    def pending(self) -> int:
        """How many metric values wait for the server."""
        return len(self._pending)

    def flush(self) -> None:
        """Write every pending metric, waiting out an outage (:meth:`Outage.wait`)."""
        if self._pending:
            sent = self.outage.wait(self._send)
            log.debug("logged %d pending metric values of %s", sent, self.outage.label)

    def retrying(self, fn: Callable[[], T]) -> T:
        """``fn()`` (e.g. logging a model through MLflow's fluent API), after the pending metrics, tried
        again while the server is away, up to the outage bound."""
        return self.outage.wait(lambda: (self._send(), fn())[1])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Credential-free params (``safe_params``); in a shared run, keys already set are left alone."""
        from mlflow.entities import Param

        values = {_name(k): str(v)[:MAX_PARAM_VALUE] for k, v in safe_params(params).items()}
        if self.shared and values:
            existing = self.retrying(lambda: self._raw.get_run(self.run_id).data.params)
            for key in [k for k in values if k in existing]:
                if existing[key] != values.pop(key):
                    log.warning("param %s already set in run %s with another value; kept the old one",
                                key, self.run_id)
        items = [Param(k, v) for k, v in values.items()]
        for chunk in _chunks(items, MAX_PARAMS_PER_BATCH):
            self.retrying(lambda chunk=chunk: self._raw.log_batch(self.run_id, params=chunk))

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        """A file, or a whole folder (kept under its own name)."""
        if os.path.isdir(path):
            name = os.path.basename(os.path.normpath(path))
            target = f"{artifact_path}/{name}" if artifact_path else name
            self.retrying(lambda: self._raw.log_artifacts(self.run_id, path, target))
        else:
            self.retrying(lambda: self._raw.log_artifact(self.run_id, path, artifact_path))

    def log_text(self, text: str, name: str) -> None:
        self.retrying(lambda: self._raw.log_text(self.run_id, text, name))

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        self.retrying(lambda: self._raw.log_dict(self.run_id, dict(data), name))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(_name(k), str(v)) for k, v in tags.items()]
        for chunk in _chunks(items, MAX_PARAMS_PER_BATCH):
            self.retrying(lambda chunk=chunk: self._raw.log_batch(self.run_id, tags=chunk))

    def close(self, status: str | None, failed: bool = False) -> None:
        """The end of a stage: the pending metrics written, then the run set to ``status`` (None: left to
        its owner, KFP). After a success this waits out an outage (and raises when it gives up); after a
        failure (``failed``) it tries once and only warns, so the stage's own error is what is reported."""
        if not failed:
            self.flush()
            if status is not None:
                self.retrying(lambda: self._raw.set_terminated(self.run_id, status))
            return
        if self.outage.gave_up:
            log.warning("MLflow run %s of %s left unfinished (MLflow unreachable, %d metric values not logged); "
                        "a rerun of the stage continues it", self.run_id, self.outage.label, self.pending)
            return
        try:
            self._send()
            if status is not None:
                self._raw.set_terminated(self.run_id, status)
        except Exception as exc:
            log.warning("MLflow run %s of %s not ended as %s: %s", self.run_id, self.outage.label, status,
                        _reason(exc) if is_transient(exc) else exc)


class NullRun:
    """Accepts every call and does nothing: the stage code never checks whether tracking is on."""

    run_id: str | None = None

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, *, model_id: str | None = None,
                    dataset: tuple[str, str] | None = None) -> None:
        pass

    def log_series(self, series: Mapping[str, Sequence[float]], first_step: int = 1) -> None:
        pass

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        pass

    def log_text(self, text: str, name: str) -> None:
        pass

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        pass

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        pass

    def retrying(self, fn: Callable[[], T]) -> T:
        return fn()


def _status_for(exc: BaseException | None) -> str:
    if exc is None:
        return "FINISHED"
    return "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"


class Tracker:
    """Parent run per pipeline run, nested run per stage, on the server at ``tracking_uri``."""

    def __init__(self, tracking_uri: str | None = None):
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created when missing (safe when two stages race)."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            # a model-training experiment: the MLflow UI opens on its runs table (Dataset, Source, Models)
            return self.client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: "custom_model_development"})
        except MlflowException:
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def start_parent(self, experiment: str, run_name: str, tags: Mapping[str, Any] | None = None,
                     params: Mapping[str, Any] | None = None) -> str:
        """Create the pipeline run's parent run (left RUNNING until ``finish_parent``) with the pipeline's
        parameters; returns its id.

        Under KFP's MLflow integration (``MLFLOW_RUN_ID`` set) KFP already made the pipeline's run and
        this task's run nested under it: that pipeline run (the injected run's parent, else the
        injected run) becomes the parent, and KFP keeps ending it (tag ``amnet.parent_owner`` = kfp).
        """
        from amnet.ops.tracking.lineage import source_tags

        all_tags = {"amnet.role": "pipeline", **source_tags("amnet pipeline"),
                    **{k: str(v) for k, v in (tags or {}).items()}}
        injected = os.environ.get("MLFLOW_RUN_ID")
        if injected:
            run_id = self.client.get_run(injected).data.tags.get("mlflow.parentRunId") or injected
            all_tags["amnet.parent_owner"] = "kfp"
            run = MlflowRun(self.client, run_id, shared=True)
        else:
            created = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=all_tags)
            run = MlflowRun(self.client, created.info.run_id)
        run.set_tags(all_tags)
        run.log_params(params or {})
        return run.run_id

    def finish_parent(self, run_id: str, status: str = "FINISHED") -> None:
        """Mark the parent run FINISHED, FAILED or KILLED (the pipeline's exit handler calls this)."""
        status = status.upper()
        if status not in RUN_STATUSES:
            raise AmnetError(f"run status must be one of {', '.join(RUN_STATUSES)} (got {status!r})")
        if self.client.get_run(run_id).data.tags.get("amnet.parent_owner") == "kfp":
            return  # KFP's own pipeline run: KFP ends it
        self.client.set_terminated(run_id, status)

    @contextlib.contextmanager
    def stage_run(self, stage: str, parent_run_id: str | None = None, params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, Any] | None = None, experiment: str | None = None,
                  out: str = "") -> Iterator[MlflowRun]:
        """A run for one stage: the one in ``MLFLOW_RUN_ID`` when KFP made it, else a new nested run.

        A run created here is nested under ``parent_run_id`` (tag ``mlflow.parentRunId``, same
        experiment) and ends FINISHED, or FAILED when the body raises (KILLED on Ctrl-C). A run from
        ``MLFLOW_RUN_ID`` is left for KFP to end.

        The run buffers its metrics through an MLflow outage and waits for the server at its end (up to
        ``$AMNET_TRACKING_OUTAGE_S``, see :class:`MlflowRun`), with MLflow's per-request retries bounded
        (:func:`http_bounds`); ``out``: the stage's output, named in the error when it gives up.
        """
        from amnet.ops.tracking.lineage import source_tags

        outage_s = outage_seconds()  # a bad setting fails here, before the run and its hours of training
        all_tags = {"amnet.stage": stage, **source_tags(f"amnet step {stage.split('-')[0]}"), **(tags or {})}
        injected = os.environ.get("MLFLOW_RUN_ID")
        with http_bounds():
            def open_run(run_id: str, shared: bool) -> MlflowRun:
                return MlflowRun(self.client, run_id, shared, buffered=True, label=stage, out=out,
                                 uri=self.tracking_uri or "", outage_s=outage_s)

            if injected:
                run = open_run(injected, True)
                run.set_tags(all_tags)
                run.log_params(params or {})
                status = None  # KFP ends it
            else:
                run = open_run(self._stage_run_id(stage, parent_run_id, all_tags, experiment), False)
                status = "FINISHED"
            try:
                if not injected:
                    run.log_params(params or {})
                yield run
                run.close(status)
            except BaseException as exc:
                run.close(None if injected else _status_for(exc), failed=True)
                raise

    def _experiment_for(self, parent_run_id: str | None, experiment: str | None) -> str:
        if parent_run_id:
            return self.client.get_run(parent_run_id).info.experiment_id
        return self.experiment_id(experiment or default_experiment())

    def runs_with_key(self, key: str, parent_run_id: str | None = None, experiment: str | None = None) -> list:
        """Runs tagged with content key ``key`` (newest first) in the experiment a stage run would use."""
        if not re.fullmatch(r"[0-9a-f]{8,64}", key):
            raise AmnetError(f"run key {key!r} is not a hex digest")
        return list(self.client.search_runs([self._experiment_for(parent_run_id, experiment)],
                                            filter_string=f"tags.`{TAG_RUN_KEY}` = '{key}'",
                                            order_by=["attributes.start_time DESC"], max_results=10))

    def finished_run(self, key: str, parent_run_id: str | None = None, experiment: str | None = None) -> str | None:
        """The id of a FINISHED run with content key ``key``, if there is one."""
        return next((r.info.run_id for r in self.runs_with_key(key, parent_run_id, experiment)
                     if r.info.status == "FINISHED"), None)

    def _stage_run_id(self, stage: str, parent_run_id: str | None, tags: Mapping[str, Any],
                      experiment: str | None) -> str:
        """A new run, or the unfinished run of an earlier attempt with the same ``amnet.run_key`` tag."""
        run_tags = {k: str(v) for k, v in tags.items()}
        key = run_tags.get(TAG_RUN_KEY)
        if key:
            for found in self.runs_with_key(key, parent_run_id, experiment):
                if found.info.status in ("RUNNING", "FAILED", "KILLED"):
                    self.client.update_run(found.info.run_id, status="RUNNING")
                    log.info("continuing run %s of the earlier attempt of stage %s", found.info.run_id, stage)
                    return found.info.run_id
        if parent_run_id:
            run_tags["mlflow.parentRunId"] = parent_run_id
        experiment_id = self._experiment_for(parent_run_id, experiment)
        return self.client.create_run(experiment_id, run_name=stage, tags=run_tags).info.run_id


class NullTracker:
    """The tracker when tracking is off: same API, nothing recorded, no mlflow import."""

    tracking_uri: str | None = None

    def start_parent(self, experiment: str, run_name: str, tags: Mapping[str, Any] | None = None,
                     params: Mapping[str, Any] | None = None) -> str:
        return ""

    def finish_parent(self, run_id: str, status: str = "FINISHED") -> None:
        pass

    @contextlib.contextmanager
    def stage_run(self, stage: str, parent_run_id: str | None = None, params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, Any] | None = None, experiment: str | None = None,
                  out: str = "") -> Iterator[NullRun]:
        yield NullRun()


# ------------------------------------------------------------------------------- module-level helpers


def run_key(stage: str, parent_run_id: str | None, params: Mapping[str, Any], io: Mapping[str, Any]) -> str:
    """Content key of one stage execution: what a retry of the same task has in common with the attempt
    before it (stage, parent run, resolved config, input and output URIs), as a hex digest."""
    payload = {"stage": stage, "parent": parent_run_id or "", "params": flatten(params), "io": dict(io)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def default_experiment() -> str:
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def get_tracker() -> Tracker | NullTracker:
    """A ``Tracker`` for ``$MLFLOW_TRACKING_URI``, or a ``NullTracker`` when it is unset."""
    return Tracker() if tracking_enabled() else NullTracker()


def start_parent(experiment: str, run_name: str, tags: Mapping[str, Any] | None = None,
                 params: Mapping[str, Any] | None = None) -> str:
    """Parent run id for a pipeline run ("" when tracking is off); fails fast when the server is down."""
    tracker = get_tracker()
    if isinstance(tracker, Tracker):
        check_tracking_server(tracker.tracking_uri)
    return tracker.start_parent(experiment, run_name, tags, params)


def finish_parent(run_id: str, status: str = "FINISHED") -> None:
    """End the parent run; a no-op without a run id or with tracking off."""
    if run_id:
        get_tracker().finish_parent(run_id, status)


@contextlib.contextmanager
def stage_run(stage: str, parent_run_id: str | None = None, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, Any] | None = None, experiment: str | None = None,
              out: str = "") -> Iterator[RunLogger]:
    """``get_tracker().stage_run(...)``: a run logger that is a no-op when tracking is off; ``out``, the
    stage's output, is named in the error of a stage that gave up waiting for MLflow."""
    with get_tracker().stage_run(stage, parent_run_id, params, tags, experiment, out=out) as run:
        yield run


def log_to_run(run_id: str, metrics: Mapping[str, float], artifacts: Mapping[str, str] | None = None,
               step: int = 0, series: Mapping[str, Sequence[float]] | None = None) -> None:
    """Add metrics and files to an existing run (e.g. the report's headline numbers on the parent run).

    ``artifacts`` maps the artifact name to a local path or ``s3://`` URI (read through
    ``amnet.storage``); ``series`` adds step metrics (:meth:`MlflowRun.log_series`: curves over K).
    Each call waits out an MLflow outage like a stage's (:class:`Outage`).
    A no-op without a run id or with tracking off.
    """
    if not run_id or not tracking_enabled():
        return
    import tempfile

    from amnet import storage

    with http_bounds(), tempfile.TemporaryDirectory(prefix="amnet-artifacts-") as tmp:
        run = MlflowRun(Tracker().client, run_id, shared=True)
        run.log_metrics(metrics, step)
        run.log_series(series or {})
        for name, uri in (artifacts or {}).items():
            local = os.path.join(tmp, os.path.basename(name))
            with open(local, "wb") as fh:
                fh.write(storage.read_bytes(uri))
            folder = os.path.dirname(name.strip("/"))
            run.log_artifact(local, folder or None)


def set_note(run_id: str, markdown: str) -> None:
    """The run's description in the MLflow UI (tag ``mlflow.note.content``); a no-op without a run id
    or with tracking off."""
    if run_id and tracking_enabled():
        Tracker().client.set_tag(run_id, "mlflow.note.content", markdown[:MAX_PARAM_VALUE * 8])


SYSTEM_PREFIX = "system/"  # MLflow's prefix of system metrics
NODE_ID_ENV = "MLFLOW_SYSTEM_METRICS_NODE_ID"  # MLflow's: a node's metrics under system/<node>/...


@contextlib.contextmanager
def system_metrics(run_id: str | None) -> Iterator[None]:
    """CPU, memory, disk, network and (with NVML) GPU metrics of this machine as ``system/...`` metrics
    of ``run_id`` while the block runs: MLflow's monitor, through ``mlflow.start_run(log_system_metrics=True)``
    (every ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``, default 10 s), plus one closing CPU and memory sample
    so a stage shorter than the interval still records a point.

    The run's lifecycle stays with its owner (``stage_run``, or KFP): the monitor is stopped with
    ``mlflow.end_run(status="RUNNING")``, and a ``MLFLOW_RUN_ID`` handed over by KFP is kept."""
    if not run_id:
        yield
        return
    import mlflow

    handed_over = os.environ.get("MLFLOW_RUN_ID")
    try:
        mlflow.start_run(run_id=run_id, nested=True, log_system_metrics=True)
    except Exception as exc:  # psutil missing or a broken monitor must not fail the stage
        log.warning("system metrics unavailable: %s", exc)
        yield
        return
    try:
        yield
    finally:
        try:
            mlflow.end_run(status="RUNNING")  # stops the monitor; the stage run goes on
        except Exception as exc:
            if not is_transient(exc):
                raise
            _stop_monitor(run_id)  # end_run raised before it: the monitor would go on sampling
            log.warning("system metrics of run %s stopped while MLflow is away (%s)", run_id, _reason(exc))
        finally:
            if handed_over:  # end_run clears it; later code of this task still reads it
                os.environ["MLFLOW_RUN_ID"] = handed_over
        try:
            closing_sample(run_id)
        except Exception as exc:  # the run may already be gone: metrics are best effort
            log.warning("closing system metrics sample not logged: %s", exc)


def _stop_monitor(run_id: str) -> None:
    """Stop MLflow's system-metrics monitor of ``run_id``, if one runs (its thread ends at its next sample)."""
    from mlflow.tracking import fluent

    monitor = getattr(fluent, "run_id_to_system_metrics_monitor", {}).pop(run_id, None)
    if monitor is not None:
        monitor.finish()


def closing_sample(run_id: str) -> None:
    """One CPU and memory sample (psutil) as the next step of the run's ``system/`` metrics, with the
    names MLflow's monitor uses (``system/cpu_utilization_percentage``, ``system/system_memory_usage_megabytes``,
    ``system/system_memory_usage_percentage``)."""
    import psutil

    node = os.environ.get(NODE_ID_ENV)
    prefix = f"{SYSTEM_PREFIX}{node + '/' if node else ''}"
    memory = psutil.virtual_memory()
    sample = {f"{prefix}cpu_utilization_percentage": psutil.cpu_percent(interval=0.1),
              f"{prefix}system_memory_usage_megabytes": round(memory.used / 1e6, 1),
              f"{prefix}system_memory_usage_percentage": round(memory.used / memory.total * 100, 1)}
    client = Tracker().client
    history = client.get_metric_history(run_id, f"{prefix}cpu_utilization_percentage")
    step = max((m.step for m in history), default=-1) + 1
    MlflowRun(client, run_id, shared=True, outage_s=0).log_metrics(sample, step)  # one try: best effort
