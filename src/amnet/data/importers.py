"""Convert labelled image collections into the dataset contract (``manifest.parquet`` + ``attributes.json``).

Two importers, both copying the images into ``out`` so the result is a self-contained dataset whose
``image`` paths are relative to it (validation refuses paths outside the dataset root):

* ``import_deepfashion``: the DeepFashion *Category and Attribute Prediction Benchmark* layout.
  Attributes: ``category`` plus one attribute per attribute type (``texture``, ``fabric``,
  ``shape``, ``part``, ``style``) whose value is the image's single positive label of that type;
  zero or several positives of a type leave the cell empty (missing). The benchmark's
  train/val/test partition is kept as an extra ``partition`` column. It streams, so memory does not
  grow with the number of images: the per-image listings (``list_attr_img.txt`` alone is ~0.9 GB)
  name the same images in the same order, so they are joined line by line (the order is checked on
  every row; a listing out of step stops the import, naming its file and line), staged in Parquet row
  groups, and images are copied in bounded batches. Each listing line is one manifest row: a
  name listed twice stays twice and ``amnet data validate`` quarantines the second as a duplicate id.
* ``import_csv``: any CSV with an image column and one column per attribute; each attribute's
  values are its distinct non-empty cells, sorted (deterministic). ``item_column`` (optional) names
  a column copied into the manifest's ``item_id``: rows sharing a value are variants of one item.

Values never observed are left out of the vocabulary, and an attribute with fewer than two observed
values is dropped with a note (it could not be manipulated). Rows are never dropped here: a row whose
image is missing or unsafe stays in the manifest and ``amnet data validate`` quarantines it with a
reason, so the counts stay traceable.
"""

from __future__ import annotations

import argparse
import codecs
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import zip_longest
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from amnet import storage
from amnet.data import images
from amnet.data.schema import (
    ATTRIBUTES,
    ITEM_ID,
    MANIFEST,
    RESERVED_COLUMNS,
    Attribute,
    Vocabulary,
    write_dataset,
)
from amnet.errors import DatasetError

DEEPFASHION_TYPES = {1: "texture", 2: "fabric", 3: "shape", 4: "part", 5: "style"}
DEEPFASHION_FILES = {
    "category_cloth": "Anno/list_category_cloth.txt",
    "category_img": "Anno/list_category_img.txt",
    "attr_cloth": "Anno/list_attr_cloth.txt",
    "attr_img": "Anno/list_attr_img.txt",
    "partition": "Eval/list_eval_partition.txt",  # optional
}
CSV_IMAGE_DIR = "images"  # CSV imports copy images under out/images/<path relative to root>
COPY_WORKERS = 8
COPY_BATCH = 4_096  # copies mapped over the pool at once: bounded memory for any number of images
CHUNK_ROWS = 65_536  # DeepFashion rows per staged / manifest row group
S3_CHUNK_BYTES = 1 << 20  # an s3:// listing streams in pieces of this size
log = logging.getLogger(__name__)
T = TypeVar("T")


def _note(message: str) -> None:
    log.warning("%s", message)


# ---------------------------------------------------------------- DeepFashion listings


def _lines(uri: str) -> Iterator[str]:
    """Lines of a text file, streamed (list_attr_img.txt is close to 1 GB): a local file line by line, an
    ``s3://`` object in ``S3_CHUNK_BYTES`` pieces."""
    if storage.is_s3(uri):
        yield from _s3_lines(uri)
        return
    with open(uri, encoding="utf-8") as fh:
        for line in fh:
            yield line.rstrip("\r\n")


def _s3_lines(uri: str) -> Iterator[str]:
    """Lines of an S3 object, decoded as UTF-8 while its body streams in."""
    bucket, key = storage.split_s3(uri)
    decoder = codecs.getincrementaldecoder("utf-8")()
    tail = ""
    try:
        body = storage.s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(S3_CHUNK_BYTES):
            lines = (tail + decoder.decode(chunk)).split("\n")
            tail = lines.pop()
            for line in lines:
                yield line.rstrip("\r")
        tail += decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{uri}: not UTF-8 text ({exc.reason})") from exc
    except Exception as exc:  # botocore's errors: only amnet.storage imports botocore
        raise DatasetError(f"{uri}: reading the listing from S3 failed ({type(exc).__name__}: {exc}); check the "
                           "S3 endpoint (AWS_ENDPOINT_URL) and credentials, then rerun") from exc
    if tail:
        yield tail.rstrip("\r")


def _listing(uri: str, first_header: str) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` for each data row of a DeepFashion listing.

    The format is: line 1 = row count, line 2 = header (starting with ``first_header``), then rows.
    The declared count is checked at the end, which catches truncated downloads.
    """
    lines = _lines(uri)
    count_line, header = next(lines, ""), next(lines, "")
    try:
        declared = int(count_line.strip())
    except ValueError:
        raise DatasetError(f"{uri}: line 1 should be the number of rows, found {count_line[:40]!r}") from None
    if not header.strip().startswith(first_header):
        raise DatasetError(f"{uri}: line 2 should be a header starting with {first_header!r}")
    rows = 0
    for number, line in enumerate(lines, start=3):
        if line.strip():
            rows += 1
            yield number, line
    if rows != declared:
        raise DatasetError(f"{uri}: declares {declared} rows but has {rows}; the file looks truncated")


def _name_and_int(uri: str, number: int, line: str, low: int, high: int) -> tuple[str, int]:
    """Split ``"<name possibly with spaces> <int>"`` and check the int is in [low, high]."""
    parts = line.rsplit(None, 1)
    try:
        value = int(parts[1])
    except (IndexError, ValueError):
        raise DatasetError(f"{uri}:{number}: expected '<name> <integer>', found {line[:60]!r}") from None
    if not low <= value <= high:
        raise DatasetError(f"{uri}:{number}: value {value} out of range {low}..{high}")
    return parts[0].strip(), value


def _read_category_names(root: str) -> list[str]:
    """Category names in file order (``list_category_img.txt``'s labels index them from 1)."""
    uri = storage.join(root, DEEPFASHION_FILES["category_cloth"])
    return [_name_and_int(uri, n, line, 1, 3)[0] for n, line in _listing(uri, "category_name")]


def _read_attribute_types(root: str) -> list[tuple[str, str]]:
    """``(attribute name, type name)`` per attribute column of list_attr_img.txt."""
    uri = storage.join(root, DEEPFASHION_FILES["attr_cloth"])
    out = []
    for number, line in _listing(uri, "attribute_name"):
        name, kind = _name_and_int(uri, number, line, 1, len(DEEPFASHION_TYPES))
        out.append((name, DEEPFASHION_TYPES[kind]))
    return out


def _single_positive(positives: list[int], attrs: list[tuple[str, str]]) -> list[str]:
    """Per attribute type (``DEEPFASHION_TYPES`` order): the one positive attribute name, or '' for none
    or several (two positive columns with the same name are one value)."""
    by_type: dict[str, set[str]] = {kind: set() for kind in DEEPFASHION_TYPES.values()}
    for index in positives:
        name, kind = attrs[index]
        by_type[kind].add(name)
    return [next(iter(names)) if len(names) == 1 else "" for names in by_type.values()]


Row = tuple[str, int, str, object]  # (listing URI, line number, image name, parsed value)


def _category_rows(root: str, names: list[str]) -> Iterator[Row]:
    """One row per line of list_category_img.txt; the value is the category name."""
    uri = storage.join(root, DEEPFASHION_FILES["category_img"])
    for number, line in _listing(uri, "image_name"):
        image, label = _name_and_int(uri, number, line, 1, len(names))
        yield uri, number, image, names[label - 1]


def _attribute_rows(root: str, attrs: list[tuple[str, str]]) -> Iterator[Row]:
    """One row per line of list_attr_img.txt; the value is ``_single_positive``'s list.

    Cells are 1 (positive), -1 or 0 (not positive). The few positives of a row are found with
    ``list.index`` (C speed) instead of a Python loop over its 1,000 cells: this file is most of the
    parsing time.
    """
    uri = storage.join(root, DEEPFASHION_FILES["attr_img"])
    n = len(attrs)
    for number, line in _listing(uri, "image_name"):
        parts = line.rsplit(None, n)
        if len(parts) != n + 1:
            raise DatasetError(f"{uri}:{number}: expected an image name and {n} values")
        positives, at = [], 0
        while True:
            try:
                at = parts.index("1", at + 1)
            except ValueError:
                break
            positives.append(at - 1)
        yield uri, number, parts[0].strip(), _single_positive(positives, attrs)


def _partition_rows(uri: str) -> Iterator[Row]:
    """One row per line of list_eval_partition.txt; the value is train, val or test."""
    for number, line in _listing(uri, "image_name"):
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise DatasetError(f"{uri}:{number}: expected '<image_name> <train|val|test>'")
        yield uri, number, parts[0].strip(), parts[1]


def _deepfashion_rows(root: str, categories: list[str], attrs: list[tuple[str, str]]) -> Iterator[list[str]]:
    """Manifest rows (image_id, image, category, the five types, partition), joining the per-image
    listings line by line.

    DeepFashion's per-image listings name the same images in the same order, so line k of each file
    describes one image and the join holds one line per file at a time. The order is checked on every
    row: a listing that names another image, or ends before the others, stops the import with its file
    and line.
    """
    files = [storage.join(root, DEEPFASHION_FILES[key]) for key in ("category_img", "attr_img", "partition")]
    sources = [_category_rows(root, categories), _attribute_rows(root, attrs)]
    if storage.exists(files[2]):
        sources.append(_partition_rows(files[2]))
    else:
        _note(f"{files[2]} not found; the partition column will be empty")
    for row in zip_longest(*sources):
        present = [r for r in row if r is not None]
        lead_uri, lead_number, image, _ = present[0]
        if len(present) != len(row):
            ended = files[row.index(None)]
            raise DatasetError(f"{ended}: ends before {lead_uri}:{lead_number} ({image!r}); the per-image "
                               "listings must name the same images in the same order")
        for uri, number, name, _ in present[1:]:
            if name != image:
                raise DatasetError(f"{uri}:{number}: names {name!r} where {lead_uri}:{lead_number} names "
                                   f"{image!r}; the per-image listings must name the same images in the same order")
        partition = row[2][3] if len(row) == 3 else ""
        yield [image, image, row[0][3], *row[1][3], partition]


def _check_files(root: str) -> None:
    """Fail early, naming the first missing required listing, before parsing a 1 GB file."""
    for key, rel in DEEPFASHION_FILES.items():
        uri = storage.join(root, rel)
        if key != "partition" and not storage.exists(uri):
            raise DatasetError(
                f"{uri}: missing; a DeepFashion Category and Attribute Prediction tree needs "
                f"{', '.join(v for k, v in DEEPFASHION_FILES.items() if k != 'partition')}"
            )


def _string_schema(columns: list[str]) -> pa.Schema:
    """The Arrow schema ``DataFrame.to_parquet`` gives a frame of these string columns (pandas metadata
    included), so a manifest written in row groups reads back exactly as the in-memory one did."""
    return pa.Schema.from_pandas(pd.DataFrame({c: [""] for c in columns}), preserve_index=False)


def _stage_rows(rows: Iterator[list[str]], columns: list[str], attributes: list[str],
                path: str) -> tuple[int, dict[str, set[str]]]:
    """Write ``rows`` to a local Parquet file, ``CHUNK_ROWS`` per row group; return the row count and each
    attribute's non-empty values (the vocabulary, and so the manifest's columns, depend on them)."""
    schema = _string_schema(columns)
    observed: dict[str, set[str]] = {name: set() for name in attributes}
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in _batched(rows, CHUNK_ROWS):
            table = pa.table([pa.array(col, pa.large_string()) for col in zip(*chunk, strict=True)], schema=schema)
            writer.write_table(table)
            for name in attributes:
                observed[name].update(table.column(name).unique().to_pylist())
            count += len(chunk)
            log.debug("staged %s rows", count)
    return count, {name: values - {""} for name, values in observed.items()}


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` consecutive items (the last one shorter)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _staged_jobs(staged: str, root: str, out: str) -> Iterator[tuple[str | None, str | None]]:
    """``(source, dest)`` per staged row, the image column read one row group at a time."""
    source = pq.ParquetFile(staged)
    for group in range(source.num_row_groups):
        for name in source.read_row_group(group, columns=["image"]).column(0).to_pylist():
            yield images.resolve_image_path(root, name), images.resolve_image_path(out, name)


def _write_manifest(staged: str, columns: list[str], uri: str, workdir: str) -> None:
    """Copy ``columns`` of the staged file into ``uri`` row group by row group (atomic: the finished
    file is published in one write). Only the compressed manifest is ever held whole (a few MB at
    DeepFashion's size), never the table."""
    source = pq.ParquetFile(staged)
    schema = _string_schema(columns)
    path = os.path.join(workdir, MANIFEST)
    with pq.ParquetWriter(path, schema) as writer:
        for group in range(source.num_row_groups):
            writer.write_table(source.read_row_group(group, columns=columns))
    with open(path, "rb") as fh:
        storage.write_bytes(uri, fh.read())


def import_deepfashion(root: str, out: str, progress: bool = True) -> dict:
    """Convert the DeepFashion benchmark tree at ``root`` into a dataset at ``out`` (images copied).

    Streams: the per-image listings are joined line by line into a staged Parquet file (row groups of
    ``CHUNK_ROWS``), so memory stays bounded by a chunk, not by the number of images.
    Returns a summary: ``rows``, ``attributes`` (name -> number of values), ``dropped_attributes``,
    ``copied``, ``not_copied`` (missing/unreadable images) and ``unsafe_paths``.
    """
    _check_files(root)
    categories = _read_category_names(root)
    attrs = _read_attribute_types(root)
    orders = {"category": categories}
    for kind in DEEPFASHION_TYPES.values():
        orders[kind] = list(dict.fromkeys(name for name, k in attrs if k == kind))
    columns = ["image_id", "image", *orders, "partition"]
    with tempfile.TemporaryDirectory(prefix="amnet-import-") as workdir:
        staged = os.path.join(workdir, "rows.parquet")
        start = time.perf_counter()
        rows, observed = _stage_rows(_deepfashion_rows(root, categories, attrs), columns, list(orders), staged)
        if not rows:
            raise DatasetError(f"{root}: the DeepFashion listings name no images")
        log.info("read the listings: %s images in %.0f s; copying the images", rows, time.perf_counter() - start)
        vocab, dropped = _vocabulary(observed, orders)
        counts = _copy_images(_staged_jobs(staged, root, out), rows, progress)
        _note_not_copied(counts)
        _write_manifest(staged, [c for c in columns if c not in dropped], storage.join(out, MANIFEST), workdir)
    storage.write_text(storage.join(out, ATTRIBUTES), vocab.to_json())
    return _summary(out, rows, vocab, dropped, counts)


# ---------------------------------------------------------------- CSV


def _read_csv(csv: str) -> pd.DataFrame:
    if not storage.exists(csv):
        raise DatasetError(f"{csv}: no such CSV file")
    try:
        with warnings.catch_warnings():  # index_col=False: a row longer than the header is not read as an index
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(io.BytesIO(storage.read_bytes(csv)), dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.ParserWarning:
        raise DatasetError(f"{csv}: a row has more fields than the header (a trailing comma?); "
                           "give every row one field per column") from None
    except Exception as exc:  # pandas raises ParserError, UnicodeDecodeError, EmptyDataError...
        raise DatasetError(f"{csv}: not a readable CSV file ({type(exc).__name__})") from exc
    if len(df) == 0:
        raise DatasetError(f"{csv}: the CSV has no rows")
    return df


def _csv_attributes(df: pd.DataFrame, csv: str, image_column: str, attributes: list[str] | None,
                    item_column: str | None = None) -> list[str]:
    """The attribute columns: the requested ones (checked) or every column but image / image_id / item."""
    if attributes is None:
        candidates = [c for c in df.columns if c not in (image_column, "image_id", item_column)]
        reserved = [c for c in candidates if c in RESERVED_COLUMNS]
        if reserved:
            _note(f"{csv}: column(s) {', '.join(reserved)} have reserved names; not used as attributes")
        attributes = [c for c in candidates if c not in RESERVED_COLUMNS]
    missing = [a for a in attributes if a not in df.columns]
    if missing:
        raise DatasetError(f"{csv}: no column(s) {', '.join(missing)}; columns are {', '.join(df.columns)}")
    if not attributes:
        raise DatasetError(f"{csv}: no attribute columns; add one column per attribute")
    if item_column is not None and item_column in attributes:
        raise DatasetError(f"{csv}: column {item_column!r} is the item column; it cannot also be an attribute")
    return list(attributes)


def _csv_destination(root: str, image: str) -> tuple[str | None, str]:
    """Source URI (None when unsafe) and the manifest path of the copy, relative to ``out``."""
    source = images.resolve_image_path(root, image)
    if source is None:
        return None, image  # left as is: validation quarantines it as escaping the root
    if storage.is_s3(root):
        prefix = storage.split_s3(root)[1].strip("/")
        key = storage.split_s3(source)[1]
        rel = key[len(prefix) + 1:] if prefix else key
    else:
        rel = os.path.relpath(source, os.path.realpath(root)).replace(os.sep, "/")
    return source, f"{CSV_IMAGE_DIR}/{rel}"


def import_csv(
    csv: str, image_column: str, root: str, out: str, attributes: list[str] | None = None,
    progress: bool = True, item_column: str | None = None,
) -> dict:
    """Convert a labelled CSV (image paths relative to ``root``) into a dataset at ``out``.

    ``attributes`` defaults to every column except ``image_column``, ``image_id`` and ``item_column``.
    Image ids come from an ``image_id`` column when there is one, otherwise from the image path.
    ``item_column`` (default: an ``item_id`` column when there is one): copied (stripped) into the
    manifest's ``item_id``; rows sharing a value are variants of one item, an empty cell is none.
    Returns the same summary as ``import_deepfashion``.
    """
    df = _read_csv(csv)
    if image_column not in df.columns:
        raise DatasetError(f"{csv}: no image column {image_column!r}; columns are {', '.join(df.columns)}")
    if item_column is None and ITEM_ID in df.columns:
        item_column = ITEM_ID  # like image_id: a column with the contract's name is used as such
    if item_column is not None and item_column not in df.columns:
        raise DatasetError(f"{csv}: no item column {item_column!r}; columns are {', '.join(df.columns)}")
    names = _csv_attributes(df, csv, image_column, attributes, item_column)
    if not storage.is_s3(root) and not os.path.isdir(root):
        raise DatasetError(f"{root}: image root is not a folder")
    paths = df[image_column].str.strip().tolist()
    sources, rels = zip(*(_csv_destination(root, p) for p in paths), strict=True)
    manifest = pd.DataFrame({
        "image_id": df["image_id"].str.strip() if "image_id" in df.columns else pd.Series(paths),
        "image": list(rels),
    })
    if item_column is not None:
        manifest[ITEM_ID] = df[item_column].str.strip().tolist()
    for name in names:
        manifest[name] = df[name].str.strip().tolist()
    orders = {name: sorted(set(manifest[name]) - {""}) for name in names}
    jobs = [
        (src, images.resolve_image_path(out, rel) if src else None)
        for src, rel in zip(sources, rels, strict=True)
    ]
    return _finish(out, manifest, orders, jobs, progress)


# ---------------------------------------------------------------- shared tail


def _vocabulary(observed: dict[str, set[str]], orders: dict[str, list[str]]) -> tuple[Vocabulary, list[str]]:
    """Vocabulary of the values actually observed (in ``orders``' order); drops attributes with < 2."""
    kept, dropped = [], []
    for name, order in orders.items():
        values = tuple(v for v in dict.fromkeys(order) if v in observed[name])
        if len(values) < 2:
            dropped.append(name)
            _note(f"attribute {name!r} dropped: {len(values)} value(s) observed, at least 2 are needed")
        else:
            kept.append(Attribute(name, values))
    if not kept:
        raise DatasetError(f"no attribute has 2 or more observed values (dropped: {', '.join(dropped)})")
    return Vocabulary(tuple(kept)), dropped


def _copy_one(job: tuple[str | None, str | None]) -> str:
    source, dest = job
    if source is None or dest is None:
        return "unsafe_paths"
    data, _ = images.read_image_file(source)
    if data is None:
        return "not_copied"
    storage.write_bytes(dest, data)
    return "copied"


def _copy_images(jobs: Iterable[tuple[str | None, str | None]], total: int, progress: bool) -> Counter[str]:
    """Copy (source, dest) pairs concurrently; count copied, not_copied (missing) and unsafe rows.

    ``jobs`` is consumed ``COPY_BATCH`` pairs at a time and each batch is mapped over the thread pool
    before the previous one's results are counted: a stream of any length holds two batches, and the
    next batch is read and resolved while the workers copy the current one.
    """
    counts: Counter[str] = Counter({"copied": 0, "not_copied": 0, "unsafe_paths": 0})
    s3_ready = False
    running: Iterable[str] = ()
    with ThreadPoolExecutor(COPY_WORKERS) as pool, tqdm(total=total, desc="copy images", unit="img",
                                                        disable=not progress, file=sys.stderr) as bar:
        for batch in _batched(jobs, COPY_BATCH):
            if not s3_ready and any(storage.is_s3(u) for job in batch for u in job if u):
                storage.s3_client()  # create the shared client once, before worker threads use it
                s3_ready = True
            running, results = pool.map(_copy_one, batch), running
            for result in results:
                counts[result] += 1
                bar.update()
        for result in running:
            counts[result] += 1
            bar.update()
    return counts


def _note_not_copied(counts: Counter[str]) -> None:
    if counts["not_copied"] or counts["unsafe_paths"]:
        _note(f"{counts['not_copied']} image(s) missing or unreadable and {counts['unsafe_paths']} unsafe "
              "path(s) were not copied; `amnet data validate` will quarantine those rows")


def _summary(out: str, rows: int, vocab: Vocabulary, dropped: list[str], counts: Counter[str]) -> dict:
    return {
        "out": out,
        "rows": rows,
        "attributes": {a.name: len(a.values) for a in vocab.attributes},
        "dropped_attributes": dropped,
        **dict(counts),
    }


def _finish(out: str, manifest: pd.DataFrame, orders: dict[str, list[str]], jobs, progress: bool) -> dict:
    """Drop unusable attributes, copy images (each safe pair once), write the dataset, return the summary."""
    vocab, dropped = _vocabulary({name: set(manifest[name]) - {""} for name in orders}, orders)
    manifest = manifest.drop(columns=dropped)
    unsafe = [job for job in jobs if None in job]
    unique = list(dict.fromkeys(job for job in jobs if None not in job)) + unsafe
    counts = _copy_images(unique, len(unique), progress)
    _note_not_copied(counts)
    write_dataset(out, manifest, vocab)
    return _summary(out, len(manifest), vocab, dropped, counts)


def _log_summary(summary: dict, seconds: float) -> None:
    log.info("wrote %s rows to %s in %.0f s (%s images copied, %s missing, %s unsafe paths)", summary["rows"],
             summary["out"], seconds, summary["copied"], summary["not_copied"], summary["unsafe_paths"])
    for name, size in summary["attributes"].items():
        log.info("  %s: %s values", name, size)
    if summary["dropped_attributes"]:
        log.info("  dropped (fewer than 2 values): %s", ", ".join(summary["dropped_attributes"]))


def main_deepfashion(argv: list[str] | None = None) -> int:
    """``amnet data import deepfashion --root DIR --out DIR``."""
    parser = argparse.ArgumentParser(prog="amnet data import deepfashion",
                                     description="convert a DeepFashion Category & Attribute benchmark tree")
    parser.add_argument("--root", required=True, help="folder holding Anno/, Eval/ and img/")
    parser.add_argument("--out", required=True, help="output dataset folder or s3:// prefix")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    _log_summary(import_deepfashion(args.root, args.out, progress=not args.no_progress), time.perf_counter() - start)
    return 0


def main_csv(argv: list[str] | None = None) -> int:
    """``amnet data import csv --csv FILE --image-column COL --root DIR --out DIR [--attributes a,b]``."""
    parser = argparse.ArgumentParser(prog="amnet data import csv",
                                     description="convert a labelled CSV + image folder")
    parser.add_argument("--csv", required=True, help="CSV with an image column and one column per attribute")
    parser.add_argument("--image-column", required=True, help="column holding image paths relative to --root")
    parser.add_argument("--root", required=True, help="folder or s3:// prefix the paths are relative to")
    parser.add_argument("--out", required=True, help="output dataset folder or s3:// prefix")
    parser.add_argument("--attributes", help="comma-separated attribute columns (default: all other columns)")
    parser.add_argument("--item-column", metavar="COL",
                        help="column naming the item each row is a variant of (copied into item_id; rows sharing "
                        "it are one item with other attribute values; empty = none; default: an item_id column if any)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    attributes = [a.strip() for a in args.attributes.split(",") if a.strip()] if args.attributes else None
    start = time.perf_counter()
    summary = import_csv(args.csv, args.image_column, args.root, args.out, attributes,
                         progress=not args.no_progress, item_column=args.item_column)
    _log_summary(summary, time.perf_counter() - start)
    return 0
