"""``amnet serve``: a small web page for interactive search (Fig. 1, §5.5) with a trained model.

Standard library only (``http.server.ThreadingHTTPServer``): no new dependency, and uploads need no
multipart parser because the page sends them as base64 in JSON. Routes:

* ``GET /`` (+ ``/app.js``, ``/app.css``): the page (:mod:`amnet.search.page`).
* ``GET /api/vocab``: model, gallery size and the model's attributes with their values.
* ``GET /api/gallery?n=24&seed=S``: a random sample of gallery ids with their attributes.
* ``POST /api/search``: ``{"gallery_id": ID | "upload": BASE64, "changes": {attr: value}, "k": 20}``
  -> ``{"query", "changes", "results": [{rank, image_id, distance, attributes, matches}], "took_ms"}``.
* ``GET /img/<id>``: a gallery image's stored bytes (``.jpg`` suffix optional).

Uploads are untrusted: the body size is checked from ``Content-Length`` before anything is read, the
decoded image must be at most ``max_upload_bytes``, and :func:`amnet.data.images.check_image` (image
types only, pixel limit, full decode) runs before the model sees it. Everything happens in memory:
nothing is written to disk. Errors are JSON ``{"error": "..."}`` with a 4xx status.

Under load (:class:`Limits`, each an ``amnet serve`` flag): searches are CPU work, so at most
``workers`` run at once and the rest wait in a first-come-first-served queue of bounded length and
wait (then 503 with ``Retry-After``), which keeps latency even instead of letting a burst pile up.
Each connection has its own thread, up to ``max_connections`` (then 503), behind a long listen
backlog; a request's headers and body must arrive within their timeouts however the client trickles
them (then 408), a response must be taken within ``send_timeout``, and an idle keep-alive
connection is closed after ``idle_timeout``. ``amnet serve`` caps glibc's malloc arenas, so the
connection threads reuse memory instead of growing the process (:func:`cap_malloc_arenas`).
Measured by ``benchmarks/serve_load.py`` (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import ctypes
import io
import json
import logging
import math
import os
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from amnet import logs
from amnet.errors import AmnetError
from amnet.search.cli import FEATURES_HELP, MODEL_HELP
from amnet.search.page import APP_CSS, APP_JS, INDEX_HTML
from amnet.search.searcher import Loader, Searcher

log = logging.getLogger("amnet.search.server")

MAX_UPLOAD_BYTES = 5 * 1024 * 1024  # encoded image size limit
MAX_UPLOAD_PIXELS = 25_000_000  # decoded size limit for uploads (stricter than datasets' 40 MP)
MAX_K = 100
SEARCH_FIELDS = ("gallery_id", "upload", "changes", "k")  # what POST /api/search takes; any other field is a 400
MAX_SAMPLE = 200
LINGER_SECONDS, LINGER_BYTES = 1.0, 1024 * 1024  # draining an unread body before closing (see Handler.finish)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}
STATIC = {
    "/": (INDEX_HTML, "text/html; charset=utf-8"),
    "/app.js": (APP_JS, "text/javascript; charset=utf-8"),
    "/app.css": (APP_CSS, "text/css; charset=utf-8"),
}
IMAGE_TYPES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"),
               (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, which a container's cpuset narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Limits:
    """What one ``amnet serve`` process accepts at once and how long it waits for a client (seconds)."""

    workers: int = 0  # searches at once; 0 = one per CPU (a search is CPU work)
    queue: int = 256  # searches that may wait for a worker; more get 503
    queue_timeout: float = 10.0  # longest wait for a worker, then 503 with Retry-After
    max_connections: int = 512  # open connections (one thread each); more get 503 and are closed
    backlog: int = 1024  # listen backlog: connections the kernel holds before accept (capped by somaxconn)
    header_timeout: float = 10.0  # request line + headers, from their first byte (slow senders get 408)
    body_timeout: float = 30.0  # the whole body, from the end of the headers (408)
    idle_timeout: float = 15.0  # a keep-alive connection with no new request is closed
    send_timeout: float = 30.0  # the whole response; a client that does not read it is dropped
    max_upload_bytes: int = MAX_UPLOAD_BYTES

    @property
    def search_workers(self) -> int:
        return self.workers or cpu_count()


class HttpError(Exception):
    """A request the server refuses: status + one-line message sent as JSON (+ extra headers)."""

    def __init__(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class Busy(Exception):
    """No search worker within the queue's limits; ``retry_after`` is a hint in whole seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SearchPool:
    """At most ``workers`` holders at once, the others served first come, first served.

    A slot freed by :meth:`slot` is handed straight to the longest waiter, so a newcomer can never
    overtake the queue (``threading.Semaphore`` lets a newcomer take a freed slot first).
    At most ``queue`` callers wait, each at most ``timeout`` seconds; beyond either they get
    :class:`Busy` at once or when their wait runs out."""

    def __init__(self, workers: int, queue: int, timeout: float) -> None:
        self.workers, self.queue, self.timeout = max(1, workers), max(0, queue), timeout
        self._lock = threading.Lock()
        self._free = self.workers
        self._waiters: collections.deque[threading.Lock] = collections.deque()
        self._mean_hold = 0.01  # seconds a search holds its slot (running mean): the Retry-After hint

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def retry_after(self) -> int:
        """Seconds until the queue as it is now has probably drained (at least 1)."""
        return max(1, math.ceil((len(self._waiters) + self.workers) * self._mean_hold / self.workers))

    @contextmanager
    def slot(self) -> Iterator[None]:
        self._acquire()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._mean_hold += 0.05 * (time.perf_counter() - start - self._mean_hold)
            self._release()

    def _acquire(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            if len(self._waiters) >= self.queue:
                raise Busy(f"server busy: {len(self._waiters)} searches waiting; retry shortly", self.retry_after())
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        if waiter.acquire(timeout=self.timeout):
            return  # _release handed this caller its slot
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:  # handed a slot just as the wait ran out: keep it
                return
        raise Busy(f"server busy: no search worker free within {self.timeout:g} s; retry shortly",
                   self.retry_after())

    def _release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()  # the slot passes to the longest waiter
            else:
                self._free += 1


def image_type(data: bytes) -> str | None:
    """The MIME type of encoded image bytes from their magic number (None if not a known image type)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in IMAGE_TYPES if data.startswith(magic)), None)


def max_body_bytes(max_upload: int) -> int:
    """Largest JSON body accepted: a base64 upload of ``max_upload`` bytes plus room for the rest."""
    return (max_upload + 2) // 3 * 4 + 64 * 1024


class SearchApp:
    """The request logic, independent of the HTTP plumbing: each method returns a JSON-able dict."""

    def __init__(self, searcher: Searcher, max_upload_bytes: int = MAX_UPLOAD_BYTES,
                 pool: SearchPool | None = None) -> None:
        self.searcher = searcher
        self.max_upload_bytes = max_upload_bytes
        limits = Limits()
        self.pool = pool or SearchPool(limits.search_workers, limits.queue, limits.queue_timeout)

    def vocab(self) -> dict:
        return self.searcher.info()

    def gallery(self, query: dict[str, list[str]]) -> dict:
        n = _int_param(query, "n", 24, 1, MAX_SAMPLE)
        seed = _int_param(query, "seed", 0, 0, 2**63 - 1) if "seed" in query else None
        ids = self.searcher.sample(n, seed)
        return {"size": self.searcher.size,
                "items": [{"image_id": i, "attributes": self.searcher.attributes(i)} for i in ids]}

    def search(self, body: dict) -> dict:
        if not isinstance(body, dict):
            raise HttpError(HTTPStatus.BAD_REQUEST, "expected a JSON object")
        unknown = sorted(set(body) - set(SEARCH_FIELDS))
        if unknown:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"unknown field(s) {', '.join(map(repr, unknown))[:200]}; "
                            f"a search takes {', '.join(SEARCH_FIELDS)}")
        changes = {} if body.get("changes") is None else body["changes"]  # [], "" or 0 are not "no changes"
        if not isinstance(changes, dict) or not all(isinstance(v, str) for v in changes.values()):
            raise HttpError(HTTPStatus.BAD_REQUEST, 'changes must be an object of strings, e.g. {"color": "blue"}')
        k = body.get("k", 20)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"k must be an integer from 1 to {MAX_K}")
        gallery_id, upload = body.get("gallery_id"), body.get("upload")
        if (gallery_id is None) == (upload is None):
            raise HttpError(HTTPStatus.BAD_REQUEST, "give exactly one of gallery_id or upload")
        query: dict = {}
        if gallery_id is not None:
            if not isinstance(gallery_id, str):
                raise HttpError(HTTPStatus.BAD_REQUEST, "gallery_id must be a string")
            query = {"gallery_id": gallery_id, "attributes": self._attributes(gallery_id)}
            source: str | bytes = gallery_id
        else:
            source = self._decode_upload(upload)
            query = {"upload": True, "bytes": len(source)}
        self.searcher.parse_changes(changes)  # unknown attribute or value: 400 now, without queueing
        start = time.perf_counter()
        try:
            with self.pool.slot():
                results = self.searcher.search(source, changes, k)
        except Busy as exc:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, str(exc), {"Retry-After": str(exc.retry_after)}) from exc
        took_ms = (time.perf_counter() - start) * 1000
        return {"query": query, "changes": changes, "took_ms": round(took_ms, 2),
                "results": [r.to_dict() for r in results]}

    def image(self, image_id: str) -> tuple[bytes, str]:
        data = self.searcher.image_bytes(image_id)
        if data is None and image_id.endswith(".jpg"):
            data = self.searcher.image_bytes(image_id[: -len(".jpg")])
        mime = image_type(data) if data is not None else None
        if data is None or mime is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no gallery image {image_id!r}")
        return data, mime

    def _attributes(self, gallery_id: str) -> dict[str, str]:
        try:
            return self.searcher.attributes(gallery_id)
        except AmnetError as exc:
            raise HttpError(HTTPStatus.NOT_FOUND, str(exc)) from exc

    def _decode_upload(self, upload: object) -> bytes:
        if not isinstance(upload, str):
            raise HttpError(HTTPStatus.BAD_REQUEST, "upload must be a base64 string")
        text = upload.split(",", 1)[-1] if upload.startswith("data:") else upload  # "data:x" (no comma): not base64
        if len(text) > max_body_bytes(self.max_upload_bytes):
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self.too_large_message())
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, "upload is not valid base64") from exc
        if len(data) > self.max_upload_bytes:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self.too_large_message(len(data)))
        if not data:
            raise HttpError(HTTPStatus.BAD_REQUEST, "upload is empty")
        return data

    def too_large_message(self, size: int | None = None) -> str:
        got = f" ({size / 2**20:.1f} MB)" if size else ""
        return f"image too large{got}; the limit is {self.max_upload_bytes / 2**20:g} MB"


def _int_param(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name, [str(default)])[-1]
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"{name} must be an integer (got {raw!r})") from None
    return max(low, min(high, value))


class DeadlineReader(socket.SocketIO):
    """The raw reader under a handler's ``rfile``: no read waits past ``deadline`` (``time.monotonic``),
    so a client that trickles a byte at a time cannot stretch a request past its timeout."""

    deadline = math.inf

    def readinto(self, b) -> int | None:  # noqa: ANN001 (a writable buffer, as io's signature)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("read deadline passed")
        self._sock.settimeout(left)
        return super().readinto(b)


class Handler(BaseHTTPRequestHandler):
    """HTTP plumbing for :class:`SearchApp`: routing, limits, timeouts, JSON errors, security headers."""

    app: SearchApp  # set on the subclass made by make_server
    limits: Limits = Limits()  # likewise
    server_version = "amnet-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"  # a garbled request line still gets a status line (not HTTP/0.9's bare body)

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain buffered reader: replaced by one with deadlines
        self.reader = DeadlineReader(self.connection, "rb")
        self.rfile = io.BufferedReader(self.reader, 64 * 1024)
        self.linger = False  # unread request bytes may follow: drain them before closing (finish)

    def handle_one_request(self) -> None:
        """One request on this connection: wait up to ``idle_timeout`` for it to start, then give its
        line and headers ``header_timeout``; a client too slow to finish them gets 408 and is dropped.
        (``BaseHTTPRequestHandler.handle_one_request`` with these deadlines.)"""
        self.body_read = self.parsed = False
        self.reader.deadline = time.monotonic() + self.limits.idle_timeout
        try:
            if not self.rfile.peek(1):
                self.close_connection = True  # the client closed the connection
                return
        except OSError:  # idle too long, or reset: close quietly
            self.close_connection = True
            return
        self.reader.deadline = time.monotonic() + self.limits.header_timeout
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return  # parse_request has answered (400, 431, 505, ...)
            self.parsed = True
            method = getattr(self, f"do_{self.command}", None)
            if method is None:
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {self.command!r}")
                return
            method()
            self.wfile.flush()
        except TimeoutError:
            if not self.parsed:  # the request line or headers came too slowly (not the response)
                self._timed_out(f"request headers not received within {self.limits.header_timeout:g} s")
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (malformed request line or headers): sent within ``send_timeout``;
        whatever the client sends after a broken request is drained, not answered."""
        self.linger = True
        self.connection.settimeout(self.limits.send_timeout)
        super().send_error(code, message, explain)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch(self._post)

    def handle_expect_100(self) -> bool:
        """``Expect: 100-continue``: refuse a too-large body before the client sends it."""
        length = self.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and int(length) > max_body_bytes(self.app.max_upload_bytes):
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self.app.too_large_message())
            return False
        return super().handle_expect_100()

    def _get(self) -> None:
        url = urlsplit(self.path)
        if url.path in STATIC:
            text, mime = STATIC[url.path]
            self._send(HTTPStatus.OK, text.encode(), mime, cache="no-cache")
        elif url.path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon", cache="max-age=86400")
        elif url.path == "/api/vocab":
            self._json(self.app.vocab())
        elif url.path == "/api/gallery":
            self._json(self.app.gallery(parse_qs(url.query)))
        elif url.path.startswith("/img/"):
            data, mime = self.app.image(unquote(url.path[len("/img/"):]))
            self._send(HTTPStatus.OK, data, mime, cache="max-age=3600")
        else:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such page {url.path!r}")

    def _post(self) -> None:
        if urlsplit(self.path).path != "/api/search":
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such endpoint {urlsplit(self.path).path!r}")
        self._json(self.app.search(self._read_json()))

    def _read_json(self) -> dict:
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send JSON (Content-Type: application/json)")
        length = self.headers.get("Content-Length")
        if length is None or not (length.isascii() and length.isdigit()):  # "²".isdigit(), yet int("²") fails
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if int(length) > max_body_bytes(self.app.max_upload_bytes):
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self.app.too_large_message())
        self.reader.deadline = time.monotonic() + self.limits.body_timeout
        try:
            raw = self.rfile.read(int(length))
        except TimeoutError:
            raise HttpError(HTTPStatus.REQUEST_TIMEOUT,
                            f"request body not received within {self.limits.body_timeout:g} s") from None
        if len(raw) < int(length):
            raise HttpError(HTTPStatus.BAD_REQUEST, f"body ended after {len(raw)} of {length} bytes")
        self.body_read = True
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise HttpError(HTTPStatus.BAD_REQUEST, "body is not valid JSON") from exc

    def _dispatch(self, route) -> None:  # noqa: ANN001 (a bound method)
        try:
            route()
        except HttpError as exc:
            self._error(exc.status, str(exc), exc.headers)
        except AmnetError as exc:  # bad attribute, value, image: the user's input
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except (ConnectionError, TimeoutError):
            raise  # the client left or does not read: nothing more to send (handle_error notes it)
        except Exception:
            log.exception("request %s %s failed", self.command, self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log")

    def _error(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        if self.command == "POST" and not self.body_read:
            self.close_connection = True  # the body is unread: do not reuse the connection
            self.linger = True
        self._json({"error": message}, status, headers)

    def _timed_out(self, message: str) -> None:
        """408 with a JSON message, written directly (the request line may not have been parsed)."""
        body = json.dumps({"error": message}).encode()
        head = (f"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode()
        self.linger = True
        try:
            self.connection.settimeout(min(self.limits.send_timeout, 5.0))
            self.connection.sendall(head + body)
        except OSError:
            pass
        log.info("%s 408 %s", self.address_string(), message)

    def _json(self, payload: dict, status: HTTPStatus = HTTPStatus.OK, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", cache="no-store", headers=headers)

    def _send(self, status: HTTPStatus, body: bytes, mime: str, cache: str,
              headers: dict[str, str] | None = None) -> None:
        self.connection.settimeout(self.limits.send_timeout)  # the whole response (sendall's total time)
        self.send_response(status)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def finish(self) -> None:
        """Close, after draining what the client may still be sending (an unread or too-large body):
        closing a socket with unread input resets it, and the client could lose the error response."""
        super().finish()
        if not self.linger:
            return
        try:
            self.connection.shutdown(socket.SHUT_WR)  # the response is complete
            deadline, drained = time.monotonic() + LINGER_SECONDS, 0
            while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                chunk = self.connection.recv(64 * 1024)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        log.info("%s %s", self.address_string(), format % args)


class SearchServer(ThreadingHTTPServer):
    """A thread per connection, at most ``limits.max_connections`` at once, behind a long backlog."""

    daemon_threads = True
    block_on_close = False  # stopping does not wait for idle keep-alive connections

    def __init__(self, address: tuple[str, int], handler: type[Handler], limits: Limits) -> None:
        self.limits = limits
        self.request_queue_size = limits.backlog  # read by server_activate's listen()
        self.open_connections = 0
        self._count = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:  # noqa: ANN001 (socketserver's signature)
        with self._count:
            full = self.open_connections >= self.limits.max_connections
            if not full:
                self.open_connections += 1
        if full:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed()
            raise

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed()

    def _closed(self) -> None:
        with self._count:
            self.open_connections -= 1

    def _refuse(self, request: socket.socket) -> None:
        """503 without a thread: the answer fits the socket's empty send buffer, so this never blocks."""
        body = json.dumps({"error": f"server busy: {self.limits.max_connections} connections open; "
                                    "retry shortly"}).encode()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: "
                f"{len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode()
        try:
            request.setblocking(False)
            request.send(head + body)
        except OSError:
            pass
        log.warning("refused a connection: %d open (--max-connections)", self.limits.max_connections)
        self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        """A client that left or stopped reading is routine; anything else is logged with its traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.info("%s dropped: %s", client_address[0], exc)
        else:
            log.exception("connection from %s failed", client_address[0])


def make_server(searcher: Searcher, host: str = "127.0.0.1", port: int = 8000,
                max_upload_bytes: int | None = None, limits: Limits | None = None) -> SearchServer:
    """A ready (not yet serving) server; ``port=0`` picks a free port (``server.server_address``).
    ``max_upload_bytes``, when given, overrides ``limits.max_upload_bytes``."""
    limits = limits or Limits()
    if max_upload_bytes is not None:
        limits = replace(limits, max_upload_bytes=max_upload_bytes)
    pool = SearchPool(limits.search_workers, limits.queue, limits.queue_timeout)
    app = SearchApp(searcher, limits.max_upload_bytes, pool)
    handler = type("AmnetHandler", (Handler,), {"app": app, "limits": limits})
    return SearchServer((host, port), handler, limits)


M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def cap_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas at ``arenas``, as ``MALLOC_ARENA_MAX`` does (that variable, when set, wins).

    glibc gives threads that allocate at once their own arenas, up to 8 per CPU, and keeps what they free
    for reuse: with a thread per connection, each decoding an upload now and then, that shows as RSS
    creeping up under load. With the cap the memory is reused instead. True when the cap was set (not
    on other C libraries)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        return ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, max(1, arenas)) == 1
    except (OSError, AttributeError):
        return False


def use_threads(workers: int) -> None:
    """Give each concurrent search an equal share of the CPUs in torch's intra-op pool (at least one):
    ``workers`` searches with torch's default of one thread per CPU each would oversubscribe them."""
    import torch

    threads = max(1, cpu_count() // max(1, workers))
    if torch.get_num_threads() > threads:
        torch.set_num_threads(threads)


def build_parser() -> argparse.ArgumentParser:
    d = Limits()
    p = argparse.ArgumentParser(
        prog="amnet serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("Serve a web page for interactive search: browse the gallery or upload an "
                                  "image, choose attribute changes from the model's vocabulary, click a result "
                                  "to search from it.", 100),
        epilog="examples:\n  amnet serve --model models:/amnet@champion --gallery s3://amnet/runs/split\n"
        "  amnet serve --model out/model --features out/features --gallery out/split --port 8080\n\n"
        "The JSON API behind the page: GET /api/vocab, GET /api/gallery?n=24, POST /api/search, GET /img/ID.\n"
        "Uploads are decoded in memory (nothing is written to disk) and limited in size and pixels.\n\n"
        "Under load: at most --workers searches run at once; the others wait first come, first served\n"
        "(up to --queue of them, each up to --queue-timeout), beyond that the answer is 503 with\n"
        "Retry-After. A client that sends its request or reads its answer too slowly is dropped (408 when\n"
        "its request is late), so slow clients never hold a search worker.")
    p.add_argument("--model", required=True, metavar="URI", help=MODEL_HELP)
    p.add_argument("--features", metavar="URI", help=FEATURES_HELP)
    p.add_argument("--gallery", metavar="SPLIT", help="the split (or its gallery/ shards): thumbnails and browsing")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine "
                   "only; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_BYTES / 2**20, metavar="MB",
                   help=f"upload size limit (default {MAX_UPLOAD_BYTES / 2**20:g}; pixels: {MAX_UPLOAD_PIXELS:,}); "
                   "a larger request body gets 413 before it is read")
    p.add_argument("--quiet", action="store_true", help="do not log each request")
    g = p.add_argument_group("limits under load")
    g.add_argument("--workers", type=int, default=d.workers, metavar="N",
                   help=f"searches at once (default: one per CPU, here {cpu_count()}); torch gets CPUs / N threads "
                   "per search")
    g.add_argument("--queue", type=int, default=d.queue, metavar="N",
                   help=f"searches that may wait for a worker, first come first served (default {d.queue}); "
                   "more get 503")
    g.add_argument("--queue-timeout", type=float, default=d.queue_timeout, metavar="S",
                   help=f"longest wait for a worker before 503 with Retry-After (default {d.queue_timeout:g})")
    g.add_argument("--max-connections", type=int, default=d.max_connections, metavar="N",
                   help=f"open connections, a thread each (default {d.max_connections}); more get 503")
    g.add_argument("--backlog", type=int, default=d.backlog, metavar="N",
                   help=f"listen backlog (default {d.backlog}; the kernel caps it at net.core.somaxconn)")
    g.add_argument("--header-timeout", type=float, default=d.header_timeout, metavar="S",
                   help=f"request line and headers must arrive within S seconds of their first byte, else 408 "
                   f"(default {d.header_timeout:g})")
    g.add_argument("--body-timeout", type=float, default=d.body_timeout, metavar="S",
                   help=f"a request body must arrive within S seconds, else 408 (default {d.body_timeout:g})")
    g.add_argument("--idle-timeout", type=float, default=d.idle_timeout, metavar="S",
                   help=f"close a keep-alive connection idle for S seconds (default {d.idle_timeout:g})")
    g.add_argument("--send-timeout", type=float, default=d.send_timeout, metavar="S",
                   help=f"drop a client that has not taken its response within S seconds (default {d.send_timeout:g})")
    return p


def limits_from(args: argparse.Namespace) -> Limits:
    """The :class:`Limits` of parsed ``amnet serve`` arguments (a bad value is an AmnetError)."""
    for name in ("workers", "queue", "max_connections", "backlog"):
        if getattr(args, name) < (0 if name in ("workers", "queue") else 1):
            raise AmnetError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be "
                             f"{'>= 0' if name in ('workers', 'queue') else '>= 1'}")
    for name in ("queue_timeout", "header_timeout", "body_timeout", "idle_timeout", "send_timeout"):
        if not getattr(args, name) > 0:
            raise AmnetError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be a positive number of seconds")
    if not args.max_upload_mb > 0:
        raise AmnetError(f"--max-upload-mb {args.max_upload_mb}: must be positive")
    return Limits(workers=args.workers, queue=args.queue, queue_timeout=args.queue_timeout,
                  max_connections=args.max_connections, backlog=args.backlog, header_timeout=args.header_timeout,
                  body_timeout=args.body_timeout, idle_timeout=args.idle_timeout, send_timeout=args.send_timeout,
                  max_upload_bytes=int(args.max_upload_mb * 2**20))


def main(argv: list[str] | None = None, load: Loader = Searcher.load) -> int:
    """``amnet serve``. ``load`` builds the searcher, as in :func:`amnet.search.cli.main`."""
    args = build_parser().parse_args(argv)
    limits = limits_from(args)
    cap_malloc_arenas(max(2, limits.search_workers))  # before the load starts threads
    log.setLevel(logging.WARNING if args.quiet else logging.NOTSET)  # --quiet: no line per request
    logs.timestamped()  # a service's log: every line with its time, on a terminal too
    searcher = load(args.model, features=args.features, gallery=args.gallery, max_pixels=MAX_UPLOAD_PIXELS)
    use_threads(limits.search_workers)
    try:
        server = make_server(searcher, args.host, args.port, limits=limits)
    except OSError as exc:
        raise AmnetError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); pick another --port") from exc
    host, port = server.server_address[:2]
    print(f"amnet serve: {searcher.source} ({searcher.loaded.variant}), gallery of {searcher.size} images\n"
          f"  open http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    log.info("limits: %d search workers, queue %d (%g s), %d connections, timeouts: headers %g s, body %g s, "
             "idle %g s, send %g s", limits.search_workers, limits.queue, limits.queue_timeout,
             limits.max_connections, limits.header_timeout, limits.body_timeout, limits.idle_timeout,
             limits.send_timeout)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
