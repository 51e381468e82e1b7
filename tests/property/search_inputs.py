"""Strategies for search requests: what a user sends (real gallery ids, attributes and values of the
tiny model, images, base64 and JSON of any shape) and the check that a refusal names the field."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from typing import Any

from hypothesis import strategies as st

from amnet.data.synth import VOCAB as SYNTH
from tests.helpers import jpeg
from tests.property.inputs import assert_names, mostly, text

VALUES = {a.name: list(a.values) for a in SYNTH.attributes}  # the tiny model's vocabulary (synthetic dataset)
IMAGE = jpeg(32, 32, (30, 120, 200))
UPLOADS = [base64.b64encode(IMAGE).decode(), "data:image/jpeg;base64," + base64.b64encode(IMAGE).decode(),
           "data:abc", "data:,", "data:image/png;base64,", base64.b64encode(b"%PDF-1.7").decode(),
           base64.b64encode(IMAGE[:60]).decode(), "***", "", "====", "QQ", "é", "\x00"]
FIELDS = ("gallery_id", "upload", "changes", "k", "image", "JSON object")


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any JSON value."""
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text())
    return st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(text(10), inner, max_size=3)),
                        max_leaves=max_leaves)


def pair() -> st.SearchStrategy[tuple[str, Any]]:
    """An attribute and a value: mostly a real attribute with one of its values; else unknown names,
    another attribute's value, or any JSON."""
    real = st.sampled_from(list(VALUES)).flatmap(lambda a: st.tuples(st.just(a), st.sampled_from(VALUES[a])))
    wrong = st.tuples(mostly(st.sampled_from(list(VALUES)), text(10), 1),
                      st.one_of(st.sampled_from([v for vs in VALUES.values() for v in vs]), text(10), json_values(2)))
    return mostly(real, wrong, 2)


def changes() -> st.SearchStrategy[Any]:
    """Mostly ``{attribute: value}`` (see :func:`pair`); else any JSON."""
    return mostly(st.lists(pair(), max_size=3).map(dict), json_values(), 3)


def ks() -> st.SearchStrategy[Any]:
    return mostly(st.integers(-2, 120), st.one_of(json_values(2), st.sampled_from(["5", "5.0", 5.0, 1.5, True])), 2)


def message_names(message: str, request: dict, *also: object) -> None:
    """The refusal names a field (as a word: ``k`` inside "unknown" does not count), the gallery id it
    was given, or an attribute or value it was given (an unknown one; changes given as JSON text too),
    or one of ``also``."""
    if any(re.search(rf"(?<![\w]){re.escape(field)}(?![\w])", message) for field in FIELDS):
        return
    given = request.get("changes")
    if isinstance(given, str):
        with contextlib.suppress(ValueError, RecursionError):
            given = json.loads(given)
    named = [*given, *given.values()] if isinstance(given, dict) else []
    assert_names(message, *named, request.get("gallery_id"), *also)


ID_TOKEN = re.compile(r"<ID(\d+)>")  # stands for the searcher's gallery id number N (filled in by real_ids)


def gallery_ids() -> st.SearchStrategy[Any]:
    """Mostly a real gallery id (as its ``<IDn>`` token), else any text or JSON."""
    return mostly(st.sampled_from([f"<ID{i}>" for i in range(40)]), st.one_of(text(), json_values(2)), 2)


def real_ids(value: Any, ids: list[str]) -> Any:
    """``value`` (text, bytes, or a mapping of them) with each ``<IDn>`` token replaced by gallery id n."""
    if isinstance(value, dict):
        return {k: real_ids(v, ids) for k, v in value.items()}
    if isinstance(value, str):
        return ID_TOKEN.sub(lambda m: ids[int(m[1])], value)
    if isinstance(value, bytes):
        return re.sub(ID_TOKEN.pattern.encode(), lambda m: ids[int(m[1])].encode(), value)
    return value
