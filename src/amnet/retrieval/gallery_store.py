"""The gallery for evaluation in bounded memory: its vectors on local disk, and the searches over them block by block.

Evaluation ranks every query against every gallery vector several times (the search, the gallery-size
study, the exact-target ranks, an approximate index's recall). Holding the gallery as one float32 matrix
costs N x Q x 4 bytes (3.3 GB for 200k images at the paper's AlexNet fc7); here the feature shards are
copied, still fp16 (N x Q x 2 bytes of disk), into a file on local disk (:class:`DiskVectors`, under
``TMPDIR``) and read back one block of rows at a time with plain reads (a memory map would count the
pages it touched as the process's resident memory). Memory then holds one block, the ids and the label
matrices, whatever the gallery size (``benchmarks/evaluate_memory.py`` measures it).

Every search returns what the in-memory search returns:

* :class:`BlockExactIndex`: exact L2 top-k with faiss's own kernel (``faiss.knn``) on each block of
  :func:`default_block_rows` rows, the blocks' results merged by (distance, row): the order of faiss's
  exact index, ties to the lower row. Blocks start at multiples of faiss's own 1,024-row database block,
  so its matrix products see the same shapes as over the whole matrix and round alike.
* :class:`StoredPQIndex`: the stored PQ fast-scan + re-rank index without its copy of the vectors: the
  fast-scan part is read from ``index.faiss`` (its float32 copy stays unread on disk, memory-mapped), its
  ``k * k_factor`` candidates get faiss's exact distance on rows read from the file, and the top k are
  kept as faiss's ``IndexRefineFlat`` keeps them.
* :class:`AttributeRule`: the attribute-based baseline's ordering (mismatched predicted attributes x
  (the largest distance in the chunk of queries + 1) + distance, per chunk of 64 queries), in two
  passes: the largest distance first, then the scores; ties go to the lower row.
* :func:`l2_target_ranks`: :func:`amnet.retrieval.metrics.l2_target_rank` (float64, chunks of 256
  queries) over blocks, in two passes: the target's own distance, then the rows ranked before it.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import faiss
import numpy as np
import pyarrow as pa

from amnet import storage
from amnet.data.split import label_matrix
from amnet.names import FEATURES_JSON
from amnet.retrieval import metrics
from amnet.retrieval.featurize import iter_features
from amnet.retrieval.index import FEW_QUERIES, l2_distances, search_args

log = logging.getLogger(__name__)

BLOCK_BYTES = 16 * 2**20  # float32 bytes of one block of gallery rows
SPAN_BYTES = 2**20  # DiskVectors.take: the most bytes of the file one read covers
FAISS_BLOCK = 1024  # faiss's database block (distance_compute_blas_database_bs): blocks are multiples of it
ATTRIBUTE_CHUNK = 64  # queries per chunk of the attribute rule (its distance scale is per chunk)
L2_CHUNK = 256  # queries per chunk of metrics.l2_target_rank


def default_block_rows(dim: int) -> int:
    """Rows per block: :data:`BLOCK_BYTES` of float32 vectors, a multiple of faiss's database block."""
    return max(FAISS_BLOCK, BLOCK_BYTES // (4 * max(int(dim), 1)) // FAISS_BLOCK * FAISS_BLOCK)


def block_bounds(n: int, block_rows: int) -> list[tuple[int, int]]:
    """[start, stop) of each block of ``n`` rows; a last block of less than half ``block_rows`` joins the one
    before it. BLAS picks its kernel by the product's size, and a kernel for small products rounds
    differently: a short tail would be multiplied unlike the same rows inside the whole matrix."""
    step = max(int(block_rows), 1)
    bounds = [(a, min(a + step, n)) for a in range(0, n, step)]
    if len(bounds) > 1 and 2 * (bounds[-1][1] - bounds[-1][0]) < step:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


# ------------------------------------------------------------------------------------------ the vectors
class Vectors(Protocol):
    """Gallery vectors read by row ranges or row lists (float32, or an in-memory matrix's own dtype)."""

    n: int
    dim: int

    def rows(self, start: int, stop: int) -> np.ndarray:
        """(stop - start, dim) vectors of rows start..stop-1."""

    def take(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), dim) vectors of the given rows, in that order."""


class ArrayVectors:
    """An in-memory (N, dim) matrix behind the :class:`Vectors` interface (rows keep the matrix's dtype)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = np.asarray(x)
        if self.x.ndim != 2:
            raise ValueError(f"gallery vectors must be an (N, D) matrix; got shape {self.x.shape}")
        self.n, self.dim = self.x.shape

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.x[start:stop]

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.x[np.asarray(rows, dtype=np.int64)]


class SubsetVectors:
    """The rows ``rows`` of ``base`` as a gallery of their own (position i is ``base`` row ``rows[i]``)."""

    def __init__(self, base: Vectors, rows: np.ndarray) -> None:
        self.base, self.index = base, np.asarray(rows, dtype=np.int64)
        self.n, self.dim = len(self.index), base.dim

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.base.take(self.index[start:stop])

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.base.take(self.index[np.asarray(rows, dtype=np.int64)])


class DiskVectors:
    """fp16 vectors appended to a file in a fresh temporary folder, read back as float32 blocks.

    Reads are ``preadv`` into a new array (the page cache holds the file, not this process); ``close``
    (or leaving the ``with`` block) deletes the folder."""

    def __init__(self, dim: int, directory: str | None = None) -> None:
        self.dim, self.n = int(dim), 0
        self.folder = tempfile.mkdtemp(prefix="amnet-gallery-", dir=directory)
        self.path = os.path.join(self.folder, "vectors.f16")
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._row_bytes = 2 * self.dim

    def append(self, x: np.ndarray) -> None:
        """Append (b, dim) vectors (stored as fp16)."""
        data = np.ascontiguousarray(x, dtype=np.float16)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise ValueError(f"append: expected (b, {self.dim}) vectors, got {data.shape}")
        view, offset = memoryview(data).cast("B"), self.n * self._row_bytes
        while len(view):
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written
        self.n += len(data)

    def _read_into(self, out: np.ndarray, start: int) -> None:
        view, offset = memoryview(out).cast("B"), start * self._row_bytes
        while len(view):
            got = os.preadv(self._fd, [view], offset)
            if got <= 0:
                raise OSError(f"{self.path}: short read at byte {offset}")
            view, offset = view[got:], offset + got

    def rows(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((max(stop - start, 0), self.dim), np.float16)
        self._read_into(out, start)
        return out.astype(np.float32)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows in any order: one read per span of up to :data:`SPAN_BYTES` of the file holding some of them
        (a gallery subset's rows are dense enough that reading the rows between them is cheaper than a
        read per row)."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        out = np.empty((len(rows), self.dim), np.float16)
        span = max(1, SPAN_BYTES // self._row_bytes)
        a = 0
        while a < len(ordered):
            first = int(ordered[a])
            b = int(np.searchsorted(ordered, first + span, side="left"))
            if b - a == int(ordered[b - 1]) - first + 1:  # consecutive rows: straight into place
                self._read_into(out[a:b], first)
            else:
                chunk = np.empty((int(ordered[b - 1]) - first + 1, self.dim), np.float16)
                self._read_into(chunk, first)
                out[a:b] = chunk[ordered[a:b] - first]
            a = b
        result = np.empty_like(out)
        result[order] = out
        return result.astype(np.float32)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> DiskVectors:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def as_vectors(x: Vectors | np.ndarray) -> Vectors:
    """``x`` itself when it is :class:`Vectors`, else the matrix wrapped as :class:`ArrayVectors`."""
    return x if hasattr(x, "take") and hasattr(x, "rows") else ArrayVectors(x)


def blocks(vectors: Vectors, block_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, vectors) of each block of ``vectors``, in row order."""
    for a, b in block_bounds(vectors.n, block_rows or default_block_rows(vectors.dim)):
        yield a, vectors.rows(a, b)


# -------------------------------------------------------------------------------------------- the gallery
@dataclass
class Gallery:
    """A feature artifact for evaluation: ids, labels, predicted labels (attribute CNN features) in memory,
    vectors on disk."""

    ids: np.ndarray  # (N,) str
    labels: np.ndarray  # (N, M) int16
    pred_labels: np.ndarray | None  # (N, M) int16, or None without a pred_labels column
    vectors: DiskVectors

    def __len__(self) -> int:
        return len(self.ids)

    def close(self) -> None:
        self.vectors.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _label_rows(column: pa.ChunkedArray, num_attributes: int) -> np.ndarray:
    """A ``labels`` column (one list per row) -> (n, M) int16, from the Arrow buffers when every list has M values."""
    array = column.combine_chunks()
    if array.null_count == 0 and (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)):
        values = array.flatten()
        if values.null_count == 0 and (np.diff(array.offsets.to_numpy()) == num_attributes).all():
            return values.to_numpy().astype(np.int16).reshape(-1, num_attributes)
    return label_matrix(array.to_pylist(), num_attributes)


def open_gallery(features: str, num_attributes: int, directory: str | None = None) -> Gallery:
    """The feature artifact ``features`` read shard by shard: vectors copied to a :class:`DiskVectors`
    (under ``directory``, default ``TMPDIR``), ids and label matrices kept in memory."""
    dim = int(json.loads(storage.read_text(storage.join(features, FEATURES_JSON)))["dim"])
    vectors = DiskVectors(dim, directory)
    ids: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    try:
        for table, matrix in iter_features(features):
            vectors.append(matrix)
            ids.append(np.asarray(table.column("image_id").to_numpy(zero_copy_only=False)).astype(str))
            labels.append(_label_rows(table.column("labels"), num_attributes))
            if "pred_labels" in table.column_names:
                preds.append(_label_rows(table.column("pred_labels"), num_attributes))
    except BaseException:
        vectors.close()
        raise
    log.info("gallery of %d vectors (dim %d) in %s, %.1f MB on disk", vectors.n, dim, vectors.path,
             vectors.n * dim * 2 / 2**20)
    return Gallery(ids=np.concatenate(ids) if ids else np.zeros(0, dtype=str),
                   labels=np.concatenate(labels) if labels else np.zeros((0, num_attributes), np.int16),
                   pred_labels=np.concatenate(preds) if preds and len(preds) == len(ids) else None,
                   vectors=vectors)


# ------------------------------------------------------------------------------------------ top-k helpers
def smallest(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``values`` (m, b): the ``min(k, b)`` smallest (value, column), ordered by value then column."""
    m, b = values.shape
    kk = min(int(k), b)
    if kk == b:
        cols = np.broadcast_to(np.arange(b), (m, b)).copy()
    else:
        cols = np.argpartition(values, kk - 1, axis=1)[:, :kk]
        picked = np.take_along_axis(values, cols, 1)
        kth = picked.max(1)
        # argpartition picks any of the values tied with the k-th: take the lowest columns among them
        for i in np.flatnonzero((values == kth[:, None]).sum(1) > (picked == kth[:, None]).sum(1)):
            cand = np.flatnonzero(values[i] <= kth[i])
            cols[i] = cand[np.lexsort((cand, values[i, cand]))[:kk]]
    vals = np.take_along_axis(values, cols, 1)
    order = np.lexsort((cols, vals), axis=1)
    return np.take_along_axis(vals, order, 1), np.take_along_axis(cols, order, 1)


def merge_smallest(best: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray],
                   k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest (value, id) per row of two candidate sets, ordered by value then id."""
    vals = np.concatenate([best[0], new[0]], 1)
    ids = np.concatenate([best[1], new[1]], 1)
    order = np.lexsort((ids, vals), axis=1)[:, :k]
    return np.take_along_axis(vals, order, 1), np.take_along_axis(ids, order, 1)


def _empty(nq: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((nq, 0), dtype), np.zeros((nq, 0), np.int64)


def _padded(vals: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` columns: missing results as (inf, -1), as faiss fills slots it cannot."""
    if vals.shape[1] >= k:
        return vals, ids
    pad = k - vals.shape[1]
    return (np.concatenate([vals, np.full((len(vals), pad), np.inf, vals.dtype)], 1),
            np.concatenate([ids, np.full((len(ids), pad), -1, np.int64)], 1))


# ------------------------------------------------------------------------------------------------ exact L2
class BlockExactIndex:
    """Exact Euclidean search over :class:`Vectors`, one block at a time (the :class:`~amnet.retrieval.index.Index`
    interface, read-only): the results of faiss's exact index over the whole matrix."""

    kind = "exact"

    def __init__(self, vectors: Vectors | np.ndarray, block_rows: int | None = None) -> None:
        self.vectors = as_vectors(vectors)
        self.block_rows = block_rows or default_block_rows(self.vectors.dim)

    @property
    def ntotal(self) -> int:
        return int(self.vectors.n)

    def add(self, x: np.ndarray) -> None:
        raise TypeError("BlockExactIndex searches the vectors it was given; it takes no more")

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q, k = search_args(q, k, self.vectors.dim)
        rows = self.block_rows
        if len(q) * q.shape[1] >= faiss.cvar.distance_compute_blas_threshold and rows % FAISS_BLOCK:
            rows = -(-rows // FAISS_BLOCK) * FAISS_BLOCK  # faiss's BLAS path works in 1,024-row blocks: align
        best = _empty(len(q), np.float32)
        for start, x in blocks(self.vectors, rows):
            squared, ids = faiss.knn(q, np.ascontiguousarray(x, dtype=np.float32), min(k, len(x)))
            best = merge_smallest(best, (squared, ids + start), k)
        return l2_distances(*_padded(*best, k))

    def __repr__(self) -> str:
        return f"BlockExactIndex(dim={self.vectors.dim}, ntotal={self.ntotal}, block_rows={self.block_rows})"


# ----------------------------------------------------------------------------------------- the stored pq
def refine_order(squared: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` results faiss's ``IndexRefineFlat`` keeps from re-ranked candidates ``(nq, k_base)`` in the
    base index's order: a heap of the first ``k``, a later candidate replacing the worst only when strictly
    closer, then sorted by (distance, id), unfilled slots last as (FLT_MAX, -1)."""
    nq, kb = squared.shape
    out_d = np.full((nq, k), np.finfo(np.float32).max, np.float32)
    out_i = np.full((nq, k), -1, np.int64)
    order = np.lexsort((ids, squared), axis=1)
    sd, si = np.take_along_axis(squared, order, 1), np.take_along_axis(ids, order, 1)
    for i in range(nq):
        if kb > k and sd[i, k - 1] == sd[i, k]:  # a tie at the cut: which ones stay depends on arrival order
            heap = [(-float(d), -int(j)) for d, j in zip(squared[i, :k], ids[i, :k], strict=True)]
            heapq.heapify(heap)
            for d, j in zip(squared[i, k:], ids[i, k:], strict=True):
                if -heap[0][0] > d:
                    heapq.heapreplace(heap, (-float(d), -int(j)))
            kept = sorted((-d, -j) for d, j in heap)
        else:
            kept = list(zip(sd[i, :k].tolist(), si[i, :k].tolist(), strict=True))
        valid = [(d, j) for d, j in kept if j >= 0]
        for c, (d, j) in enumerate(valid):
            out_d[i, c], out_i[i, c] = d, j
    return out_d, out_i


class StoredPQIndex:
    """The stored PQ fast-scan + exact re-rank index searched without holding its float32 copy of the vectors:
    candidates from the fast-scan part, exact distances (faiss's own kernel) on rows read from ``vectors``."""

    kind = "pq"

    def __init__(self, refine: faiss.Index, vectors: Vectors, block_rows: int | None = None) -> None:
        self._refine = refine  # owns the fast-scan part; its float32 copy stays mapped, unread
        self.base = faiss.downcast_index(refine.base_index)  # the fast-scan index, or a transform around it
        inner = faiss.downcast_index(self.base.index) if isinstance(self.base, faiss.IndexPreTransform) else self.base
        self._fast_scan = inner if isinstance(inner, faiss.IndexPQFastScan) else None
        self.k_factor = max(1, round(refine.k_factor))
        self.vectors = as_vectors(vectors)
        self.block_rows = block_rows or default_block_rows(self.vectors.dim)

    @property
    def ntotal(self) -> int:
        return int(self.base.ntotal)

    def add(self, x: np.ndarray) -> None:
        raise TypeError("StoredPQIndex searches the stored index as it is; it takes no more")

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q, k = search_args(q, k, self.vectors.dim)
        if self._fast_scan is not None:  # as PQRefineIndex.search sets it
            self._fast_scan.implem = 14 if len(q) < FEW_QUERIES else 0
        k_base = int(np.float32(k) * np.float32(self.k_factor))
        _, cand = self.base.search(q, k_base)
        squared = np.full(cand.shape, np.inf, np.float32)
        per_chunk = max(1, self.block_rows // max(k_base, 1))
        for s in range(0, len(q), per_chunk):
            ids = cand[s : s + per_chunk]
            rows = np.unique(ids[ids >= 0])
            if not len(rows):
                continue
            y = np.ascontiguousarray(self.vectors.take(rows), dtype=np.float32)
            local = np.where(ids >= 0, np.searchsorted(rows, ids), -1).astype(np.int64)
            qs = q[s : s + per_chunk]
            out = np.empty(ids.shape, np.float32)
            faiss.fvec_L2sqr_by_idx(faiss.swig_ptr(out), faiss.swig_ptr(qs), faiss.swig_ptr(y),
                                    faiss.swig_ptr(local), q.shape[1], len(qs), k_base)
            squared[s : s + per_chunk] = out
        return l2_distances(*refine_order(squared, cand, k))

    def __repr__(self) -> str:
        return f"StoredPQIndex(dim={self.base.d}, ntotal={self.ntotal}, k_factor={self.k_factor})"


def read_stored_pq(uri: str, vectors: Vectors, block_rows: int | None = None) -> StoredPQIndex | None:
    """The stored index file ``uri`` as a :class:`StoredPQIndex` (its float32 copy memory-mapped and never
    read), or None when it is not a PQ + re-rank index. An ``s3://`` file is first streamed to local disk."""
    if storage.is_s3(uri):
        bucket, key = storage.split_s3(uri)
        with tempfile.TemporaryDirectory(prefix="amnet-index-") as tmp:
            path = os.path.join(tmp, "index.faiss")
            storage.s3_client().download_file(bucket, key, path)  # streamed to disk, not held in memory
            raw = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC)  # the mapping outlives the file's name
    else:
        raw = faiss.read_index(uri, faiss.IO_FLAG_MMAP_IFC)
    if not isinstance(raw, faiss.IndexRefineFlat):
        return None
    return StoredPQIndex(raw, vectors, block_rows)


# ------------------------------------------------------------------------------------ the attribute rule
class AttributeRule:
    """The attribute-based ordering, lower first: per chunk of :data:`ATTRIBUTE_CHUNK` queries, the number of
    mismatched predicted attributes x (the chunk's largest distance to the gallery + 1) + the distance.

    Read in passes over ``vectors``: :meth:`scale` takes the largest distance per chunk (once per rule), then
    :meth:`rank` computes the scores block by block, :meth:`target_ranks` twice (the target's own score,
    then the rows ranked before it), each over the chunks that need it."""

    def __init__(self, q: np.ndarray, vectors: Vectors | np.ndarray, gallery_pred: np.ndarray,
                 pred_target: np.ndarray, block_rows: int | None = None, chunk: int = ATTRIBUTE_CHUNK) -> None:
        self.q, self.vectors = q, as_vectors(vectors)
        self.gallery_pred, self.pred_target = gallery_pred, pred_target
        self.block_rows = block_rows or default_block_rows(self.vectors.dim)
        self.chunk = chunk
        self._scale: dict[int, np.floating] = {}

    def _chunks(self) -> list[int]:
        return list(range(0, len(self.q), self.chunk))

    def _distances(self, s: int, x: np.ndarray, g2: np.ndarray) -> np.ndarray:
        qs = self.q[s : s + self.chunk]
        return np.sqrt(np.maximum((qs**2).sum(1)[:, None] - 2 * qs @ x.T + g2[None, :], 0))  # (b, block)

    def scale(self, chunks: list[int]) -> dict[int, np.floating]:
        """Per chunk of queries (its first query): its largest distance to any gallery vector, + 1."""
        missing = [s for s in chunks if s not in self._scale]
        if missing:
            top: dict[int, np.floating] = {}
            for _, x in blocks(self.vectors, self.block_rows):
                g2 = (x**2).sum(1)
                for s in missing:
                    m = self._distances(s, x, g2).max()
                    top[s] = m if s not in top else max(top[s], m)
            self._scale.update({s: m + 1.0 for s, m in top.items()})
        return {s: self._scale[s] for s in chunks}

    def _scores(self, chunks: list[int]) -> Iterator[tuple[int, int, np.ndarray]]:
        """(first row of the block, first query of the chunk, (b, block) scores) over the whole gallery."""
        scale = self.scale(chunks)
        for start, x in blocks(self.vectors, self.block_rows):
            g2 = (x**2).sum(1)
            pred = self.gallery_pred[start : start + len(x)]
            for s in chunks:
                dist = self._distances(s, x, g2)
                mismatched = (pred[None, :, :] != self.pred_target[s : s + self.chunk, None, :]).sum(2)
                yield start, s, mismatched * scale[s] + dist

    def rank(self, k: int) -> np.ndarray:
        """(N, k) gallery rows, best first."""
        chunks = self._chunks()
        best = {s: _empty(len(self.q[s : s + self.chunk]), np.float64) for s in chunks}
        for start, s, score in self._scores(chunks):
            vals, cols = smallest(score, k)
            best[s] = merge_smallest(best[s], (vals, cols + start), k)
        out = np.empty((len(self.q), k), dtype=np.int64)
        for s, (vals, ids) in best.items():
            out[s : s + len(vals)] = _padded(vals, ids, k)[1]
        return out

    def target_ranks(self, target_rows: np.ndarray) -> np.ndarray:
        """(N,) 1-based rank of each query's target row in the full ordering (:func:`metrics.target_rank`)."""
        rows = np.asarray(target_rows, dtype=np.int64)
        if len(rows) and rows.max() >= self.vectors.n:
            raise ValueError(f"target row {int(rows.max())} outside the gallery of {self.vectors.n} items")
        chunks = [s for s in self._chunks() if (rows[s : s + self.chunk] >= 0).any()]
        own = np.full(len(self.q), np.nan)
        for start, s, score in self._scores(chunks):
            t = rows[s : s + len(score)]
            inside = np.flatnonzero((t >= start) & (t < start + score.shape[1]))
            own[s + inside] = score[inside, t[inside] - start]
        return _count_before(rows, own, self._scores(chunks))


def _count_before(rows: np.ndarray, own: np.ndarray, scores: Iterator[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """1 + the rows scored below each query's own target score, or equal at a lower row (:data:`metrics.NO_TARGET`
    for a query without a target)."""
    out = np.full(len(rows), metrics.NO_TARGET, dtype=np.int64)
    before = np.zeros(len(rows), dtype=np.int64)
    for start, s, score in scores:
        t = rows[s : s + len(score)]
        mine = own[s : s + len(score), None]
        lower = (np.arange(start, start + score.shape[1])[None, :] < t[:, None])
        before[s : s + len(score)] += ((score < mine) | ((score == mine) & lower)).sum(1)
    has = rows >= 0
    out[has] = 1 + before[has]
    return out


# ------------------------------------------------------------------------------------- exact target ranks
def l2_target_ranks(q: np.ndarray, vectors: Vectors | np.ndarray, target_rows: np.ndarray,
                    block_rows: int | None = None, chunk: int = L2_CHUNK) -> np.ndarray:
    """:func:`amnet.retrieval.metrics.l2_target_rank` over ``vectors`` block by block (float64 distances,
    the same chunks of queries): two passes, the target's own distance, then the rows ranked before it."""
    vectors = as_vectors(vectors)
    q = np.asarray(q, dtype=np.float64)
    rows = np.asarray(target_rows, dtype=np.int64)
    if len(rows) and rows.max() >= vectors.n:
        raise ValueError(f"target row {int(rows.max())} outside the gallery of {vectors.n} items")
    q2 = (q**2).sum(1)
    chunks = [s for s in range(0, len(q), chunk) if (rows[s : s + chunk] >= 0).any()]
    block_rows = block_rows or default_block_rows(vectors.dim)

    def squared(only_targets: bool) -> Iterator[tuple[int, int, np.ndarray]]:
        for start, x in blocks(vectors, block_rows):
            g = np.asarray(x, dtype=np.float64)
            g2 = (g**2).sum(1)
            for s in chunks:
                t = rows[s : s + chunk]
                if only_targets and not ((t >= start) & (t < start + len(g))).any():
                    continue
                qs = q[s : s + chunk]
                yield start, s, np.maximum(q2[s : s + chunk][:, None] - 2 * qs @ g.T + g2[None, :], 0)

    own = np.full(len(q), np.nan)
    for start, s, block in squared(True):
        t = rows[s : s + len(block)]
        inside = np.flatnonzero((t >= start) & (t < start + block.shape[1]))
        own[s + inside] = block[inside, t[inside] - start]
    return _count_before(rows, own, squared(False))
