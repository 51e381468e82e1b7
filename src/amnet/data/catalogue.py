"""A catalogue's rows with a content digest per image: what a gallery refresh compares with the digests
recorded beside the gallery features.

A catalogue is a dataset in the amnet data contract (``manifest.parquet`` + ``attributes.json``) or a
split (its ``gallery/`` shards). Every row gets the SHA-256 of its image bytes (:func:`image_digest`,
the per-image hash the dataset fingerprint takes too); only rows whose digest differs from the one
``known`` for their id are read in full and checked (the ones to featurize), so a catalogue that
changed by 1 % costs one hash per image plus the decoding of that 1 %. Rows the validation rules
refuse (duplicate or empty ids, unknown values, missing, escaping or undecodable images) are
quarantined with a reason, as the split would.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from amnet import storage
from amnet.data import fingerprint, images, shards, validate
from amnet.data.schema import ATTRIBUTES, MANIFEST, Vocabulary, load_manifest, load_vocabulary
from amnet.errors import DatasetError

log = logging.getLogger(__name__)

ROW_COLUMNS = ["image_id", "labels", "digest", "uri"]  # uri: the image file of a dataset row ("" in a split)
FRESH_COLUMNS = ["image_id", "image_bytes", "labels", "digest"]


def image_digest(data: bytes) -> str:
    """SHA-256 hex of an image's encoded bytes: its identity across catalogue versions."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class CatalogueScan:
    """Every usable row (``rows``: image_id, labels, digest, uri, in catalogue order), the rows whose digest
    is not the known one (``fresh``: plus ``image_bytes``) and the refused rows (``quarantined``)."""

    rows: pd.DataFrame
    fresh: pd.DataFrame
    vocab: Vocabulary
    kind: str  # "dataset" or "split"
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (image_id, reason)


def is_split(catalogue: str) -> bool:
    """True when ``catalogue`` is a split (gallery shards under ``gallery/``), not a dataset."""
    return (not storage.exists(storage.join(catalogue, MANIFEST))
            and bool(storage.list_files(storage.join(catalogue, "gallery"), ".parquet")))


def scan_catalogue(catalogue: str, known: Mapping[str, str | None],
                   max_pixels: int = images.MAX_PIXELS) -> CatalogueScan:
    """Digest every image of ``catalogue`` (a dataset or a split); rows whose id is not in ``known`` or whose
    digest differs come back in full in ``fresh``."""
    if is_split(catalogue):
        return _scan_split(catalogue, known)
    return _scan_dataset(catalogue, known, max_pixels)


def _frame(records: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(records, columns=columns).astype({"image_id": str}) if records else pd.DataFrame(
        {c: pd.Series([], dtype=object) for c in columns})


def _scan_split(split: str, known: Mapping[str, str | None]) -> CatalogueScan:
    rows: list[dict] = []
    fresh: list[dict] = []
    for _, frame in shards.iter_shards(storage.join(split, "gallery"), ["image_id", "image_bytes", "labels"]):
        for image_id, data, labels in zip(frame["image_id"], frame["image_bytes"], frame["labels"], strict=True):
            digest = image_digest(data)
            labels = [int(v) for v in labels]
            rows.append({"image_id": str(image_id), "labels": labels, "digest": digest, "uri": ""})
            if known.get(str(image_id)) != digest:
                fresh.append({"image_id": str(image_id), "image_bytes": data, "labels": labels, "digest": digest})
    return CatalogueScan(_frame(rows, ROW_COLUMNS), _frame(fresh, FRESH_COLUMNS), load_vocabulary(split), "split")


def _scan_dataset(dataset: str, known: Mapping[str, str | None], max_pixels: int) -> CatalogueScan:
    if not storage.exists(storage.join(dataset, ATTRIBUTES)):
        raise DatasetError(f"{dataset}: neither a dataset ({MANIFEST} + {ATTRIBUTES}) nor a split (gallery/ shards)")
    if not storage.is_s3(dataset):
        dataset = os.path.abspath(dataset)
    vocab = load_vocabulary(dataset)
    manifest = load_manifest(dataset, vocab)
    maps = validate._label_maps(vocab)
    quarantined: list[tuple[str, str]] = []
    ids = manifest["image_id"].tolist()
    duplicate = pd.Series(ids).duplicated(keep=False).tolist()
    candidates: list[tuple[str, str, list[int]]] = []  # (image_id, image, labels) of rows that pass the cheap checks
    for image_id, image, dup, *cells in zip(ids, manifest["image"], duplicate,
                                            *(manifest[n] for n in vocab.names), strict=True):
        problem = validate._row_problem(image_id, image, dup)
        labels = validate._encode_labels(list(cells), vocab, maps) if problem is None else problem
        if isinstance(labels, str):
            quarantined.append((image_id, labels))
        else:
            candidates.append((image_id, image, labels))
    digests = _digests(dataset, [image for _, image, _ in candidates])
    rows: list[dict] = []
    fresh: list[dict] = []
    for (image_id, _image, labels), (digest, uri) in zip(candidates, digests, strict=True):
        if digest is None:
            quarantined.append((image_id, "missing image file" if uri else "image path escapes the dataset root"))
            continue
        if known.get(image_id) != digest:
            data, reason = images.read_image_file(uri) if uri else (None, "image path escapes the dataset root")
            reason = reason or images.check_image(data or b"", max_pixels)
            if reason or data is None or image_digest(data) != digest:
                quarantined.append((image_id, reason or "image changed while reading"))
                continue
            fresh.append({"image_id": image_id, "image_bytes": data, "labels": labels, "digest": digest})
        rows.append({"image_id": image_id, "labels": labels, "digest": digest, "uri": uri})
    if quarantined:
        log.warning("%s: %d catalogue rows quarantined (first: %s: %s)", dataset, len(quarantined), *quarantined[0])
    return CatalogueScan(_frame(rows, ROW_COLUMNS), _frame(fresh, FRESH_COLUMNS), vocab, "dataset", quarantined)


def _digests(dataset: str, paths: list[str]) -> list[tuple[str | None, str | None]]:
    """(sha256 or None when unreadable, resolved URI or None when it escapes the root) per manifest path.

    Local files are hashed as the fingerprint hashes them (a few threads, each file once); an ``s3://``
    catalogue's images are read to hash them (an ETag is not a content digest)."""
    if storage.is_s3(dataset):
        out: list[tuple[str | None, str | None]] = []
        for image in paths:
            uri = images.resolve_image_path(dataset, image)
            data, _ = images.read_image_file(uri) if uri else (None, None)
            out.append((image_digest(data) if data is not None else None, uri))
        return out
    resolved = fingerprint._local_paths(dataset, paths)
    entries = fingerprint._local_entries(resolved)
    return [(None if size < 0 else digest, uri) for uri, (size, digest) in zip(resolved, entries, strict=True)]


def write_gallery(scan: CatalogueScan, out: str, shard_rows: int = 1024) -> str:
    """The scanned dataset's usable rows as a split's gallery under ``out`` (``attributes.json`` +
    ``gallery/part-*.parquet`` with the encoded images), so a searcher shows them and takes queries by
    id; one shard of images in memory at a time. Returns ``out``."""
    import numpy as np

    fresh = dict(zip(scan.fresh["image_id"], scan.fresh["image_bytes"], strict=True))
    rows = scan.rows
    for number, begin in enumerate(range(0, max(len(rows), 1), shard_rows)):
        chunk = rows.iloc[begin : begin + shard_rows]
        data = [fresh.get(i) or images.read_image_file(u)[0] or b"" for i, u in zip(chunk["image_id"], chunk["uri"],
                                                                                       strict=True)]
        frame = pd.DataFrame({"image_id": chunk["image_id"].astype(str).to_numpy(), "image_bytes": data,
                              "labels": [np.asarray(v, dtype=np.int16) for v in chunk["labels"]]})
        shards.write_table(storage.join(out, "gallery", shards.shard_name(number)), frame)
    storage.write_text(storage.join(out, ATTRIBUTES), scan.vocab.to_json())
    return out
