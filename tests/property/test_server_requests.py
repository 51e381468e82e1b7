"""``amnet serve``'s request parsing (:mod:`amnet.search.server`): the search body, then whole HTTP requests.

Any JSON body gets search results or a refusal that names a field (or the unknown attribute or value)
with a 4xx status; any POST (any bytes, Content-Type and Content-Length) gets a JSON answer and never a
500. Never a traceback.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from amnet.errors import AmnetError
from amnet.search.server import MAX_K, SEARCH_FIELDS, HttpError, Limits, SearchApp, make_server
from tests.property.inputs import EXAMPLES, mostly, text
from tests.property.search_inputs import UPLOADS, changes, gallery_ids, json_values, ks, message_names, real_ids

SOURCES = ["gallery_id", "gallery_id", "gallery_id", "upload", "both", "neither"]


@st.composite
def bodies(draw: st.DrawFn) -> object:
    """A search body: mostly an object with one query source, changes and k (each any JSON at times),
    sometimes unknown fields; else any JSON value."""
    if draw(st.integers(0, 9)) == 9:
        return draw(json_values())
    source = draw(st.sampled_from(SOURCES))
    body: dict = {}
    if source in ("gallery_id", "both"):
        body["gallery_id"] = draw(gallery_ids())
    if source in ("upload", "both"):
        body["upload"] = draw(mostly(st.sampled_from(UPLOADS), st.one_of(text(), json_values(2)), 2))
    body |= draw(st.fixed_dictionaries({}, optional={"changes": changes(), "k": ks()}))
    if draw(st.integers(0, 9)) == 9:
        body |= draw(st.dictionaries(st.sampled_from(["chnages", "K", "image", "query", ""]), json_values(2),
                                     max_size=2))
    return body


@pytest.fixture(scope="module")
def app(searcher) -> SearchApp:
    return SearchApp(searcher, max_upload_bytes=64 * 1024)


def check_search(app: SearchApp, body: object) -> None:
    try:
        answer = app.search(body)
    except HttpError as exc:
        event(f"refused {exc.status.value}")
        assert 400 <= exc.status.value < 500, exc.status
        message_names(str(exc), body if isinstance(body, dict) else {})
    except AmnetError as exc:  # the handler answers these with 400
        event("refused 400 (attribute, value or image)")
        message_names(str(exc), body)
    else:
        event("searched")
        assert set(body) <= set(SEARCH_FIELDS), "an unknown field was ignored"
        assert body.get("changes") is None or isinstance(body["changes"], dict), "changes that are not a mapping"
        results = answer["results"]
        assert 1 <= len(results) <= body.get("k", 20) <= MAX_K
        assert [r["rank"] for r in results] == list(range(1, len(results) + 1))
        assert all(isinstance(r["matches"], bool) for r in results)
        json.dumps(answer)


@pytest.mark.slow  # about 30-45 s on 2 CPUs: each input runs a validation or a search
@settings(max_examples=EXAMPLES, deadline=None)
@given(bodies())
@example({"upload": "data:abc"})  # a data: URL without a comma (once a 500)
@example({"gallery_id": "<ID0>", "changes": []})  # [], "" and 0 were once taken for "no changes"
@example({"gallery_id": "<ID0>", "changes": ""})
@example({"gallery_id": "<ID0>", "changes": 0})
@example({"gallery_id": "<ID0>", "chnages": {"color": "blue"}})  # a misspelt field was once ignored
def test_a_search_body_gets_results_or_a_4xx_naming_the_field(app, searcher, body):
    check_search(app, real_ids(body, searcher.ids))


# ------------------------------------------------------------------------------------- over HTTP


@pytest.fixture(scope="module")
def port(searcher) -> Iterator[int]:
    """``amnet serve`` on a free loopback port; a body that never comes is given up on after 0.3 s."""
    limits = Limits(body_timeout=0.3, header_timeout=2.0, idle_timeout=2.0, max_upload_bytes=64 * 1024)
    server = make_server(searcher, "127.0.0.1", 0, limits=limits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


LATIN1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=12)


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, str | None, str | None]:
    """A POST /api/search: its body (JSON of a search body, or any bytes), Content-Type and Content-Length
    (None: not sent); mostly the right ones."""
    body = draw(mostly(bodies().map(lambda b: json.dumps(b).encode()),
                       st.one_of(st.binary(max_size=64), text().map(lambda t: t.encode("utf-8", "surrogatepass"))), 2))
    kind = draw(mostly(st.just("application/json"), st.one_of(st.none(), LATIN1,
                                                             st.just("application/json; charset=utf-8")), 3))
    length = draw(mostly(st.just(str(len(body))), st.one_of(
        st.none(), LATIN1, st.sampled_from(["²", "-1", "1e3", " 5", "0", str(len(body) // 2)])), 4))
    return body, kind, length


def post(port: int, body: bytes, kind: str | None, length: str | None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", "/api/search", skip_accept_encoding=True)
        if kind is not None:
            conn.putheader("Content-Type", kind)
        if length is not None:
            conn.putheader("Content-Length", length)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@settings(max_examples=EXAMPLES, deadline=None)
@given(requests())
@example((b"[" * 50_000, "application/json", "50000"))  # nested too deeply for json (once a 500)
@example((b"{}", "application/json", "\u00b2"))  # "²".isdigit(), yet int("²") fails (once a 500)
def test_any_post_gets_a_json_answer_never_a_500(port, searcher, request_parts):
    body, kind, length = request_parts
    status, answer = post(port, real_ids(body, searcher.ids), kind, length)
    event(f"status {status}")
    assert status < 500 or status == 503, (status, answer)
    assert status == 200 or set(answer) == {"error"}, answer
