"""`amnet serve`: the JSON API over real HTTP, then the page end to end in a real headless Chromium.

The browser test drives Debian's ``chromium`` (``apt-get install -y chromium``) through Playwright
(``pip install playwright``; never its own browser download: ``executable_path`` points at the
system binary). It keeps a screenshot of the page in ``tmp_path`` and, when ``AMNET_TEST_ARTIFACTS``
is set, copies it there.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from amnet.search.searcher import Searcher
from amnet.search.server import make_server
from tests.helpers import chromium_page
from tests.search.test_searcher import build_tiny_search_model


@pytest.fixture(scope="module")
def searcher(tmp_path_factory) -> Searcher:
    tiny = build_tiny_search_model(tmp_path_factory.getbasetemp())
    return Searcher.load(str(tiny / "model"), features=str(tiny / "feats"), gallery=str(tiny / "split"))


@pytest.fixture(scope="module")
def url(searcher) -> Iterator[str]:
    """``amnet serve`` on a free loopback port, in a thread, with a 64 KiB upload limit."""
    server = make_server(searcher, "127.0.0.1", 0, max_upload_bytes=64 * 1024)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def request(url: str, path: str, body: object = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one HTTP request; a dict body is sent as JSON."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    hdrs = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
    req = urllib.request.Request(url + path, data=data, headers={**hdrs, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def error_of(url: str, path: str, body: object = None, headers: dict | None = None) -> tuple[int, str]:
    status, _, raw = request(url, path, body, headers)
    return status, json.loads(raw)["error"]


# --------------------------------------------------------------------------------------- the API


def test_vocab_gallery_and_images(url, searcher):
    status, _, raw = request(url, "/api/vocab")
    vocab = json.loads(raw)
    assert status == 200 and [a["name"] for a in vocab["attributes"]] == searcher.vocab.names
    assert vocab["gallery_size"] == searcher.size and vocab["has_images"]
    items = json.loads(request(url, "/api/gallery?n=5&seed=3")[2])["items"]
    assert len(items) == 5 and set(items[0]["attributes"]) == set(searcher.vocab.names)
    status, headers, raw = request(url, f"/img/{items[0]['image_id']}.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and raw[:3] == b"\xff\xd8\xff"
    assert headers["X-Content-Type-Options"] == "nosniff" and "script-src 'self'" in headers["Content-Security-Policy"]
    assert request(url, "/img/no-such-id.jpg")[0] == 404


def test_search_by_gallery_id_and_by_upload(url, searcher):
    query = searcher.ids[0]
    status, _, raw = request(url, "/api/search", {"gallery_id": query, "changes": {"color": "blue"}, "k": 4})
    res = json.loads(raw)
    assert status == 200 and len(res["results"]) == 4 and res["query"]["attributes"] == searcher.attributes(query)
    expected = [r.image_id for r in searcher.search(query, {"color": "blue"}, k=4)]
    assert [r["image_id"] for r in res["results"]] == expected
    upload = base64.b64encode(searcher.image_bytes(query)).decode()
    res = json.loads(request(url, "/api/search", {"upload": "data:image/jpeg;base64," + upload, "k": 2})[2])
    assert res["results"][0]["image_id"] == query


def test_bad_requests_get_clear_json_errors(url, searcher):
    query = searcher.ids[0]
    status, msg = error_of(url, "/api/search", {"gallery_id": query, "changes": {"color": "teal"}})
    assert status == 400 and "valid values: black, white" in msg
    status, msg = error_of(url, "/api/search", {"gallery_id": query, "changes": {"shade": "dark"}})
    assert status == 400 and "valid attributes: category, color" in msg
    assert error_of(url, "/api/search", {"gallery_id": "nope"})[0] == 404
    assert error_of(url, "/api/search", {"gallery_id": query, "k": 0})[0] == 400
    assert "exactly one of" in error_of(url, "/api/search", {"changes": {}})[1]
    cut = base64.b64encode(searcher.image_bytes(query)[:300]).decode()
    status, msg = error_of(url, "/api/search", {"upload": cut})
    assert status == 400 and "query image rejected: truncated or corrupt image" in msg
    status, msg = error_of(url, "/api/search", {"upload": base64.b64encode(b"%PDF-1.7 nope").decode()})
    assert status == 400 and "not an image" in msg
    assert "not valid base64" in error_of(url, "/api/search", {"upload": "***"})[1]
    status, msg = error_of(url, "/api/search", {"upload": base64.b64encode(os.urandom(70_000)).decode()})
    assert status == 413 and "the limit is 0.0625 MB" in msg
    status, msg = error_of(url, "/api/search", b"x" * 200_000, {"Content-Type": "application/json"})
    assert status == 413  # refused from Content-Length, before the body is read
    assert error_of(url, "/api/search", b"{}", {"Content-Type": "text/plain"})[0] == 415
    assert error_of(url, "/api/search", b"{not json", {"Content-Type": "application/json"})[0] == 400
    assert error_of(url, "/nope")[0] == 404


# ----------------------------------------------------------------------------------- the browser


def _result_ids(page) -> list[str]:
    """The ids of the result tiles, read in one step (the grid may be replaced at any moment)."""
    return page.locator("#results .tile").evaluate_all("tiles => tiles.map(t => t.dataset.id)")


def _wait_for_new_results(page, before: list[str], timeout: float = 15) -> list[str]:
    """Result ids once they differ from ``before`` (the page replaces the grid after each search)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = _result_ids(page)
        if ids and ids != before:
            return ids
        page.wait_for_timeout(100)
    raise AssertionError(f"results did not change within {timeout} s (still {before[:3]}...)")


def test_search_change_and_click_through_in_chromium(url, searcher, tmp_path):
    errors: list[str] = []
    with chromium_page({"width": 1280, "height": 900}) as (sync_api, page):
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        sync_api.expect(page.locator("#model-info")).to_contain_text(f"gallery of {searcher.size} images")
        page.locator("#gallery .tile").first.wait_for()
        query = page.locator("#gallery .tile").first.get_attribute("data-id")

        page.locator("#gallery .tile").first.click()  # pick a gallery image: a visual search, no change
        sync_api.expect(page.locator("#query-id")).to_have_text(query)
        sync_api.expect(page.locator("#status")).to_contain_text("visual search on the image's own features")
        plain = _wait_for_new_results(page, [])
        assert len(plain) == 20 and query not in plain

        wanted = next(v for v in searcher.vocab.attributes[1].values if v != searcher.attributes(query)["color"])
        page.select_option("#change-color", wanted)  # a change runs the search again
        sync_api.expect(page.locator("#status")).to_contain_text("has every requested value")
        changed = _wait_for_new_results(page, plain)
        first = page.locator("#results .tile").first
        sync_api.expect(first.locator("li")).to_contain_text(f"color: {searcher.attributes(changed[0])['color']}")

        page.locator("#results .tile").nth(2).click()  # the third result becomes the next query
        sync_api.expect(page.locator("#query-id")).to_have_text(changed[2])
        sync_api.expect(page.locator("#change-color")).to_have_value("")  # changes start over
        after = _wait_for_new_results(page, changed)
        assert changed[2] not in after
        sync_api.expect(page.locator("#trail button")).to_have_count(2)

        page.set_input_files("#upload", files=[{"name": "notes.png", "mimeType": "image/png",
                                                 "buffer": b"not an image at all"}])
        sync_api.expect(page.locator("#error")).to_contain_text("not an image")
        sync_api.expect(page.locator("#query-id")).to_have_text(changed[2])  # the query stays

        shot = tmp_path / "amnet-serve.png"
        page.screenshot(path=str(shot), full_page=True)
    assert not errors, errors
    assert shot.stat().st_size > 10_000
    if os.environ.get("AMNET_TEST_ARTIFACTS"):
        dest = Path(os.environ["AMNET_TEST_ARTIFACTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / shot.name)
