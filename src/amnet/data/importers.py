"""Convert labelled image collections into the dataset contract (``manifest.parquet`` + ``attributes.json``).

Two importers, both copying the images into ``out`` so the result is a self-contained dataset whose
``image`` paths are relative to it (validation refuses paths outside the dataset root):

* ``import_deepfashion``: the DeepFashion *Category and Attribute Prediction Benchmark* layout.
  Attributes: ``category`` plus one attribute per attribute type (``texture``, ``fabric``,
  ``shape``, ``part``, ``style``) whose value is the image's single positive label of that type;
  zero or several positives of a type leave the cell empty (missing). The benchmark's
  train/val/test partition is kept as an extra ``partition`` column.
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
import io
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from tqdm import tqdm

from amnet import storage
from amnet.data import images
from amnet.data.schema import ITEM_ID, RESERVED_COLUMNS, Attribute, Vocabulary, write_dataset
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
log = logging.getLogger(__name__)


def _note(message: str) -> None:
    log.warning("%s", message)


# ---------------------------------------------------------------- DeepFashion listings


def _lines(uri: str) -> Iterator[str]:
    """Lines of a text file, streamed for local files (list_attr_img.txt is close to 1 GB)."""
    if storage.is_s3(uri):
        yield from storage.read_text(uri).splitlines()
        return
    with open(uri, encoding="utf-8") as fh:
        for line in fh:
            yield line.rstrip("\r\n")


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


def _read_categories(root: str) -> tuple[list[str], dict[str, str]]:
    """Category names (file order) and image name -> category name."""
    uri = storage.join(root, DEEPFASHION_FILES["category_cloth"])
    names = [_name_and_int(uri, n, line, 1, 3)[0] for n, line in _listing(uri, "category_name")]
    uri = storage.join(root, DEEPFASHION_FILES["category_img"])
    by_image = {}
    for number, line in _listing(uri, "image_name"):
        image, label = _name_and_int(uri, number, line, 1, len(names))
        by_image[image] = names[label - 1]
    return names, by_image


def _read_attribute_types(root: str) -> list[tuple[str, str]]:
    """``(attribute name, type name)`` per attribute column of list_attr_img.txt."""
    uri = storage.join(root, DEEPFASHION_FILES["attr_cloth"])
    out = []
    for number, line in _listing(uri, "attribute_name"):
        name, kind = _name_and_int(uri, number, line, 1, len(DEEPFASHION_TYPES))
        out.append((name, DEEPFASHION_TYPES[kind]))
    return out


def _single_positive(positives: list[int], attrs: list[tuple[str, str]]) -> dict[str, str]:
    """Per attribute type: the one positive attribute name, or '' for none or several."""
    by_type: dict[str, set[str]] = {kind: set() for kind in DEEPFASHION_TYPES.values()}
    for index in positives:
        name, kind = attrs[index]
        by_type[kind].add(name)
    return {kind: (next(iter(names)) if len(names) == 1 else "") for kind, names in by_type.items()}


def _read_attribute_labels(root: str, attrs: list[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """Image name -> {type: value}. Cells are 1 (positive), -1 or 0 (not positive)."""
    uri = storage.join(root, DEEPFASHION_FILES["attr_img"])
    n = len(attrs)
    out = {}
    for number, line in _listing(uri, "image_name"):
        parts = line.rsplit(None, n)
        if len(parts) != n + 1:
            raise DatasetError(f"{uri}:{number}: expected an image name and {n} values")
        positives = [i for i, cell in enumerate(parts[1:]) if cell == "1"]
        out[parts[0].strip()] = _single_positive(positives, attrs)
    return out


def _read_partition(root: str) -> dict[str, str]:
    uri = storage.join(root, DEEPFASHION_FILES["partition"])
    if not storage.exists(uri):
        _note(f"{uri} not found; the partition column will be empty")
        return {}
    out = {}
    for number, line in _listing(uri, "image_name"):
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise DatasetError(f"{uri}:{number}: expected '<image_name> <train|val|test>'")
        out[parts[0].strip()] = parts[1]
    return out


def _check_files(root: str) -> None:
    """Fail early, naming the first missing required listing, before parsing a 1 GB file."""
    for key, rel in DEEPFASHION_FILES.items():
        uri = storage.join(root, rel)
        if key != "partition" and not storage.exists(uri):
            raise DatasetError(
                f"{uri}: missing; a DeepFashion Category and Attribute Prediction tree needs "
                f"{', '.join(v for k, v in DEEPFASHION_FILES.items() if k != 'partition')}"
            )


def import_deepfashion(root: str, out: str, progress: bool = True) -> dict:
    """Convert the DeepFashion benchmark tree at ``root`` into a dataset at ``out`` (images copied).

    Returns a summary: ``rows``, ``attributes`` (name -> number of values), ``dropped_attributes``,
    ``copied``, ``not_copied`` (missing/unreadable images) and ``unsafe_paths``.
    """
    _check_files(root)
    categories, category_of = _read_categories(root)
    attrs = _read_attribute_types(root)
    labels_of = _read_attribute_labels(root, attrs)
    partition_of = _read_partition(root)
    names = list(category_of) + [name for name in labels_of if name not in category_of]
    if not names:
        raise DatasetError(f"{root}: the DeepFashion listings name no images")
    empty_types = dict.fromkeys(DEEPFASHION_TYPES.values(), "")
    manifest = pd.DataFrame(
        [
            {"image_id": name, "image": name, "category": category_of.get(name, ""),
             **labels_of.get(name, empty_types), "partition": partition_of.get(name, "")}
            for name in names
        ]
    )
    orders = {"category": categories}
    for kind in DEEPFASHION_TYPES.values():
        orders[kind] = list(dict.fromkeys(name for name, k in attrs if k == kind))
    jobs = [(images.resolve_image_path(root, n), images.resolve_image_path(out, n)) for n in names]
    return _finish(out, manifest, orders, jobs, progress)


# ---------------------------------------------------------------- CSV


def _read_csv(csv: str) -> pd.DataFrame:
    if not storage.exists(csv):
        raise DatasetError(f"{csv}: no such CSV file")
    try:
        df = pd.read_csv(io.BytesIO(storage.read_bytes(csv)), dtype=str, keep_default_na=False)
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


def _vocabulary(manifest: pd.DataFrame, orders: dict[str, list[str]]) -> tuple[Vocabulary, list[str]]:
    """Vocabulary of the values actually observed (in ``orders``' order); drops attributes with < 2."""
    kept, dropped = [], []
    for name, order in orders.items():
        observed = set(manifest[name]) - {""}
        values = tuple(v for v in dict.fromkeys(order) if v in observed)
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


def _copy_images(jobs: list[tuple[str | None, str | None]], progress: bool) -> Counter[str]:
    """Copy (source, dest) pairs concurrently; count copied, not_copied (missing) and unsafe rows.

    Safe pairs are copied once even when several rows name the same image.
    """
    unsafe = [job for job in jobs if None in job]
    unique = list(dict.fromkeys(job for job in jobs if None not in job)) + unsafe
    if any(storage.is_s3(u) for job in unique for u in job if u):
        storage.s3_client()  # create the shared client once, before worker threads use it
    counts: Counter[str] = Counter({"copied": 0, "not_copied": 0, "unsafe_paths": 0})
    with ThreadPoolExecutor(COPY_WORKERS) as pool:
        results = pool.map(_copy_one, unique)
        for result in tqdm(results, total=len(unique), desc="copy images", unit="img", disable=not progress,
                           file=sys.stderr):
            counts[result] += 1
    return counts


def _finish(out: str, manifest: pd.DataFrame, orders: dict[str, list[str]], jobs, progress: bool) -> dict:
    """Drop unusable attributes, copy images, write the dataset, return (and print) the summary."""
    vocab, dropped = _vocabulary(manifest, orders)
    manifest = manifest.drop(columns=dropped)
    counts = _copy_images(jobs, progress)
    if counts["not_copied"] or counts["unsafe_paths"]:
        _note(f"{counts['not_copied']} image(s) missing or unreadable and {counts['unsafe_paths']} unsafe "
              "path(s) were not copied; `amnet data validate` will quarantine those rows")
    write_dataset(out, manifest, vocab)
    return {
        "out": out,
        "rows": len(manifest),
        "attributes": {a.name: len(a.values) for a in vocab.attributes},
        "dropped_attributes": dropped,
        **dict(counts),
    }


def _log_summary(summary: dict) -> None:
    log.info("wrote %s rows to %s (%s images copied, %s missing, %s unsafe paths)", summary["rows"], summary["out"],
             summary["copied"], summary["not_copied"], summary["unsafe_paths"])
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
    _log_summary(import_deepfashion(args.root, args.out, progress=not args.no_progress))
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
    summary = import_csv(args.csv, args.image_column, args.root, args.out, attributes,
                         progress=not args.no_progress, item_column=args.item_column)
    _log_summary(summary)
    return 0
