"""Nearest-neighbour search behind a small interface, so an approximate index can replace exact search.

The paper retrieves by Euclidean distance in feature space. Every index here returns **Euclidean (L2)
distances, not squared**: faiss computes squared L2 and we take the square root, so numbers are
comparable across index kinds and with ``np.linalg.norm``. Result slots that an index could not fill
(``k`` larger than the gallery, or an IVF probe that reached fewer than ``k`` vectors) hold index
``-1`` and distance ``inf``; results are sorted by increasing distance.

Kinds:

* ``"exact"``: :class:`ExactIndex`, brute force (faiss ``IndexFlatL2``).
* ``"ivf"``: :class:`IVFIndex`, faiss ``IndexIVFFlat`` with ``nlist ~ 4 * sqrt(N)`` coarse cells, of
  which ``nprobe`` are scanned per query (speed / recall trade-off).
* ``"auto"``: exact below :data:`AUTO_IVF_THRESHOLD` vectors, ivf from there on; the chosen kind is
  recorded in the returned index's ``kind`` attribute.

Faiss uses as many threads as ``OMP_NUM_THREADS`` says when it is set (see :func:`configure_threads`).
"""

from __future__ import annotations

import math
import os
from typing import Protocol, runtime_checkable

import faiss
import numpy as np

from amnet import storage

AUTO_IVF_THRESHOLD = 50_000
DEFAULT_NPROBE = 32


@runtime_checkable
class Index(Protocol):
    """What retrieval needs from an index; ``kind`` names the implementation (e.g. "exact", "ivf")."""

    kind: str

    def add(self, x: np.ndarray) -> None:
        """Append ``(N, D)`` float32 vectors; their ids continue from ``ntotal``."""

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(B, D)`` queries -> (L2 distances ``(B, k)`` float32, ids ``(B, k)`` int64)."""

    @property
    def ntotal(self) -> int:
        """Number of indexed vectors."""


def configure_threads() -> None:
    """Make faiss use ``OMP_NUM_THREADS`` threads when that variable is set to a positive integer."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        faiss.omp_set_num_threads(int(value))


def _as_matrix(x: np.ndarray, dim: int, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 ``(N, dim)`` matrix (what faiss expects)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (N, {dim}); got {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


class _FaissIndex:
    """Shared add/search over a faiss L2 index; subclasses build ``self.faiss_index``."""

    kind = "faiss"
    faiss_index: faiss.Index

    @property
    def dim(self) -> int:
        return int(self.faiss_index.d)

    @property
    def ntotal(self) -> int:
        return int(self.faiss_index.ntotal)

    def add(self, x: np.ndarray) -> None:
        self.faiss_index.add(_as_matrix(x, self.dim, "add: x"))

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if int(k) < 1:
            raise ValueError(f"search: k must be >= 1, got {k}")
        squared, ids = self.faiss_index.search(_as_matrix(q, self.dim, "search: q"), int(k))
        distances = np.sqrt(np.maximum(squared, 0.0), dtype=np.float32)
        distances[ids < 0] = np.inf
        return distances, ids.astype(np.int64, copy=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, ntotal={self.ntotal})"


class ExactIndex(_FaissIndex):
    """Exact Euclidean search (faiss ``IndexFlatL2``)."""

    kind = "exact"

    def __init__(self, dim: int, faiss_index: faiss.IndexFlatL2 | None = None) -> None:
        configure_threads()
        self.faiss_index = faiss_index if faiss_index is not None else faiss.IndexFlatL2(int(dim))


class IVFIndex(_FaissIndex):
    """Approximate Euclidean search (faiss ``IndexIVFFlat``).

    The coarse quantizer is trained (k-means, faiss's fixed seed) on the first batch passed to
    :meth:`add`, which must therefore hold at least ``nlist`` vectors; later batches reuse its cells.
    """

    kind = "ivf"

    def __init__(
        self,
        dim: int,
        nlist: int,
        nprobe: int = DEFAULT_NPROBE,
        faiss_index: faiss.IndexIVFFlat | None = None,
    ) -> None:
        configure_threads()
        if faiss_index is None:
            if int(nlist) < 1:
                raise ValueError(f"IVFIndex: nlist must be >= 1, got {nlist}")
            quantizer = faiss.IndexFlatL2(int(dim))
            faiss_index = faiss.IndexIVFFlat(quantizer, int(dim), int(nlist), faiss.METRIC_L2)
            self._quantizer = quantizer  # keep the Python object alive alongside the index
        self.faiss_index = faiss_index
        self.nprobe = nprobe

    @property
    def nlist(self) -> int:
        return int(self.faiss_index.nlist)

    @property
    def nprobe(self) -> int:
        return int(self.faiss_index.nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        """Cells scanned per query, clamped to 1..nlist."""
        self.faiss_index.nprobe = max(1, min(int(value), self.nlist))

    def add(self, x: np.ndarray) -> None:
        x = _as_matrix(x, self.dim, "add: x")
        if not self.faiss_index.is_trained:
            if x.shape[0] < self.nlist:
                raise ValueError(
                    f"IVFIndex: the first add needs at least nlist={self.nlist} vectors to train; "
                    f"got {x.shape[0]} (use a smaller nlist or the exact index)"
                )
            self.faiss_index.train(x)
        self.faiss_index.add(x)

    def __repr__(self) -> str:
        return f"IVFIndex(dim={self.dim}, ntotal={self.ntotal}, nlist={self.nlist}, nprobe={self.nprobe})"


def default_nlist(n: int) -> int:
    """Coarse cells for ``n`` vectors: about ``4 * sqrt(n)``, at least 1 and at most ``n``."""
    return max(1, min(int(n), round(4 * math.sqrt(n))))


def resolve_kind(kind: str, n: int) -> str:
    """``"exact"`` or ``"ivf"`` for a gallery of ``n`` vectors (``"auto"``: ivf from 50k vectors)."""
    if kind == "auto":
        return "ivf" if n >= AUTO_IVF_THRESHOLD else "exact"
    if kind not in ("exact", "ivf"):
        raise ValueError(f"unknown index kind {kind!r}; use 'exact', 'ivf' or 'auto'")
    return kind


def build_index(
    features: np.ndarray,
    kind: str = "exact",
    nprobe: int = DEFAULT_NPROBE,
    nlist: int | None = None,
) -> Index:
    """An index holding ``features`` ``(N, D)`` (ids 0..N-1), of ``kind`` "exact", "ivf" or "auto".

    For ivf, ``nlist`` defaults to :func:`default_nlist` and ``nprobe`` is clamped to ``nlist``. The
    returned index's ``kind`` says which implementation "auto" picked.
    """
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"build_index: features must be a non-empty (N, D) matrix; got {features.shape}")
    n, dim = features.shape
    index: Index
    if resolve_kind(kind, n) == "exact":
        index = ExactIndex(dim)
    else:
        index = IVFIndex(dim, nlist=nlist or default_nlist(n), nprobe=nprobe)
    index.add(features)
    return index


def _wrap(raw: faiss.Index) -> Index:
    """Our wrapper around a deserialized faiss index."""
    if isinstance(raw, faiss.IndexIVFFlat):
        return IVFIndex(raw.d, nlist=raw.nlist, nprobe=raw.nprobe, faiss_index=raw)
    if isinstance(raw, faiss.IndexFlatL2):
        return ExactIndex(raw.d, faiss_index=raw)
    raise ValueError(
        f"unsupported faiss index type {type(raw).__name__}; expected IndexFlatL2 or IndexIVFFlat"
    )


def save_index(index: Index, uri: str) -> None:
    """Write ``index`` (vectors, and for ivf its cells and nprobe) to a local path or ``s3://`` URI."""
    raw = getattr(index, "faiss_index", None)
    if raw is None:
        raise TypeError(f"save_index: {type(index).__name__} is not a faiss-backed index from amnet.search")
    storage.write_bytes(uri, faiss.serialize_index(raw).tobytes())


def load_index(uri: str) -> Index:
    """Read an index written by :func:`save_index` (same kind, contents and nprobe)."""
    data = np.frombuffer(storage.read_bytes(uri), dtype=np.uint8)
    return _wrap(faiss.deserialize_index(data))
