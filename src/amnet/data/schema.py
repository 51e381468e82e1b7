"""The dataset contract: ``manifest.parquet`` + ``attributes.json`` and the attribute vocabulary.

``attributes.json``::

    {"attributes": [{"name": "color", "values": ["black", "white", ...]}, ...]}

``manifest.parquet`` columns: ``image_id`` (unique string), ``image`` (path relative to the dataset
root, or an absolute URI) and one string column per attribute; an empty or null cell is a missing
label (training ignores it, evaluation counts it as unknown). Optional: ``item_id`` (string; rows that
share one are variants of the same item with other attribute values, an empty or null cell = no
group); the split draws exact-target queries from these groups (:mod:`amnet.data.split`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from amnet import storage
from amnet.errors import DatasetError
from amnet.names import ATTRIBUTES_JSON as ATTRIBUTES
from amnet.names import MISSING

MANIFEST = "manifest.parquet"
ITEM_ID = "item_id"  # optional manifest column: the variant group a row belongs to
RESERVED_COLUMNS = ("image_id", "image", "image_bytes", "labels", "target", "changed", "num_changes", ITEM_ID,
                    "target_id")


@dataclass(frozen=True)
class Attribute:
    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Vocabulary:
    """Ordered attributes and their ordered values; C = total number of values (memory rows)."""

    attributes: tuple[Attribute, ...]

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.attributes]

    @property
    def num_attributes(self) -> int:  # M in the paper
        return len(self.attributes)

    @property
    def sizes(self) -> list[int]:  # C_m
        return [len(a.values) for a in self.attributes]

    @cached_property
    def offsets(self) -> list[int]:
        """Row of the first value of each attribute in the C x Q memory."""
        out, acc = [], 0
        for size in self.sizes:
            out.append(acc)
            acc += size
        return out

    @property
    def total_values(self) -> int:  # C in the paper
        return sum(self.sizes)

    def attribute_index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise DatasetError(f"unknown attribute {name!r}; valid attributes: {', '.join(self.names)}") from None

    def value_index(self, attr: int | str, value: str) -> int:
        a = self.attributes[attr if isinstance(attr, int) else self.attribute_index(attr)]
        try:
            return a.values.index(value)
        except ValueError:
            raise DatasetError(
                f"unknown value {value!r} for attribute {a.name!r}; valid values: {', '.join(a.values)}"
            ) from None

    def memory_row(self, attr: int, value: int) -> int:
        """Row of (attribute, value) in the C x Q memory matrix."""
        return self.offsets[attr] + value

    def describe(self, labels) -> dict[str, str]:
        """Label codes -> {attribute: value} ('?' for missing)."""
        return {
            a.name: (a.values[int(v)] if int(v) != MISSING else "?")
            for a, v in zip(self.attributes, labels, strict=True)
        }

    def to_json(self) -> str:
        payload = {"attributes": [{"name": a.name, "values": list(a.values)} for a in self.attributes]}
        return json.dumps(payload, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = ATTRIBUTES) -> Vocabulary:
        try:
            payload = json.loads(text)
            attrs = tuple(
                Attribute(str(a["name"]), tuple(str(v) for v in a["values"])) for a in payload["attributes"]
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(
                f"{source}: not a valid attributes file; expected "
                '{"attributes": [{"name": ..., "values": [...]}, ...]}'
            ) from exc
        vocab = cls(attrs)
        vocab.check(source)
        return vocab

    def check(self, source: str = ATTRIBUTES) -> None:
        if not self.attributes:
            raise DatasetError(f"{source}: no attributes defined")
        names = self.names
        if len(set(names)) != len(names):
            raise DatasetError(f"{source}: duplicate attribute names")
        for a in self.attributes:
            if a.name in RESERVED_COLUMNS:
                raise DatasetError(f"{source}: attribute name {a.name!r} is reserved; rename it")
            if len(a.values) < 2:
                raise DatasetError(
                    f"{source}: attribute {a.name!r} has {len(a.values)} value(s); "
                    "at least 2 are needed to manipulate it (drop the attribute or add values)"
                )
            if len(set(a.values)) != len(a.values):
                raise DatasetError(f"{source}: attribute {a.name!r} lists a value twice")


def load_vocabulary(dataset: str) -> Vocabulary:
    uri = storage.join(dataset, ATTRIBUTES)
    if not storage.exists(uri):
        raise DatasetError(f"{dataset}: no {ATTRIBUTES}; a dataset needs {MANIFEST} and {ATTRIBUTES}")
    return Vocabulary.from_json(storage.read_text(uri), source=uri)


def load_manifest(dataset: str, vocab: Vocabulary) -> pd.DataFrame:
    """The manifest with required columns checked; attribute cells as strings ('' = missing)."""
    uri = storage.join(dataset, MANIFEST)
    if not storage.exists(uri):
        raise DatasetError(f"{dataset}: no {MANIFEST}; a dataset needs {MANIFEST} and {ATTRIBUTES}")
    try:
        df = pd.read_parquet(io.BytesIO(storage.read_bytes(uri)))
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise DatasetError(f"{uri}: not a readable Parquet file ({type(exc).__name__})") from exc
    required = ["image_id", "image", *vocab.names]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{uri}: missing required column(s) {', '.join(missing)}; "
            f"a manifest needs image_id, image and one column per attribute in {ATTRIBUTES}"
        )
    if len(df) == 0:
        raise DatasetError(f"{uri}: the manifest has no rows; add one row per image or point at another dataset")
    df = df[required + ([ITEM_ID] if ITEM_ID in df.columns else [])].copy()
    df["image_id"] = df["image_id"].astype("string").fillna("")
    df["image"] = df["image"].astype("string").fillna("")
    for name in vocab.names:
        df[name] = df[name].astype("string").fillna("").str.strip()
    if ITEM_ID in df.columns:  # as text ('' = no group); validation refuses non-string cells
        df[ITEM_ID] = df[ITEM_ID].astype("string").fillna("").str.strip()
    return df.reset_index(drop=True)


def manifest_batches(dataset: str, vocab: Vocabulary, rows: int) -> tuple[int, np.ndarray, Iterator]:
    """The manifest streamed: ``(row count, duplicate mask, batches)``; each batch is
    ``(first row, frame of <= rows rows)`` normalised as :func:`load_manifest` does.

    ``duplicate[i]`` is True when an earlier row has row i's ``image_id`` (the first one counts). Only
    the id column is read whole (as Arrow strings); the other columns a batch at a time. With an
    ``item_id`` column, each frame also has one, as read: Python objects (str, None or whatever
    else the column holds; :func:`item_id_problem` judges a cell).
    """
    uri = storage.join(dataset, MANIFEST)
    if not storage.exists(uri):
        raise DatasetError(f"{dataset}: no {MANIFEST}; a dataset needs {MANIFEST} and {ATTRIBUTES}")
    try:
        source = pq.ParquetFile(io.BytesIO(storage.read_bytes(uri)))
        columns = source.schema_arrow.names
    except Exception as exc:  # pyarrow raises many types for a corrupt file
        raise DatasetError(f"{uri}: not a readable Parquet file ({type(exc).__name__})") from exc
    required = ["image_id", "image", *vocab.names]
    missing = [c for c in required if c not in columns]
    if missing:
        raise DatasetError(
            f"{uri}: missing required column(s) {', '.join(missing)}; "
            f"a manifest needs image_id, image and one column per attribute in {ATTRIBUTES}"
        )
    _check_text_columns(uri, source.schema_arrow, required)
    count = source.metadata.num_rows
    if count == 0:
        raise DatasetError(f"{uri}: the manifest has no rows; add one row per image or point at another dataset")
    ids = pc.fill_null(source.read(columns=["image_id"]).column(0).cast(pa.large_string()), "")
    codes = pc.dictionary_encode(ids).combine_chunks().indices.to_numpy(zero_copy_only=False)
    duplicate = np.ones(count, dtype=bool)
    duplicate[np.unique(codes, return_index=True)[1]] = False
    del ids, codes
    extra = [ITEM_ID] if ITEM_ID in columns else []

    def batches() -> Iterator[tuple[int, pd.DataFrame]]:
        first = 0
        for batch in source.iter_batches(batch_size=rows, columns=required + extra):
            df = batch.select(required).to_pandas()
            if extra:  # as Python objects: an int column stays ints (refused), not floats with NaN
                df[ITEM_ID] = pd.Series(batch.column(ITEM_ID).to_pylist(), index=df.index, dtype=object)
            df["image_id"] = df["image_id"].astype("string").fillna("")
            df["image"] = df["image"].astype("string").fillna("")
            for name in vocab.names:
                df[name] = df[name].astype("string").fillna("").str.strip()
            yield first, df
            first += len(df)

    return count, duplicate, batches()


def _check_text_columns(uri: str, schema: pa.Schema, names: list[str]) -> None:
    """Refuse a contract column that appears twice, or a required one that cannot be read as text: bytes
    (not necessarily UTF-8) or nested values (lists, structs, maps); a DatasetError naming the column.
    Numbers, booleans and dates are read as their text (and then refused or quarantined row by row)."""
    for name in [*names, ITEM_ID]:
        if len(schema.get_all_field_indices(name)) > 1:
            raise DatasetError(f"{uri}: column {name!r} appears {len(schema.get_all_field_indices(name))} times; "
                               "keep one")
    for name in names:
        kind = schema.field(name).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        binary = (pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind)
                  or getattr(pa.types, "is_binary_view", lambda _: False)(kind))
        if binary or pa.types.is_nested(kind):
            raise DatasetError(f"{uri}: column {name!r} holds {kind} values; image_id, image and the attribute "
                               "columns hold strings (write them as text)")


def item_id_problem(cell: object) -> tuple[str, str | None]:
    """``(group, reason)`` for one ``item_id`` cell: a string (stripped; '' = no group) or null (no
    group) is fine; anything else (a number, bytes, a list) is refused with a reason naming the column.
    Numbers are not cast: ``7`` and ``"7"`` would silently become the same group."""
    if cell is None or (isinstance(cell, float) and cell != cell):
        return "", None
    if isinstance(cell, str):
        return cell.strip(), None
    return "", f"item_id is not a string (got {type(cell).__name__} {str(cell)[:40]!r})"


def write_dataset(out: str, manifest: pd.DataFrame, vocab: Vocabulary) -> None:
    """Write a dataset's two contract files (atomic writes)."""
    buf = io.BytesIO()
    manifest.to_parquet(buf, index=False)
    storage.write_bytes(storage.join(out, MANIFEST), buf.getvalue())
    storage.write_text(storage.join(out, ATTRIBUTES), vocab.to_json())
