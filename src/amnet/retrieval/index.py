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
  ``IndexPQFastScan``, :func:`default_pq_m` sub-vectors of half a byte each, two dimensions each from
  16-D to 512-D; vectors are zero-padded to whole sub-vectors) whose top ``k * k_factor`` (default 40)
  candidates are re-ranked with the exact vectors (``IndexRefineFlat``): distances are exact, only the
  candidate set is approximate. Unlike IVF and HNSW it does not rely on structure in the features.
* ``"hnsw"``: :class:`HNSWIndex`, a navigable small-world graph (faiss ``IndexHNSWFlat``, ``M`` = 32
  links per node, ``efConstruction`` = 100) whose ``efSearch`` is tuned after building to the smallest
  value that reaches a recall@20 target (default 0.99) on held-out queries (:meth:`HNSWIndex.tune`).
  Distances are exact. Sub-millisecond on structured (clustered) features even at 1M x 256, but on
  unstructured ones (i.i.d. uniform) no ``efSearch`` reaches the target at a useful cost, and the graph
  takes minutes to build at 1M vectors: an explicit choice, not ``auto``'s.
* ``"auto"``: exact while one exact query stays cheap, pq above (:func:`resolve_kind`); the chosen
  kind is recorded in the returned index's ``kind`` attribute.

``benchmarks/search.py`` measures all of them (docs/performance.md). One query over 1M x 256 on one
CPU core: exact ~45 ms; pq ~3.1 ms at recall@20 >= 0.99 on uniform and clustered features; on clustered
ones ivf (0.2-0.6 ms) and hnsw (0.35 ms) reach 0.99 too, on uniform ones neither does (ivf 0.10 at
nprobe 32, hnsw 0.81 at efSearch 4096).

Faiss uses as many threads as ``OMP_NUM_THREADS`` says when it is set (see :func:`configure_threads`).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Protocol, runtime_checkable

import faiss
import numpy as np

from amnet import storage
from amnet.names import INDEX_KINDS

log = logging.getLogger(__name__)

AUTO_THRESHOLD = 50_000
# auto: exact while N * (C + EXACT_OVERHEAD) <= EXACT_BUDGET. One exact query over N x C float32 costs
# ~0.07 ns * N * (C + 32) on one core while the matrix is cache-resident (benchmarks/search.py
# --exact-cost: ~2.8 ns per vector at C = 8, ~4.8 at C = 36, ~6.5 at C = 64), so the budget keeps it
# under ~1 ms: 176k vectors at C = 36, 125k at C = 64; above C = 208 the 50k floor (AUTO_THRESHOLD)
# decides, as before.
EXACT_BUDGET = 12_000_000
EXACT_OVERHEAD = 32
AUTO_IVF_THRESHOLD = AUTO_THRESHOLD  # the old name, kept for callers
DEFAULT_NPROBE = 32
DEFAULT_K_FACTOR = 40  # pq: exact re-ranking of the top k * 40 candidates (800 for top-20)
# pq: below this many queries per call, faiss's fast-scan kernel that splits the *codes* across its
# loop (implem 14) answers a single query ~1.6x faster than its default, which is tuned for batches
# (benchmarks/search.py, 1M x 256: p50 5.9 -> 3.6 ms, same recall); batches keep the default.
FEW_QUERIES = 8
# hnsw: links per node and construction beam. efConstruction 100 (faiss's default is 40) builds a graph
# that stays navigable across well-separated clusters (over 1M x 37 clustered vectors, M 32 /
# efConstruction 40 stalls at recall@20 0.986 at efSearch 1024). Over 1M x 256 clustered vectors, M 32
# reaches 0.995 at efSearch 200 in 0.43 ms where M 16 stalls near 0.993 (1.07 ms at efSearch 880), for
# the same build time (~5 min on 2 cores) and 1.27x instead of 1.14x the exact index's memory.
DEFAULT_HNSW_M = 32
DEFAULT_EF_CONSTRUCTION = 100
DEFAULT_EF_SEARCH = 64  # before tuning
DEFAULT_RECALL_TARGET = 0.99
MAX_EF_SEARCH = 4096  # tuning gives up here (unstructured features): recall is recorded, not met
TUNE_QUERIES = 1000  # held-out queries efSearch is tuned on


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


def search_args(q: np.ndarray, k: int, dim: int) -> tuple[np.ndarray, int]:
    """An index search's arguments checked: ``q`` as a float32 ``(N, dim)`` matrix and ``k`` >= 1."""
    if int(k) < 1:
        raise ValueError(f"search: k must be >= 1, got {k}")
    return _as_matrix(q, dim, "search: q"), int(k)


def l2_distances(squared: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """faiss's squared L2 distances as distances (float32; inf where no result, ``ids`` -1), ids as int64."""
    distances = np.sqrt(np.maximum(squared, 0.0), dtype=np.float32)
    distances[ids < 0] = np.inf
    return distances, ids.astype(np.int64, copy=False)


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
        q, k = search_args(q, k, self.dim)
        return l2_distances(*self.faiss_index.search(q, k))

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
            if not 1 <= m <= dim:
                raise ValueError(f"PQRefineIndex: m must be between 1 and the dimension {dim}; got {m}")
            padded = m * math.ceil(dim / m)
            pq = faiss.IndexPQFastScan(padded, m, 4, faiss.METRIC_L2)
            base: faiss.Index = pq
            if padded != dim:  # zero dimensions keep L2 distances and let every sub-vector be the same size
                base = faiss.IndexPreTransform(faiss.RemapDimensionsTransform(int(dim), padded, False), pq)
                self._pq = pq
            faiss_index = faiss.IndexRefineFlat(base)
            self._base = base  # keep the Python objects alive alongside the index
        self.faiss_index = faiss_index
        self.k_factor = k_factor

    @property
    def m(self) -> int:
        """Sub-quantizers of the scanned codes."""
        return int(self._fast_scan().M)

    def _fast_scan(self) -> faiss.IndexPQFastScan:
        base = faiss.downcast_index(self.faiss_index.base_index)
        if isinstance(base, faiss.IndexPreTransform):
            base = faiss.downcast_index(base.index)
        return base

    @property
    def k_factor(self) -> int:
        return int(round(self.faiss_index.k_factor))

    @k_factor.setter
    def k_factor(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"PQRefineIndex: k_factor must be >= 1, got {value}")
        self.faiss_index.k_factor = float(value)

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        base = self._fast_scan()
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
        return f"PQRefineIndex(dim={self.dim}, ntotal={self.ntotal}, m={self.m}, k_factor={self.k_factor})"


class HNSWIndex(_FaissIndex):
    """Graph search with exact distances (faiss ``IndexHNSWFlat``): ``m`` links per node (2 * m on the
    bottom layer), built with a beam of ``ef_construction``; a query explores ``ef_search`` candidates.

    Vectors can be added in batches (no training). Call :meth:`tune` once they are all in to set
    ``ef_search`` to the smallest value that reaches a recall target; ``ef_search`` is stored with the
    index (faiss serialises it), the tuning result in :attr:`tuning` and :func:`index_params`.
    """

    kind = "hnsw"

    def __init__(self, dim: int, m: int = DEFAULT_HNSW_M, ef_construction: int = DEFAULT_EF_CONSTRUCTION,
                 ef_search: int | None = None, faiss_index: faiss.IndexHNSWFlat | None = None) -> None:
        configure_threads()
        if faiss_index is None:
            if int(m) < 2 or int(ef_construction) < 1:
                raise ValueError(f"HNSWIndex: need m >= 2 and ef_construction >= 1; got {m}, {ef_construction}")
            faiss_index = faiss.IndexHNSWFlat(int(dim), int(m), faiss.METRIC_L2)
            faiss_index.hnsw.efConstruction = int(ef_construction)
            ef_search = ef_search or DEFAULT_EF_SEARCH
        self.faiss_index = faiss_index
        if ef_search is not None:
            self.ef_search = ef_search
        self.tuning: dict | None = None

    @property
    def m(self) -> int:
        return int(self.faiss_index.hnsw.nb_neighbors(1))

    @property
    def ef_construction(self) -> int:
        return int(self.faiss_index.hnsw.efConstruction)

    @property
    def ef_search(self) -> int:
        return int(self.faiss_index.hnsw.efSearch)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        """Candidates explored per query (faiss uses at least ``k``)."""
        if int(value) < 1:
            raise ValueError(f"HNSWIndex: ef_search must be >= 1, got {value}")
        self.faiss_index.hnsw.efSearch = int(value)

    def tune(self, queries: np.ndarray, target: float = DEFAULT_RECALL_TARGET, k: int = 20,
             max_ef: int = MAX_EF_SEARCH) -> dict:
        """Set ``ef_search`` to the smallest value whose recall@k on ``queries`` reaches ``target`` with 95%
        confidence (mean minus 1.645 standard errors over the queries, so that fresh queries reach it too).

        ``queries`` (``(B, D)``) must be held out: vectors that are not in the graph (a vector that is
        finds itself and its own links, which overstates recall). The truth is exact search over the
        graph's stored vectors; a result counts as a hit when it is no farther than the exact k-th
        neighbour, both computed in float64 (ties between duplicates are not misses). ``ef_search``
        doubles from ``k`` up to ``max_ef``, then is bisected. Returns and stores :attr:`tuning`:
        ``ef_search``, ``recall`` (mean on ``queries`` at that value), ``recall_low`` (its lower bound),
        ``target``, ``k``, ``queries``, ``reached``; when no value up to ``max_ef`` reaches the target,
        ``max_ef`` is kept and a warning logged.
        """
        q = _as_matrix(queries, self.dim, "tune: queries")
        k = min(int(k), self.ntotal)
        if k < 1 or len(q) == 0:  # nothing to miss
            self.tuning = {"ef_search": self.ef_search, "recall": 1.0, "recall_low": 1.0, "target": float(target),
                           "k": max(k, 0), "queries": int(len(q)), "reached": True}
            return self.tuning
        storage = faiss.downcast_index(self.faiss_index.storage)
        q64 = q.astype(np.float64)

        def exact_distances(ids: np.ndarray) -> np.ndarray:
            """Squared L2 in float64 from the stored vectors (faiss's batched flat search rounds by ~1e-5)."""
            vectors = storage.reconstruct_batch(np.maximum(ids, 0).ravel()).reshape(*ids.shape, self.dim)
            return np.where(ids >= 0, ((vectors - q64[:, None, :]) ** 2).sum(axis=-1), np.inf)

        kth = exact_distances(storage.search(q, k)[1]).max(axis=1)

        def recall(ef: int) -> tuple[float, float]:
            """(mean recall@k, its one-sided 95% lower bound over the queries) at ``ef``."""
            self.ef_search = ef
            hits = (exact_distances(self.faiss_index.search(q, k)[1]) <= kth[:, None]).sum(axis=1)
            per_query = np.minimum(hits, k) / k
            low = per_query.mean() - 1.645 * per_query.std() / math.sqrt(len(per_query))
            return float(per_query.mean()), float(low)

        max_ef = max(int(max_ef), k)
        ef, lo = k, k
        got, low = recall(k)
        while low < target and ef < max_ef:
            lo, ef = ef, min(2 * ef, max_ef)
            got, low = recall(ef)
        reached = low >= target
        if reached:  # the smallest passing value in (lo, ef], to within an eighth
            while ef - lo > max(1, lo // 8):
                mid = (lo + ef) // 2
                r = recall(mid)
                if r[1] >= target:
                    ef, (got, low) = mid, r
                else:
                    lo = mid
        else:
            log.warning("hnsw: recall@%d %.4f < target %.2f at the largest efSearch %d over %d vectors; "
                        "the features may lack the structure a graph index needs (pq does not)",
                        k, got, target, ef, self.ntotal)
        self.ef_search = ef
        self.tuning = {"ef_search": ef, "recall": round(got, 4), "recall_low": round(low, 4), "target": float(target),
                       "k": k, "queries": int(len(q)), "reached": bool(reached)}
        log.info("hnsw: efSearch %d gives recall@%d %.4f (95%% lower bound %.4f) on %d held-out queries (target %.2f)",
                 ef, k, got, low, len(q), target)
        return self.tuning

    def __repr__(self) -> str:
        return (f"HNSWIndex(dim={self.dim}, ntotal={self.ntotal}, m={self.m}, "
                f"ef_construction={self.ef_construction}, ef_search={self.ef_search})")


def default_pq_m(dim: int) -> int:
    """Sub-quantizers for ``dim``: one per dimension below 16-D, one per two dimensions up to 512-D
    (``ceil(dim / 2)``), at most 256 above (``ceil(dim / ceil(dim / 256))``). :class:`PQRefineIndex`
    pads the vectors with zeros to ``m`` equal sub-vectors, so an odd or prime dimension keeps two
    dimensions per sub-quantizer (benchmarks/search.py, 1M x 37: recall@20 0.999; a single
    sub-quantizer over all 37 dimensions, the only divisor, gave 0.002) and 8-D keeps 0.99+ (1.000;
    two dimensions each: 0.93-0.95)."""
    per = 1 if dim < 16 else max(2, math.ceil(dim / 256))
    return max(1, math.ceil(dim / per))


def default_nlist(n: int) -> int:
    """Coarse cells for ``n`` vectors: about ``4 * sqrt(n)``, at least 1 and at most ``n``."""
    return max(1, min(int(n), round(4 * math.sqrt(n))))


def resolve_kind(kind: str, n: int, dim: int | None = None) -> str:
    """The concrete kind for a gallery of ``n`` vectors of ``dim`` dimensions.

    ``"auto"`` is exact while exact search is already fast: below :data:`AUTO_THRESHOLD` (50k) vectors,
    or, when ``dim`` is given, while ``n * (dim + EXACT_OVERHEAD) <= EXACT_BUDGET`` (one exact query
    under ~1 ms on one core: up to 176k vectors in AMNet's 36-value attribute space, 125k at 64-D);
    above that it is pq, which reaches recall@20 >= 0.99 whatever the features' structure (hnsw is
    faster on structured features only, and slow to build: ask for it by name). Without ``dim`` only
    the 50k floor applies.
    """
    if kind == "auto":
        if n < AUTO_THRESHOLD or (dim is not None and n * (int(dim) + EXACT_OVERHEAD) <= EXACT_BUDGET):
            return "exact"
        return "pq"
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; use one of {', '.join(INDEX_KINDS)}")
    return kind


def build_index(
    features: np.ndarray,
    kind: str = "exact",
    nprobe: int = DEFAULT_NPROBE,
    nlist: int | None = None,
    recall_target: float = DEFAULT_RECALL_TARGET,
    queries: np.ndarray | None = None,
    hnsw_m: int = DEFAULT_HNSW_M,
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
) -> Index:
    """An index holding ``features`` ``(N, D)`` (ids 0..N-1), of ``kind`` "exact", "ivf", "pq", "hnsw"
    or "auto" (:func:`resolve_kind`, with ``D``).

    For ivf, ``nlist`` defaults to :func:`default_nlist` and ``nprobe`` is clamped to ``nlist``; pq
    needs at least 16 vectors (smaller galleries fall back to exact). hnsw links ``hnsw_m`` neighbours
    per node, built with ``ef_construction``; its ``efSearch`` is tuned to ``recall_target`` (recall@20)
    on ``queries``, or on held-out gallery vectors without them (:meth:`HNSWIndex.tune`). The returned
    index's ``kind`` says which implementation was built.
    """
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"build_index: features must be a non-empty (N, D) matrix; got {features.shape}")
    n, dim = features.shape
    index: Index
    chosen = resolve_kind(kind, n, dim)
    if chosen == "exact" or (chosen == "pq" and n < 16):
        index = ExactIndex(dim)
    elif chosen == "pq":
        index = PQRefineIndex(dim)
    elif chosen == "hnsw":
        return _build_hnsw(features, recall_target, queries, hnsw_m, ef_construction)
    else:
        index = IVFIndex(dim, nlist=nlist or default_nlist(n), nprobe=nprobe)
    index.add(features)
    if kind == "auto":
        log.info("index auto: %s for %d x %d vectors", index.kind, n, dim)
    return index


def _build_hnsw(features: np.ndarray, recall_target: float, queries: np.ndarray | None, m: int = DEFAULT_HNSW_M,
                ef_construction: int = DEFAULT_EF_CONSTRUCTION) -> HNSWIndex:
    """An :class:`HNSWIndex` over ``features`` tuned to ``recall_target``: on ``queries`` when given,
    else on the last :data:`TUNE_QUERIES` rows (at most a tenth of them), searched before they are
    added so they are held out of the graph, and added after (ids stay in row order)."""
    index = HNSWIndex(features.shape[1], m=m, ef_construction=ef_construction)
    held = 0 if queries is not None else min(TUNE_QUERIES, len(features) // 10)
    index.add(features[: len(features) - held])
    index.tune(queries if queries is not None else features[len(features) - held :], recall_target)
    if held:
        index.add(features[len(features) - held :])
    return index


def index_params(index: Index) -> dict:
    """The settings that define ``index``'s speed / recall trade-off, for its metadata (e.g. index.json):
    ivf ``nlist`` / ``nprobe``, pq ``m`` / ``k_factor``, hnsw ``m`` / ``ef_construction`` / ``ef_search``
    and, when it was tuned in this process, ``tuning`` (:meth:`HNSWIndex.tune`)."""
    params: dict = {"kind": index.kind}
    if isinstance(index, IVFIndex):
        params.update(nlist=index.nlist, nprobe=index.nprobe)
    elif isinstance(index, PQRefineIndex):
        params.update(m=index.m, k_factor=index.k_factor)
    elif isinstance(index, HNSWIndex):
        params.update(m=index.m, ef_construction=index.ef_construction, ef_search=index.ef_search)
        if index.tuning is not None:
            params["tuning"] = dict(index.tuning)
    return params


def _wrap(raw: faiss.Index) -> Index:
    """Our wrapper around a deserialized faiss index."""
    if isinstance(raw, faiss.IndexRefineFlat):
        return PQRefineIndex(raw.d, k_factor=max(1, round(raw.k_factor)), faiss_index=raw)
    if isinstance(raw, faiss.IndexIVFFlat):
        return IVFIndex(raw.d, nlist=raw.nlist, nprobe=raw.nprobe, faiss_index=raw)
    if isinstance(raw, faiss.IndexHNSWFlat):
        return HNSWIndex(raw.d, faiss_index=raw)
    if isinstance(raw, faiss.IndexFlatL2):
        return ExactIndex(raw.d, faiss_index=raw)
    raise ValueError(
        f"unsupported faiss index type {type(raw).__name__}; expected IndexFlatL2, IndexIVFFlat, IndexRefineFlat "
        "or IndexHNSWFlat"
    )


def recall_at_k(index: Index, exact: Index, q: np.ndarray, k: int) -> float:
    """Mean |index top k ∩ exact top k| / k over the queries ``q`` (1.0 for the exact index itself)."""
    k = min(int(k), exact.ntotal)
    got, truth = index.search(q, k)[1], exact.search(q, k)[1]
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / k for a, b in zip(got, truth, strict=True)]))


def save_index(index: Index, uri: str) -> None:
    """Write ``index`` (vectors, and for ivf its cells and nprobe, for pq its codes and k_factor, for hnsw
    its graph and tuned efSearch) to a local path or ``s3://`` URI."""
    raw = getattr(index, "faiss_index", None)
    if raw is None:
        raise TypeError(f"save_index: {type(index).__name__} is not a faiss-backed index from amnet.retrieval.index")
    storage.write_bytes(uri, faiss.serialize_index(raw).tobytes())


def load_index(uri: str) -> Index:
    """Read an index written by :func:`save_index` (same kind, contents, nprobe / k_factor / efSearch)."""
    data = np.frombuffer(storage.read_bytes(uri), dtype=np.uint8)
    return _wrap(faiss.deserialize_index(data))
