"""The servable model's query rows (:mod:`amnet.ops.registry.servable`: ``_query``, ``_changes``, ``_k``
and :meth:`SearchModel.predict`, what ``mlflow models serve`` runs).

Any row (any columns, any values, pandas' missing values) gets ranked results or one
:class:`AmnetError` naming the field (or the unknown attribute or value); a ``gallery_id`` is only ever
an id of the gallery, never a file the server would read. Never another error.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from amnet.errors import AmnetError
from amnet.ops.registry import servable
from tests.property.inputs import EXAMPLES, mostly, text
from tests.property.search_inputs import (
    IMAGE,
    UPLOADS,
    changes,
    gallery_ids,
    json_values,
    ks,
    message_names,
    real_ids,
)

MISSING = [None, float("nan"), pd.NA, pd.NaT, np.nan, "", "  "]
BASE64 = base64.b64encode(IMAGE).decode()


def cells(usual: st.SearchStrategy) -> st.SearchStrategy:
    """A cell of a query row: ``usual`` mostly, else a missing value, a numpy scalar or any JSON."""
    return mostly(usual, st.one_of(st.sampled_from(MISSING), st.sampled_from([np.int64(3), np.float64(2.0),
                                                                               np.bool_(True)]), json_values(2)), 2)


@st.composite
def rows(draw: st.DrawFn) -> dict:
    """A query row: gallery_id and / or image (base64), changes (a mapping or its JSON), k; extra columns."""
    row: dict = {}
    if draw(st.integers(0, 3)) < 3:
        row["gallery_id"] = draw(cells(gallery_ids()))
    if draw(st.integers(0, 3)) == 0:
        row["image"] = draw(cells(mostly(st.sampled_from([BASE64, *UPLOADS]), text(), 2)))
    if draw(st.booleans()):
        row["changes"] = draw(cells(mostly(changes(), changes().map(json.dumps), 2)))
    if draw(st.booleans()):
        row["k"] = draw(cells(ks()))
    if draw(st.integers(0, 9)) == 9:
        row[draw(text(8))] = draw(json_values(2))
    return row


def changes_of(row: dict) -> object:
    """A row's changes as given: a mapping, or the mapping its JSON text holds."""
    given = row.get("changes")
    if isinstance(given, str):
        try:
            return json.loads(given)
        except (ValueError, RecursionError):
            return None
    return given


@pytest.fixture(scope="module")
def image_file(tmp_path_factory) -> Path:
    """An image file on the server's disk (a query must never read it by its path)."""
    path = tmp_path_factory.mktemp("servable") / "query.jpg"
    path.write_bytes(IMAGE)
    return path


@pytest.fixture(scope="module")
def model(searcher) -> servable.SearchModel:
    model = servable.SearchModel()
    model.searcher = searcher
    return model


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.one_of(json_values(), st.sampled_from(MISSING)), st.sampled_from(["image", "gallery_id", "changes", "k"]))
@example("[" * 50_000, "changes")
@example("abc", "k")
@example(float("inf"), "k")
@example(1.5, "k")
@example(True, "k")
@example(pd.NA, "k")
@example(pd.NA, "gallery_id")
def test_each_field_parses_or_names_itself(value, field):
    parse = {"image": servable._query, "gallery_id": servable._query, "changes": servable._changes, "k": servable._k}
    try:
        parsed = parse[field]({field: value} if field in ("image", "gallery_id") else value)
    except AmnetError as exc:
        message_names(str(exc), {})
    else:
        if field == "k":
            assert isinstance(parsed, int) and not isinstance(parsed, bool) and parsed >= 1
        elif field == "changes":
            assert isinstance(parsed, dict) and all(isinstance(x, str) for kv in parsed.items() for x in kv)
        else:
            assert isinstance(parsed, (str, bytes))


@pytest.mark.slow  # about 30-45 s on 2 CPUs: each input runs a validation or a search
@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(rows(), min_size=1, max_size=3))
@example([{"gallery_id": "/etc/passwd"}])  # a path was once read as the query image
@example([{"gallery_id": "<IMAGE_FILE>"}])
@example([{"gallery_id": "s3://bucket/key.jpg"}])
@example([{"gallery_id": "<ID0>", "k": "abc"}, {"gallery_id": "<ID1>", "k": float("inf")}])
def test_a_query_row_gets_results_or_names_the_field(model, searcher, image_file, batch):
    tokens = {"gallery_id": lambda v: real_ids(v, searcher.ids).replace("<IMAGE_FILE>", str(image_file))}
    batch = [{k: tokens[k](v) if k in tokens and isinstance(v, str) else v for k, v in row.items()} for row in batch]
    sent_image = any(servable._present(r.get("image")) for r in pd.DataFrame(batch).to_dict("records"))
    try:
        answer = model.predict(None, pd.DataFrame(batch))
    except AmnetError as exc:
        event("refused")
        given = {k: v for r in batch if isinstance(c := changes_of(r), dict) for k, v in c.items()}
        message_names(str(exc), {"changes": given}, *(r.get("gallery_id") for r in batch))
        assert sent_image or "query image" not in str(exc), "a gallery_id was read as an image file"
    else:
        event("searched")
        assert sent_image or all(str(r.get("gallery_id")) in searcher.row for r in batch), "searched by a path"
        assert list(answer.columns) == list(servable.OUTPUT_COLUMNS)
        assert answer["query"].isin(range(len(batch))).all()
