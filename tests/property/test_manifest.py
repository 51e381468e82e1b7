"""The dataset manifest validator (``amnet data validate``; :mod:`amnet.data.validate`).

A manifest of any columns, Arrow types and cells (unicode, control characters, bytes, lists, nulls,
huge strings, paths out of the root) is either unreadable as a whole, one :class:`DatasetError` naming
the file or the column, or validated: every row kept or quarantined with a reason, the counts adding
up, and no kept row reading an image outside the dataset root. Never another error.
"""

from __future__ import annotations

import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from amnet.data.schema import ATTRIBUTES, ITEM_ID, MANIFEST
from amnet.data.validate import validate_dataset
from amnet.errors import AmnetError, DatasetError
from tests.property.datasets import CELLS, GOOD_PATHS, SECRET, VOCAB, Layout, image_paths, inside, make_layout
from tests.property.inputs import EXAMPLES, assert_names, mostly, text

COLUMNS = ["image_id", "image", "color", "shape", ITEM_ID]
GOOD = {"image": st.sampled_from(GOOD_PATHS),
        "color": st.sampled_from(["red", "blue", " blue ", ""]), "shape": st.sampled_from(["round", "square", ""]),
        ITEM_ID: st.sampled_from(["g1", "g2", "", " g1 "])}


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Layout:
    return make_layout(tmp_path_factory.mktemp("manifests"))


def column(cells: st.SearchStrategy, rows: int) -> st.SearchStrategy[pa.Array]:
    """``rows`` cells as an Arrow array: mostly strings, else ints, floats, bools, bytes, lists, structs,
    dates, nulls or dictionary-encoded strings."""
    strings = st.lists(st.one_of(cells, st.none()), min_size=rows, max_size=rows)
    others = {
        "int": st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), st.none()), min_size=rows, max_size=rows),
        "float": st.lists(st.one_of(st.floats(), st.none()), min_size=rows, max_size=rows),
        "bool": st.lists(st.one_of(st.booleans(), st.none()), min_size=rows, max_size=rows),
        "bytes": st.lists(st.one_of(st.binary(max_size=8), st.just(b"\xff\xfe"), st.just(b"red"), st.none()),
                          min_size=rows, max_size=rows),
        "list": st.lists(st.one_of(st.lists(st.integers(0, 9), max_size=2), st.none()), min_size=rows, max_size=rows),
        "struct": st.lists(st.fixed_dictionaries({"a": st.integers(0, 9)}), min_size=rows, max_size=rows),
        "date": st.lists(st.dates(datetime.date(1970, 1, 1)), min_size=rows, max_size=rows),
        "null": st.just([None] * rows),
    }
    return st.one_of(strings.map(lambda v: pa.array(v, pa.string())),
                     strings.map(lambda v: pa.array(v, pa.large_string())),
                     strings.map(lambda v: pa.array(v, pa.string()).dictionary_encode()),
                     *(s.map(lambda v, k=k: pa.array(v, pa.null()) if k == "null" else pa.array(v))
                       for k, s in others.items()))


@st.composite
def manifests(draw: st.DrawFn) -> pa.Table:
    """A manifest of 0 to 6 rows: half the time a tame one (the contract's columns as strings, cells
    mostly of their kind: rows get kept), else a wild one (columns missing or of any Arrow type, any
    cells, random extra columns)."""
    rows = draw(st.integers(0, 6))
    cells = {"image_id": st.one_of(st.sampled_from(["x", "y", "z", "x ", "", " "]), text()),
             "image": image_paths(), "color": st.one_of(st.sampled_from(CELLS), text()),
             "shape": st.one_of(st.sampled_from(CELLS), text()),
             ITEM_ID: st.one_of(st.sampled_from(["g1", "g2", "", " g1 "]), text())}
    wild = draw(st.booleans())
    arrays = {}
    for name in COLUMNS:
        if draw(st.integers(0, 19)) >= (19 if name != ITEM_ID else 10):
            continue  # absent (item_id, optional, half the time)
        if not wild:  # each cell good four times in five: whole rows pass
            good = GOOD[name] if name != "image_id" else st.sampled_from([f"r{i}" for i in range(rows)] or ["r"])
            arrays[name] = pa.array(draw(st.lists(mostly(good, cells[name]), min_size=rows, max_size=rows)),
                                    pa.string())
        else:
            arrays[name] = draw(column(cells[name] if draw(st.integers(0, 3)) else text(), rows))
    for name in draw(st.lists(text(8).filter(lambda n: n not in arrays), max_size=2 if wild else 0, unique=True)):
        arrays[name] = draw(column(text(), rows))
    return pa.table(arrays) if arrays else pa.table({"other": pa.array([None] * rows, pa.null())})


def real_table(layout: Layout, table: pa.Table) -> pa.Table:
    """``table`` with the folder placeholders in its ``image`` strings filled in."""
    if "image" not in table.column_names or not pa.types.is_string(table.schema.field("image").type):
        return table
    images = pa.array([layout.real(v) for v in table.column("image").to_pylist()], pa.string())
    return table.set_column(table.column_names.index("image"), "image", images)


def check(layout: Layout, table: pa.Table, attributes: str) -> None:
    table = real_table(layout, table)
    pq.write_table(table, layout.root / MANIFEST)
    (layout.root / ATTRIBUTES).write_text(attributes, encoding="utf-8", errors="surrogatepass")
    try:
        result = validate_dataset(str(layout.root), progress=False, workers=1)
    except AmnetError as exc:
        event("refused: " + str(exc).split(": ", 1)[-1][:30])
        assert isinstance(exc, DatasetError), exc
        assert_names(str(exc), MANIFEST, ATTRIBUTES, *table.column_names)
        return
    event(f"validated: {'some' if result.num_kept else 'no'} rows kept, "
          f"{'some' if result.num_quarantined else 'no'} quarantined")
    assert result.rows_in == table.num_rows == result.num_kept + result.num_quarantined
    assert all(isinstance(r, str) and r for r in result.quarantine["reason"])
    quarantined = set(result.quarantine["row"])
    kept_rows = [r for r in range(table.num_rows) if r not in quarantined]
    assert len(kept_rows) == result.num_kept
    images = table.column("image").to_pylist()
    for row, data in zip(kept_rows, result.kept["image_bytes"], strict=True):
        assert data != layout.secret_bytes, f"row {row} read the image outside the root: {images[row]!r}"
        if isinstance(images[row], str):
            assert inside(layout.root, images[row]), images[row]
    assert result.kept["image_id"].is_unique and all(i.strip() for i in result.kept["image_id"])


BROKEN_ATTRIBUTES = ['{"attributes": []}', '{"attributes": [{"name": "image"}]}', "[]",
                     '{"attributes": [{"name": "color", "values": "rb"}]}']
ATTRIBUTE_FILES = mostly(st.just(VOCAB.to_json()), st.one_of(text(60), st.sampled_from(BROKEN_ATTRIBUTES)))


@pytest.mark.slow  # about 30-45 s on 2 CPUs: each input runs a validation or a search
@settings(max_examples=EXAMPLES, deadline=None)
@given(manifests(), ATTRIBUTE_FILES)
@example(pa.table({"image_id": pa.array([b"\xff"]), "image": ["a.jpg"], "color": ["red"], "shape": ["round"]}),
         VOCAB.to_json())
@example(pa.table({"image_id": pa.array([[1]]), "image": ["a.jpg"], "color": ["red"], "shape": ["round"]}),
         VOCAB.to_json())
@example(pa.table({"image_id": ["x"], "image": pa.array([b"\xff"]), "color": ["red"], "shape": ["round"]}),
         VOCAB.to_json())
@example(pa.table({"image_id": ["x"], "image": ["a.jpg"], "color": pa.array([b"\xff"]), "shape": ["round"]}),
         VOCAB.to_json())
@example(pa.table({"image_id": ["x", "y", "z"], "image": ["../secret.jpg", "link-out.jpg", SECRET],
                   "color": ["red"] * 3, "shape": ["round"] * 3}), VOCAB.to_json())
@example(pa.Table.from_arrays([pa.array(["x"]), pa.array(["a.jpg"]), pa.array(["red"]), pa.array(["round"]),
                                pa.array(["blue"])], names=["image_id", "image", "color", "shape", "color"]),
         VOCAB.to_json())
def test_a_manifest_is_validated_or_named(layout, table, attributes):
    check(layout, table, attributes)
