"""Read and write bytes at local paths or ``s3://bucket/key`` URIs.

S3 goes through boto3 (imported lazily) and honours the standard AWS environment: ``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``.
Every write is atomic: local files are written to a temporary name and renamed; S3 objects are
only visible once the single PUT completes, so no half-written object ever appears under its key.

S3 outages are ridden out, boundedly: botocore retries each request (standard mode, 8 attempts,
which covers a few seconds), and on top of that a request that still fails with a connection error,
a timeout or a 5xx answer is tried again with backoff for up to ``$AMNET_S3_RETRY_SECONDS`` (60 s by
default; a restarting S3 server is back well within that). After that the stage fails with one
line naming the URI. Retrying a PUT is safe: it writes the same bytes to the same key.
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import tempfile
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from amnet.errors import AmnetError

S3_PREFIX = "s3://"
RETRY_SECONDS_ENV = "AMNET_S3_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 60.0
MAX_ATTEMPTS_ENV = "AMNET_S3_MAX_ATTEMPTS"
DEFAULT_MAX_ATTEMPTS = 8
_TRANSIENT_CODES = frozenset({"500", "502", "503", "504", "InternalError", "ServiceUnavailable", "SlowDown",
                              "RequestTimeout", "RequestTimeoutException"})
log = logging.getLogger(__name__)
_notice_lock = threading.Lock()
_last_notice = [0.0]


def is_s3(uri: str) -> bool:
    return str(uri).startswith(S3_PREFIX)


def artifact_uri(path: str | None) -> str | None:
    """A registry tag's artifact location as a URI readable from here.

    Inside a Kubeflow pod, KFP v2 mounts artifacts at ``/s3/BUCKET/KEY`` or ``/minio/BUCKET/KEY``; the
    pipeline registers those paths. Outside the pod they are ``s3://BUCKET/KEY`` (MinIO speaks S3).
    """
    if not path or is_s3(path) or os.path.exists(path):
        return path or None
    for mount in ("/s3/", "/minio/"):
        if path.startswith(mount):
            return S3_PREFIX + path[len(mount):]
    return path


def join(base: str, *parts: str) -> str:
    """Join URI parts with '/' for S3 and os.path for local paths."""
    if is_s3(base):
        return posixpath.join(str(base), *parts)
    return os.path.join(str(base), *parts)


def split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len(S3_PREFIX):]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise AmnetError(f"{uri}: not a valid s3:// URI (expected s3://bucket/key)")
    return bucket, key


@lru_cache(maxsize=4)
def _client(endpoint: str | None, key_id: str | None):
    import boto3
    from botocore.config import Config

    # Bounded retries: a restarting S3 server is retried with backoff (botocore's attempts, then
    # _with_retries for up to retry_seconds()), then a clear error is raised.
    cfg = Config(retries={"max_attempts": max_attempts(), "mode": "standard"}, connect_timeout=5, read_timeout=60)
    # A fresh Session reads the current environment (boto3's default session caches old keys).
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=cfg)


def s3_client():
    """A boto3 S3 client for the endpoint named by the standard AWS environment (bounded retries)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return _client(endpoint, os.environ.get("AWS_ACCESS_KEY_ID"))


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__))


def _transient(exc: Exception) -> bool:
    """A failure that a later try may not see: no connection, a timeout, a 5xx answer."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, SSLError

    if isinstance(exc, SSLError):
        return False
    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or _error_code(exc) in _TRANSIENT_CODES
    return False


def max_attempts() -> int:
    """botocore's attempts per request ($AMNET_S3_MAX_ATTEMPTS, default 8) before ``_with_retries``."""
    raw = os.environ.get(MAX_ATTEMPTS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_ATTEMPTS
    if not raw.isdigit() or int(raw) < 1:
        raise AmnetError(f"{MAX_ATTEMPTS_ENV}={raw!r} must be a whole number >= 1")
    return int(raw)


def retry_seconds() -> float:
    """How long an S3 request is retried after botocore's own attempts ($AMNET_S3_RETRY_SECONDS)."""
    raw = os.environ.get(RETRY_SECONDS_ENV, "")
    try:
        return max(0.0, float(raw)) if raw.strip() else DEFAULT_RETRY_SECONDS
    except ValueError:
        raise AmnetError(f"{RETRY_SECONDS_ENV}={raw!r} is not a number of seconds") from None


def _with_retries(uri: str, call: Callable[[], object]):
    """``call()``, tried again with backoff while it fails transiently, for up to ``retry_seconds()``."""
    deadline = time.monotonic() + retry_seconds()
    delay = 0.5
    while True:
        try:
            return call()
        except Exception as exc:
            if not _transient(exc) or time.monotonic() + delay > deadline:
                raise
            with _notice_lock:  # one line every few seconds, not one per thread and try
                if time.monotonic() - _last_notice[0] > 5:
                    _last_notice[0] = time.monotonic()
                    log.warning("S3 not answering for %s (%s); retrying for up to %.0f s", uri, _error_code(exc),
                                retry_seconds())
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _s3_error(uri: str, exc: Exception) -> AmnetError:
    code = _error_code(exc)
    if code in ("NoSuchBucket",):
        return AmnetError(f"{uri}: the bucket does not exist; create it or fix the URI")
    if code in ("NoSuchKey", "404", "NotFound"):
        return AmnetError(f"{uri}: no such object")
    if _transient(exc):
        return AmnetError(f"{uri}: S3 did not answer after retrying for {retry_seconds():.0f} s ({code}); "
                          "check that the S3 endpoint (AWS_ENDPOINT_URL) is up, then rerun: finished work is kept")
    return AmnetError(f"{uri}: S3 request failed ({code}); check AWS_ENDPOINT_URL and credentials")


def exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            _with_retries(uri, lambda: s3_client().head_object(Bucket=bucket, Key=key))
            return True
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                _require_bucket(uri, bucket)
                return False
            raise _s3_error(uri, exc) from exc
        except BotoCoreError as exc:
            raise _s3_error(uri, exc) from exc
    return os.path.exists(uri)


def _require_bucket(uri: str, bucket: str) -> None:
    """A missing key in a missing bucket is a different mistake: say so."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _with_retries(uri, lambda: s3_client().head_bucket(Bucket=bucket))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            raise AmnetError(f"{uri}: the bucket {bucket!r} does not exist; create it or fix the URI") from exc
        raise _s3_error(uri, exc) from exc
    except BotoCoreError as exc:
        raise _s3_error(uri, exc) from exc


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return _with_retries(uri, lambda: s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(uri, exc) from exc
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError as exc:
        raise AmnetError(f"{uri}: no such file") from exc


def write_bytes(uri: str, data: bytes) -> None:
    """Write atomically: temp file + rename locally, one PUT on S3."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            _with_retries(uri, lambda: s3_client().put_object(Bucket=bucket, Key=key, Body=data))
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(uri, exc) from exc
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600 files; published files get the mode a plain open() would give (0666 & ~umask),
        # so another user (a container's uid 10001, a shared volume's reader) can read them.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@functools.cache
def _umask() -> int:
    """The process umask, read once (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def list_files(prefix: str, suffix: str = "") -> list[str]:
    """Sorted URIs of the files directly or recursively under ``prefix`` ending with ``suffix``."""
    if is_s3(prefix):
        bucket, key = split_s3(prefix)
        key = key.rstrip("/") + "/" if key else ""
        from botocore.exceptions import BotoCoreError, ClientError

        def listing() -> list[str]:
            pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
            return [f"{S3_PREFIX}{bucket}/{obj['Key']}" for page in pages for obj in page.get("Contents", [])
                    if obj["Key"].endswith(suffix)]

        try:
            return sorted(_with_retries(prefix, listing))
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(prefix, exc) from exc
    root = Path(prefix)
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.rglob(f"*{suffix}") if p.is_file() and not p.name.startswith("."))


def s3_objects(prefix: str) -> dict[str, tuple[int, str]]:
    """``{s3://bucket/key: (size, etag)}`` of every object under an ``s3://`` prefix: one paginated
    listing, no object is read (the dataset fingerprint uses it instead of hashing every image)."""
    bucket, key = split_s3(prefix)
    key = key.strip("/") + "/" if key.strip("/") else ""
    from botocore.exceptions import BotoCoreError, ClientError

    def listing() -> dict[str, tuple[int, str]]:
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
        return {f"{S3_PREFIX}{bucket}/{obj['Key']}": (int(obj["Size"]), str(obj.get("ETag", "")).strip('"'))
                for page in pages for obj in page.get("Contents", [])}

    try:
        return _with_retries(prefix, listing)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error(prefix, exc) from exc


def delete(uri: str) -> None:
    """Remove one file or object (missing is fine)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            _with_retries(uri, lambda: s3_client().delete_object(Bucket=bucket, Key=key))
        except (ClientError, BotoCoreError) as exc:
            raise _s3_error(uri, exc) from exc
    elif os.path.exists(uri):
        os.unlink(uri)


def local_copy(uri: str, workdir: str | os.PathLike) -> str:
    """A local path holding ``uri``'s bytes (the path itself when it is local)."""
    if not is_s3(uri):
        return str(uri)
    dest = Path(workdir) / posixpath.basename(split_s3(uri)[1])
    dest.write_bytes(read_bytes(uri))
    return str(dest)
