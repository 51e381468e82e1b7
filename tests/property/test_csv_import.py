"""The CSV importer (``amnet data import csv``; :func:`amnet.data.importers.import_csv`), then validation.

A CSV of any header, cells, quoting, encoding and image paths (``..``, absolute, symlinks, URIs) either
is refused with one :class:`DatasetError` naming the file or a column, or becomes a dataset whose rows
all validate or are quarantined with a reason; no image from outside the root is ever copied or kept,
and nothing is written outside the output folder. Never another error.
"""

from __future__ import annotations

import csv
import io
import itertools
import shutil
from pathlib import Path

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from amnet.data.importers import import_csv
from amnet.data.schema import ITEM_ID
from amnet.data.validate import validate_dataset
from amnet.errors import AmnetError, DatasetError
from tests.property.datasets import CELLS, ROOT, SECRET, Layout, good_image_paths, make_layout
from tests.property.inputs import EXAMPLES, assert_names, mostly, text

COUNTER = itertools.count()
HEADER = ["image", "image_id", ITEM_ID, "color", "shape", "labels", "fit"]


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Layout:
    return make_layout(tmp_path_factory.mktemp("csv-imports"))


def files_outside(layout: Layout) -> set[Path]:
    """Every file beside the dataset root (where an import must never write)."""
    return {p for p in layout.root.parent.iterdir() if not p.name.startswith("out-")}


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[bytes, str, list[str] | None, str | None]:
    """A CSV's bytes (well formed through the csv module, or any text), the image column, the attribute
    columns asked for (None: all others) and the item column."""
    extra = st.lists(st.sampled_from(["image_id", ITEM_ID, "labels", "fit"]), max_size=3, unique=True)
    header = draw(mostly(extra.map(lambda e: ["image", "color", "shape", *e]),
                         st.lists(st.one_of(st.sampled_from(HEADER), text(8)), min_size=1, max_size=4), 3))
    cells = {"image": good_image_paths(), "image_id": mostly(st.sampled_from(["a", "b", "c", ""]), text()),
             ITEM_ID: mostly(st.sampled_from(["g1", "g2", ""]), text())}
    row = st.tuples(*(cells.get(name, st.one_of(st.sampled_from(CELLS), text())) for name in header))
    rows = draw(mostly(st.lists(row, min_size=1, max_size=6), st.just([]), 6))
    if draw(st.integers(0, 4)) < 4:  # hypothesis favours small numbers: 0 is the usual case
        out = io.StringIO()
        writer = csv.writer(out, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])))
        writer.writerow(header)
        writer.writerows(rows)
        content = out.getvalue()
    else:
        content = draw(text(200))
    data = content.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 9:  # damaged: not UTF-8, cut short, a NUL for a comma
        data = draw(st.sampled_from([b"\xff\xfe" + data, data[:-1], data.replace(b",", b"\x00", 1)]))
    image_column = draw(mostly(st.just("image"), st.one_of(st.sampled_from(HEADER), text(8))))
    attributes = draw(mostly(st.none(), st.lists(st.one_of(st.sampled_from(HEADER), text(8)), max_size=3), 3))
    item_column = draw(mostly(st.none(), st.one_of(st.sampled_from(HEADER), text(8)), 3))
    return data, image_column, attributes, item_column


@settings(max_examples=EXAMPLES, deadline=None)
@given(csv_files())
@example((b"image,color\n../secret.jpg,red\nlink-out.jpg,blue\n<SECRET>,red\na.jpg,blue\n", "image", None, None))
@example((b"image,color\na.jpg,red,\nsub/b.jpg,blue,\n", "image", None, None))
@example((b"image,color\n\xff\xfe,red\n", "image", None, None))
@example((b"image,image_id,color\na.jpg,x,red\nsub/b.jpg,y,blue\n", "image", ["image_id"], None))
def test_a_csv_imports_and_validates_or_is_named(layout, case):
    data, image_column, attributes, item_column = case
    source = layout.root.parent / "input.csv"
    source.write_bytes(data.replace(SECRET.encode(), str(layout.secret).encode())
                       .replace(ROOT.encode(), str(layout.root).encode()))
    out = layout.root.parent / f"out-{next(COUNTER)}"
    before = files_outside(layout)
    try:
        summary = import_csv(str(source), image_column, str(layout.root), str(out), attributes, progress=False,
                             item_column=item_column)
        result = validate_dataset(str(out), progress=False, workers=1)
    except AmnetError as exc:
        event("refused: " + str(exc).split(": ", 1)[-1][:30])
        assert isinstance(exc, DatasetError), exc
        assert_names(str(exc), str(source), image_column, item_column, *(attributes or []), "attribute")
    else:
        event(f"imported: {'some' if result.num_kept else 'no'} rows kept")
        assert result.rows_in == summary["rows"] == result.num_kept + result.num_quarantined
        assert all(isinstance(r, str) and r for r in result.quarantine["reason"])
        secret = layout.secret_bytes
        assert all(data != secret for data in result.kept["image_bytes"]), "kept an image from outside the root"
        copied = [p for p in out.rglob("*") if p.is_file() and not p.is_symlink()]
        assert all(p.read_bytes() != secret for p in copied), "copied an image from outside the root"
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert files_outside(layout) == before, "the import wrote outside its output folder"


def test_rows_longer_than_the_header_are_refused_not_shifted(layout):
    """A trailing comma on every row once made pandas read the first column as the index, shifting every
    column by one (the image column got the colours)."""
    source = layout.root.parent / "trailing.csv"
    source.write_text("image,color\na.jpg,red,\nsub/b.jpg,blue,\n")
    with pytest.raises(DatasetError, match="more fields than the header") as refused:
        import_csv(str(source), "image", str(layout.root), str(layout.root.parent / "out-trailing"), progress=False)
    assert str(source) in str(refused.value)
