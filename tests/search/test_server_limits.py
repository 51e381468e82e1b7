"""`amnet serve` under pressure: too-large and malformed requests, slow clients, more requests than workers.

Each test starts its own server with small limits (fractions of a second, one worker) over the tiny
search model of tests/search/test_searcher.py and talks raw HTTP over sockets, so it can send half a
request, stall, or open many connections at once. Time bounds here only keep a broken server from
hanging the suite; speed under load is measured by benchmarks/serve_load.py.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress

import pytest

from amnet.errors import AmnetError
from amnet.search.searcher import Searcher
from amnet.search.server import Busy, Limits, SearchPool, build_parser, limits_from, make_server
from tests.search.test_searcher import build_tiny_search_model

UPLOAD_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def searcher(tmp_path_factory) -> Searcher:
    tiny = build_tiny_search_model(tmp_path_factory.getbasetemp())
    return Searcher.load(str(tiny / "model"), features=str(tiny / "feats"), gallery=str(tiny / "split"))


class SlowSearcher:
    """The real searcher, but each search takes at least ``seconds`` (to fill the workers on purpose)."""

    def __init__(self, searcher: Searcher, seconds: float) -> None:
        self._searcher, self._seconds = searcher, seconds

    def search(self, *args, **kwargs):
        time.sleep(self._seconds)
        return self._searcher.search(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._searcher, name)


@contextmanager
def serving(searcher, **limits) -> Iterator[int]:
    """A server with these :class:`Limits` on a free loopback port, in a thread; yields the port."""
    server = make_server(searcher, "127.0.0.1", 0, limits=Limits(max_upload_bytes=UPLOAD_LIMIT, **limits))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def connect(port: int, timeout: float = 20) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, dict(resp.getheaders()), resp.read()


def post(path: str, body: bytes, length: int | None = None, extra: str = "") -> bytes:
    """A POST's bytes, with ``length`` (default: the body's) as its Content-Length."""
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n{extra}\r\n").encode() + body


def search(body: dict) -> bytes:
    return post("/api/search", json.dumps(body).encode())


def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(port) as sock:
        sock.sendall(data)
        return read_response(sock)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (EOF or reset), reading what it still sends."""
    try:
        while chunk := sock.recv(65536):
            del chunk
    except ConnectionError:
        pass
    return True


# ------------------------------------------------------------------------------------- sizes


def test_oversize_body_is_refused_from_content_length_before_it_is_read(searcher):
    with serving(searcher) as port, connect(port) as sock:
        sock.sendall(post("/api/search", b'{"upload": "' + b"A" * 4096, length=50 * 2**20))  # 4 KiB of 50 MiB
        status, headers, body = read_response(sock)  # answered although the rest never comes
        assert status == 413 and headers["Connection"] == "close"
        assert json.loads(body)["error"] == "image too large; the limit is 0.0625 MB"
        assert closed_by_server(sock)


def test_oversize_body_with_expect_100_continue_is_refused_before_it_is_sent(searcher):
    with serving(searcher) as port, connect(port) as sock:
        sock.sendall(post("/api/search", b"", length=50 * 2**20, extra="Expect: 100-continue\r\n"))
        status, _, body = read_response(sock)  # a 413, not "100 Continue"
        assert status == 413 and "the limit is" in json.loads(body)["error"]


# ------------------------------------------------------------------------------------- malformed


def test_malformed_requests_get_4xx_naming_the_problem(searcher):
    query = searcher.ids[0]
    cases = [
        (post("/api/search", b'{"gallery_id": "x", "k": '), 400, "body is not valid JSON"),
        (search({"gallery_id": query, "changes": {"sheen": "matte"}}), 400, "valid attributes: category, color"),
        (search({"upload": base64.b64encode(b"GIF89a" + bytes(300)).decode()}), 400, "query image rejected"),
        (search({"upload": "***"}), 400, "upload is not valid base64"),
        (search({"gallery_id": query, "k": "20"}), 400, "k must be an integer from 1 to 100"),
        (b"POST /api/search HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}", 415,
         "send JSON"),
        (b"POST /api/search HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\r\n", 411,
         "Content-Length required"),
        (post("/api/nothing", b"{}"), 404, "no such endpoint '/api/nothing'"),
    ]
    with serving(searcher) as port:
        for data, code, message in cases:
            status, _, body = exchange(port, data)
            assert status == code and message in json.loads(body)["error"], (data[:60], status, body)
        garbled = [(b"GARBAGE\r\n\r\n", 400, b"Bad request syntax"), (b"GET / HTTP/1.1 x\r\n\r\n", 400, b"Bad request"),
                   (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", 431, b"Too many headers")]
        for data, code, message in garbled:  # not HTTP: http.server's own errors, with a status line
            status, _, body = exchange(port, data)
            assert status == code and message in body, (data[:30], status, body)


def test_a_body_shorter_than_its_content_length_is_a_400(searcher):
    with serving(searcher) as port, connect(port) as sock:
        sock.sendall(post("/api/search", b'{"gallery_id": ', length=500))
        sock.shutdown(socket.SHUT_WR)  # the client gives up sending
        status, _, body = read_response(sock)
        assert status == 400 and json.loads(body)["error"] == "body ended after 15 of 500 bytes"


def test_the_connection_stays_usable_after_an_answered_error(searcher):
    """A 4xx whose body was read keeps the connection alive; the next search on it works."""
    with serving(searcher) as port, connect(port) as sock:
        sock.sendall(search({"gallery_id": searcher.ids[0], "changes": {"sheen": "matte"}}))
        status, headers, _ = read_response(sock)
        assert status == 400 and headers.get("Connection") != "close"
        sock.sendall(search({"gallery_id": searcher.ids[0], "k": 3}))
        status, _, body = read_response(sock)
        assert status == 200 and len(json.loads(body)["results"]) == 3


# ------------------------------------------------------------------------------------- slow clients


def test_a_slowloris_is_dropped_with_408_while_others_are_served(searcher):
    """Headers trickled a byte at a time never finish: the client gets 408 after ``header_timeout``
    however steadily it sends, and a normal client is answered meanwhile."""
    with serving(searcher, header_timeout=0.5) as port, connect(port) as slow:
        slow.sendall(b"POST /api/search HTTP/1.1\r\nHost: t\r\nX-Pad: ")
        answered = []
        t = threading.Thread(target=lambda: answered.append(exchange(port, search({"gallery_id": searcher.ids[1]}))))
        t.start()
        start, reply = time.monotonic(), b""
        while time.monotonic() - start < 10 and not reply:
            try:
                slow.sendall(b"a")
            except OSError:  # closed: what it was answered is still to be read
                break
            slow.settimeout(0.1)
            with suppress(TimeoutError):
                reply = slow.recv(65536)
        slow.settimeout(10)
        with suppress(OSError):
            reply += slow.recv(65536)
        t.join(20)
        assert reply.startswith(b"HTTP/1.1 408 ") and b"request headers not received within 0.5 s" in reply
        assert closed_by_server(slow)
        assert answered and answered[0][0] == 200


def test_a_slow_body_gets_408_and_an_idle_connection_is_closed(searcher):
    with serving(searcher, body_timeout=0.3, idle_timeout=0.3) as port:
        with connect(port) as sock:
            sock.sendall(post("/api/search", b'{"gallery_id"', length=200))  # and nothing more
            status, headers, body = read_response(sock)
            assert status == 408 and json.loads(body)["error"] == "request body not received within 0.3 s"
            assert headers["Connection"] == "close" and closed_by_server(sock)
        with connect(port) as sock:  # connects, never sends a request
            assert sock.recv(1) == b""  # closed by the server, quietly


# ------------------------------------------------------------------------------------- more than the workers


def test_more_concurrent_searches_than_workers_all_get_answers(searcher):
    """One worker, two queue places: of eight searches at once, some run, the rest get 503 with
    Retry-After at once; none is reset or left unanswered."""
    slow = SlowSearcher(searcher, 1.0)
    with serving(slow, workers=1, queue=2, queue_timeout=30) as port:
        body = search({"gallery_id": searcher.ids[0], "k": 2})
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: exchange(port, body), range(8)))
    statuses = sorted(a[0] for a in answers)
    assert set(statuses) == {200, 503} and statuses.count(200) >= 3, statuses
    for status, headers, raw in answers:
        if status == 503:
            assert int(headers["Retry-After"]) >= 1 and "searches waiting" in json.loads(raw)["error"]


def test_a_search_waiting_longer_than_the_queue_timeout_gets_503(searcher):
    slow = SlowSearcher(searcher, 1.0)
    with serving(slow, workers=1, queue=10, queue_timeout=0.2) as port:
        body = search({"gallery_id": searcher.ids[0], "k": 2})
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(exchange, port, body)
            time.sleep(0.3)  # the first search holds the only worker
            second = pool.submit(exchange, port, body)
            answers = sorted([first.result(), second.result()], key=lambda a: a[0])
    (ok, _, _), (busy, headers, raw) = answers
    assert (ok, busy) == (200, 503) and "Retry-After" in headers  # normally the second one waited
    assert "no search worker free within 0.2 s" in json.loads(raw)["error"]


def test_connections_beyond_the_limit_get_503_and_are_closed(searcher):
    with serving(searcher, max_connections=2) as port, connect(port) as a, connect(port) as b:
        time.sleep(0.2)  # both accepted: each holds a thread, waiting for its request
        status, headers, body = exchange(port, search({"gallery_id": searcher.ids[0]}))
        assert status == 503 and headers["Retry-After"] == "1" and "2 connections open" in json.loads(body)["error"]
        a.sendall(search({"gallery_id": searcher.ids[0], "k": 1}))  # the open ones still work
        assert read_response(a)[0] == 200
        del b


def test_the_pool_serves_waiters_first_come_first_served():
    pool = SearchPool(workers=1, queue=10, timeout=30)
    order: list[int] = []
    threads = []
    with pool.slot():
        for i in range(5):
            def take(i: int = i) -> None:
                with pool.slot():
                    order.append(i)
            threads.append(threading.Thread(target=take))
            threads[-1].start()
            while pool.waiting < i + 1:  # queued before the next one arrives
                time.sleep(0.001)
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3, 4]


def test_the_pool_refuses_beyond_its_queue():
    pool = SearchPool(workers=1, queue=0, timeout=30)
    with pool.slot(), pytest.raises(Busy, match="0 searches waiting") as exc, pool.slot():
        pass
    assert exc.value.retry_after >= 1


# ------------------------------------------------------------------------------------- flags


def test_serve_flags_set_the_limits():
    args = build_parser().parse_args(["--model", "m", "--workers", "3", "--queue", "7", "--header-timeout", "2.5",
                                      "--max-upload-mb", "1"])
    limits = limits_from(args)
    assert (limits.workers, limits.queue, limits.header_timeout, limits.max_upload_bytes) == (3, 7, 2.5, 2**20)
    assert limits_from(build_parser().parse_args(["--model", "m"])) == Limits()
    with pytest.raises(AmnetError, match="--body-timeout 0.0: must be a positive number of seconds"):
        limits_from(build_parser().parse_args(["--model", "m", "--body-timeout", "0"]))


def test_the_listen_backlog_is_the_setting(searcher):
    server = make_server(searcher, "127.0.0.1", 0, limits=Limits(backlog=777))
    try:
        assert server.request_queue_size == 777
    finally:
        server.server_close()
