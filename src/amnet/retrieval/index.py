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
* ``"pq"``: :class:`PQRefineIndex`, 4-bit product quantisation scanned with SIMD lookups (faiss
  ``IndexPQFastScan``, :func:`default_pq_m` sub-vectors of half a byte each) whose top ``k * k_factor``
  (default 40) candidates are re-ranked with the exact vectors (``IndexRefineFlat``): distances are exact, only the
  candidate set is approximate. Unlike IVF it does not rely on cluster structure in the features.
* ``"auto"``: exact below :data:`AUTO_THRESHOLD` vectors, pq from there on; the chosen kind is
  recorded in the returned index's ``kind`` attribute.

``benchmarks/search.py`` measures all of them over 200k vectors (docs/performance.md): at 256-D,
exact takes ~25 ms per single query on one CPU core, pq ~1.1 ms at recall@20 >= 0.99 on uniform and
clustered features, ivf is as fast on clustered features but loses recall on unstructured ones.

Faiss uses as many threads as ``OMP_NUM_THREADS`` says when it is set (see :func:`configure_threads`).
"""

from __future__ import annotations

import math
import os
from typing import Protocol, runtime_checkable

import faiss
import numpy as np

from amnet import storage
from amnet.names import INDEX_KINDS

AUTO_THRESHOLD = 50_000
AUTO_IVF_THRESHOLD = AUTO_THRESHOLD  # the old name, kept for callers
DEFAULT_NPROBE = 32
DEFAULT_K_FACTOR = 40  # pq: exact re-ranking of the top k * 40 candidates (800 for top-20)
# pq: below this many queries per call, faiss's fast-scan kernel that splits the *codes* across its
# loop (implem 14) answers a single query ~1.6x faster than its default, which is tuned for batches
# (benchmarks/search.py, 1M x 256: p50 5.9 -> 3.6 ms, same recall); batches keep the default.
FEW_QUERIES = 8


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


class PQRefineIndex(_FaissIndex):
    """Approximate candidates, exact distances: 4-bit PQ fast-scan + exact re-ranking.

    ``m`` sub-quantizers of 16 centroids each (``m / 2`` bytes per vector in the scan) are trained on
    the first batch passed to :meth:`add` (at least 16 vectors; faiss's fixed seed). A query scans the
    codes, keeps the best ``k * k_factor`` and re-ranks them with the stored float32 vectors, so the
    returned distances are exact and recall grows with ``k_factor``.
    """

    kind = "pq"

    def __init__(self, dim: int, m: int | None = None, k_factor: int = DEFAULT_K_FACTOR,
                 faiss_index: faiss.IndexRefineFlat | None = None) -> None:
        configure_threads()
        if faiss_index is None:
            m = int(m or default_pq_m(dim))
            if m < 1 or dim % m:
                raise ValueError(f"PQRefineIndex: m must divide the dimension {dim}; got {m}")
            base = faiss.IndexPQFastScan(int(dim), m, 4, faiss.METRIC_L2)
            faiss_index = faiss.IndexRefineFlat(base)
            self._base = base  # keep the Python object alive alongside the index
        self.faiss_index = faiss_index
        self.k_factor = k_factor

    @property
    def k_factor(self) -> int:
        return int(round(self.faiss_index.k_factor))

    @k_factor.setter
    def k_factor(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"PQRefineIndex: k_factor must be >= 1, got {value}")
        self.faiss_index.k_factor = float(value)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        base = faiss.downcast_index(self.faiss_index.base_index)
        if isinstance(base, faiss.IndexPQFastScan):
            base.implem = 14 if np.asarray(q).reshape(-1, self.dim).shape[0] < FEW_QUERIES else 0
        return super().search(q, k)

    def add(self, x: np.ndarray) -> None:
        x = _as_matrix(x, self.dim, "add: x")
        if not self.faiss_index.is_trained:
            if x.shape[0] < 16:
                raise ValueError(f"PQRefineIndex: the first add needs at least 16 vectors to train; got {x.shape[0]}")
            self.faiss_index.train(x)
        self.faiss_index.add(x)

    def __repr__(self) -> str:
        return f"PQRefineIndex(dim={self.dim}, ntotal={self.ntotal}, k_factor={self.k_factor})"


def default_pq_m(dim: int) -> int:
    """Sub-quantizers for ``dim``: ``dim / 2`` (two dimensions each) up to 256, always a divisor of ``dim``."""
    for m in range(min(max(dim // 2, 1), 256), 0, -1):
        if dim % m == 0:
            return m
    return 1


def default_nlist(n: int) -> int:
    """Coarse cells for ``n`` vectors: about ``4 * sqrt(n)``, at least 1 and at most ``n``."""
    return max(1, min(int(n), round(4 * math.sqrt(n))))


def resolve_kind(kind: str, n: int) -> str:
    """The concrete kind for a gallery of ``n`` vectors (``"auto"``: exact below 50k vectors, else pq)."""
    if kind == "auto":
        return "pq" if n >= AUTO_THRESHOLD else "exact"
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(INDEX_KINDS)}")
    return kind


def build_index(
    features: np.ndarray,
    kind: str = "exact",
    nprobe: int = DEFAULT_NPROBE,
    nlist: int | None = None,
) -> Index:
    """An index holding ``features`` ``(N, D)`` (ids 0..N-1), of ``kind`` "exact", "ivf", "pq" or "auto".

    For ivf, ``nlist`` defaults to :func:`default_nlist` and ``nprobe`` is clamped to ``nlist``; pq
    needs at least 16 vectors (smaller galleries fall back to exact). The returned index's ``kind``
    says which implementation was built.
    """
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"build_index: features must be a non-empty (N, D) matrix; got {features.shape}")
    n, dim = features.shape
    index: Index
    chosen = resolve_kind(kind, n)
    if chosen == "exact" or (chosen == "pq" and n < 16):
        index = ExactIndex(dim)
    elif chosen == "pq":
        index = PQRefineIndex(dim)
    else:
        index = IVFIndex(dim, nlist=nlist or default_nlist(n), nprobe=nprobe)
    index.add(features)
    return index


def _wrap(raw: faiss.Index) -> Index:
    """Our wrapper around a deserialized faiss index."""
    if isinstance(raw, faiss.IndexRefineFlat):
        return PQRefineIndex(raw.d, k_factor=max(1, round(raw.k_factor)), faiss_index=raw)
    if isinstance(raw, faiss.IndexIVFFlat):
        return IVFIndex(raw.d, nlist=raw.nlist, nprobe=raw.nprobe, faiss_index=raw)
    if isinstance(raw, faiss.IndexFlatL2):
        return ExactIndex(raw.d, faiss_index=raw)
    raise ValueError(
        f"unsupported faiss index type {type(raw).__name__}; expected IndexFlatL2, IndexIVFFlat or IndexRefineFlat"
    )


def recall_at_k(index: Index, exact: Index, q: np.ndarray, k: int) -> float:
    """Mean |index top k ∩ exact top k| / k over the queries ``q`` (1.0 for the exact index itself)."""
    k = min(int(k), exact.ntotal)
    got, truth = index.search(q, k)[1], exact.search(q, k)[1]
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / k for a, b in zip(got, truth, strict=True)]))


def save_index(index: Index, uri: str) -> None:
    """Write ``index`` (vectors, and for ivf its cells and nprobe) to a local path or ``s3://`` URI."""
    raw = getattr(index, "faiss_index", None)
    if raw is None:
        raise TypeError(f"save_index: {type(index).__name__} is not a faiss-backed index from amnet.retrieval.index")
    storage.write_bytes(uri, faiss.serialize_index(raw).tobytes())


def load_index(uri: str) -> Index:
    """Read an index written by :func:`save_index` (same kind, contents and nprobe)."""
    data = np.frombuffer(storage.read_bytes(uri), dtype=np.uint8)
    return _wrap(faiss.deserialize_index(data))
