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
nothing is written to disk. Errors are JSON ``{"error": "..."}`` with a 4xx status; a semaphore bounds
concurrent searches, so a burst of uploads cannot exhaust memory.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import textwrap
import threading
import time
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
MAX_SAMPLE = 200
CONCURRENT_SEARCHES = 4
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


class HttpError(Exception):
    """A request the server refuses: status + one-line message sent as JSON."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


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

    def __init__(self, searcher: Searcher, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.searcher = searcher
        self.max_upload_bytes = max_upload_bytes
        self.slots = threading.BoundedSemaphore(CONCURRENT_SEARCHES)

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
        changes = body.get("changes") or {}
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
        start = time.perf_counter()
        with self.slots:
            results = self.searcher.search(source, changes, k)
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
        text = upload.split(",", 1)[1] if upload.startswith("data:") else upload
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


class Handler(BaseHTTPRequestHandler):
    """HTTP plumbing for :class:`SearchApp`: routing, limits, JSON errors, security headers."""

    app: SearchApp  # set on the subclass made by make_server
    server_version = "amnet-serve"
    sys_version = ""
    timeout = 30  # seconds a client may take to send its request (slow senders are dropped)
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch(self._post)

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
        if length is None or not length.isdigit():
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if int(length) > max_body_bytes(self.app.max_upload_bytes):
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self.app.too_large_message())
        raw = self.rfile.read(int(length))
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, "body is not valid JSON") from exc

    def _dispatch(self, route) -> None:
        try:
            route()
        except HttpError as exc:
            self._error(exc.status, str(exc))
        except AmnetError as exc:  # bad attribute, value, image: the user's input
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
        except Exception:
            log.exception("request %s %s failed", self.command, self.path)
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the server log")

    def _error(self, status: HTTPStatus, message: str) -> None:
        if self.command == "POST":
            self.close_connection = True  # the body may be unread: do not reuse the connection
        self._json({"error": message}, status)

    def _json(self, payload: dict, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", cache="no-store")

    def _send(self, status: HTTPStatus, body: bytes, mime: str, cache: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", mime)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        log.info("%s %s", self.address_string(), format % args)


def make_server(searcher: Searcher, host: str = "127.0.0.1", port: int = 8000,
                max_upload_bytes: int = MAX_UPLOAD_BYTES) -> ThreadingHTTPServer:
    """A ready (not yet serving) server; ``port=0`` picks a free port (``server.server_address``)."""
    handler = type("AmnetHandler", (Handler,), {"app": SearchApp(searcher, max_upload_bytes)})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="amnet serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill("Serve a web page for interactive search: browse the gallery or upload an "
                                  "image, choose attribute changes from the model's vocabulary, click a result "
                                  "to search from it.", 100),
        epilog="examples:\n  amnet serve --model models:/amnet@champion --gallery s3://amnet/runs/split\n"
        "  amnet serve --model out/model --features out/features --gallery out/split --port 8080\n\n"
        "The JSON API behind the page: GET /api/vocab, GET /api/gallery?n=24, POST /api/search, GET /img/ID.\n"
        "Uploads are decoded in memory (nothing is written to disk) and limited in size and pixels.")
    p.add_argument("--model", required=True, metavar="URI", help=MODEL_HELP)
    p.add_argument("--features", metavar="URI", help=FEATURES_HELP)
    p.add_argument("--gallery", metavar="SPLIT", help="the split (or its gallery/ shards): thumbnails and browsing")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine "
                   "only; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_BYTES / 2**20, metavar="MB",
                   help=f"upload size limit (default {MAX_UPLOAD_BYTES / 2**20:g}; pixels: {MAX_UPLOAD_PIXELS:,})")
    p.add_argument("--quiet", action="store_true", help="do not log each request")
    return p


def main(argv: list[str] | None = None, load: Loader = Searcher.load) -> int:
    """``amnet serve``. ``load`` builds the searcher, as in :func:`amnet.search.cli.main`."""
    args = build_parser().parse_args(argv)
    log.setLevel(logging.WARNING if args.quiet else logging.NOTSET)  # --quiet: no line per request
    logs.timestamped()  # a service's log: every line with its time, on a terminal too
    searcher = load(args.model, features=args.features, gallery=args.gallery, max_pixels=MAX_UPLOAD_PIXELS)
    try:
        server = make_server(searcher, args.host, args.port, int(args.max_upload_mb * 2**20))
    except OSError as exc:
        raise AmnetError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); pick another --port") from exc
    host, port = server.server_address[:2]
    print(f"amnet serve: {searcher.source} ({searcher.loaded.variant}), gallery of {searcher.size} images\n"
          f"  open http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
