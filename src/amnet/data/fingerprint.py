"""Dataset fingerprint: one content digest over everything a split reads, for cache keys and lineage.

The digest covers ``manifest.parquet`` and ``attributes.json`` (their bytes) and, for every manifest
row in order, the image the row points at: its size and content hash (SHA-256) for a local dataset,
its size and ETag for an ``s3://`` dataset (one listing of the prefix, no image is downloaded). Rows
whose image is missing or escapes the dataset root count as such (validation quarantines them; the
fingerprint only has to change when they do). The dataset's own location is not part of the digest:
a copy of the same files elsewhere has the same fingerprint.

Streaming: images are hashed one at a time in 1 MiB chunks (a few threads, hashlib releases the
GIL), so memory stays bounded by the manifest's ``image`` column. The pipeline's first stage passes
the digest to the split as a parameter, which makes KFP's cache key hold the data's version instead
of only its URI.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from amnet import storage
from amnet.data.images import resolve_image_path
from amnet.data.schema import ATTRIBUTES, MANIFEST
from amnet.errors import DatasetError

VERSION = "amnet-dataset-fingerprint/1"
CHUNK = 1 << 20  # bytes per hash update
HASH_WORKERS = 2  # threads hashing local files (more only add contention for small JPEGs on few CPUs)
HASH_CHUNK = 256  # files per thread-pool task (one task per file costs more than hashing a small JPEG)
MISSING_IMAGE = "missing"
ESCAPING_IMAGE = "escapes-root"


@dataclass(frozen=True)
class Fingerprint:
    """The digest of a dataset and what it covered."""

    digest: str  # sha256 hex over the manifest, the vocabulary and every row's image (see the module doc)
    rows: int  # manifest rows
    images: int  # rows whose image was found
    missing: int  # rows whose image is missing or outside the dataset root
    image_bytes: int  # total size of the images found
    method: str  # "sha256" (local contents) or "etag" (S3 object ETags)
    dataset: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    def short(self) -> str:
        """The first 12 hex digits: enough to tell versions apart in a table or a tag."""
        return self.digest[:12]


def _contract_file(dataset: str, name: str) -> bytes:
    uri = storage.join(dataset, name)
    if not storage.exists(uri):
        raise DatasetError(f"{dataset}: no {name}; a dataset needs {MANIFEST} and {ATTRIBUTES} "
                           "(check the dataset URI)")
    return storage.read_bytes(uri)


def _image_column(manifest: bytes, uri: str) -> list[str]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(manifest), columns=["image"])
    except Exception as exc:  # pyarrow raises many types: a corrupt file, no `image` column
        raise DatasetError(f"{uri}: cannot read its `image` column ({type(exc).__name__}); "
                           "a manifest needs image_id, image and one column per attribute") from exc
    return ["" if v is None else str(v) for v in table.column("image").to_pylist()]


def _file_sha256(path: str) -> tuple[int, str]:
    """(size, sha256 hex) of a local file, read in chunks; (-1, "missing") when it cannot be read."""
    h = hashlib.sha256()
    size = 0
    try:
        fd = os.open(path, os.O_RDONLY)  # raw reads: a buffered file object costs more than a small JPEG
    except OSError:
        return -1, MISSING_IMAGE
    try:
        while chunk := os.read(fd, CHUNK):
            h.update(chunk)
            size += len(chunk)
    except OSError:
        return -1, MISSING_IMAGE
    finally:
        os.close(fd)
    return size, h.hexdigest()


def _regular_files(root: str) -> set[str]:
    """Relative POSIX paths of the regular files under ``root`` reached without following a symlink."""
    found: set[str] = set()
    stack = [("", root)]
    while stack:
        rel, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((name, entry.path))
                elif entry.is_file(follow_symlinks=False):
                    found.add(name)
    return found


def _local_paths(dataset: str, images: list[str]) -> list[str | None]:
    """The file each manifest entry names inside the local ``dataset``, None when it escapes the root.

    A relative path that names a regular file reached without symlinks is inside the root by
    construction (one directory walk, no ``realpath`` per row); anything else (absolute paths,
    symlinks, ``..``, missing files) takes :func:`amnet.data.images.resolve_image_path`'s full check.
    """
    root = os.path.realpath(dataset)
    files = _regular_files(root)
    out: list[str | None] = []
    for image in images:
        rel = posixpath.normpath(image) if image and not image.startswith("/") else ""
        if rel in files and not rel.startswith(".."):
            out.append(os.path.join(root, rel))
        else:
            out.append(resolve_image_path(dataset, image))
    return out


def _hash_chunk(paths: list[str]) -> list[tuple[int, str]]:
    return [_file_sha256(p) for p in paths]


def _local_entries(paths: list[str | None]) -> Iterator[tuple[int, str]]:
    """(size, sha256) per resolved local path, in order; unresolved paths -> escaping marker.
    Each distinct file is hashed once, in chunks spread over a few threads."""
    unique = sorted({p for p in paths if p is not None})
    chunks = [unique[i : i + HASH_CHUNK] for i in range(0, len(unique), HASH_CHUNK)]
    cache: dict[str, tuple[int, str]] = {}
    with ThreadPoolExecutor(HASH_WORKERS, thread_name_prefix="amnet-fingerprint") as pool:
        for chunk, entries in zip(chunks, pool.map(_hash_chunk, chunks), strict=True):
            cache.update(zip(chunk, entries, strict=True))
    for path in paths:
        yield (-1, ESCAPING_IMAGE) if path is None else cache[path]


def _s3_entries(dataset: str, uris: list[str | None]) -> Iterator[tuple[int, str]]:
    objects = storage.s3_objects(dataset)
    for uri in uris:
        if uri is None:
            yield -1, ESCAPING_IMAGE
        else:
            yield objects.get(uri, (-1, MISSING_IMAGE))


def fingerprint_dataset(dataset: str) -> Fingerprint:
    """The :class:`Fingerprint` of the dataset folder or ``s3://`` prefix ``dataset``."""
    start = time.perf_counter()
    dataset = str(dataset).rstrip("/") if storage.is_s3(dataset) else os.path.abspath(dataset)
    manifest = _contract_file(dataset, MANIFEST)
    vocabulary = _contract_file(dataset, ATTRIBUTES)
    images = _image_column(manifest, storage.join(dataset, MANIFEST))
    s3 = storage.is_s3(dataset)
    if s3:
        entries = _s3_entries(dataset, [resolve_image_path(dataset, image) for image in images])
    else:
        entries = _local_entries(_local_paths(dataset, images))

    digest = hashlib.sha256(f"{VERSION}\n".encode())
    for name, data in ((MANIFEST, manifest), (ATTRIBUTES, vocabulary)):
        digest.update(f"{name}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\n".encode())
    found = missing = total = 0
    for image, (size, content) in zip(images, entries, strict=True):
        digest.update(f"{image}\t{size}\t{content}\n".encode())
        if size < 0:
            missing += 1
        else:
            found += 1
            total += size
    return Fingerprint(digest=digest.hexdigest(), rows=len(images), images=found, missing=missing,
                       image_bytes=total, method="etag" if s3 else "sha256", dataset=dataset,
                       seconds=round(time.perf_counter() - start, 3))
