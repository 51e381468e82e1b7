"""One search index built from a feature artifact's shards and stored as an artifact: the pipeline's
build-index stage (after the featurization fan-out); evaluation, the registry gate's servable model
and the searcher load it instead of building their own.

:func:`merge_parts` first gathers the feature shards of the fan-out's tasks into one feature artifact
(streaming, one shard at a time), so the artifact that carries the index is also a complete feature
artifact: every consumer of features keeps working on it, and it is self-contained (the servable
model and the searcher take one folder).

:func:`build_feature_index` reads the fp16 ``feature`` column shard by shard: the exact index below
:data:`~amnet.retrieval.index.AUTO_THRESHOLD` vectors, the compressed one (PQ fast-scan + exact
re-ranking) above, its quantizer trained on a seeded sample drawn across all shards, then the vectors
added shard by shard, so memory holds the index plus one shard (never the feature table as a frame).
With ``queries`` (an (B, D) matrix, e.g. the evaluation's manipulated queries) the index's recall@20
against exact search is measured and recorded.

Artifact layout (a folder or ``s3://`` prefix)::

    index.faiss       faiss.serialize_index of the index (amnet.retrieval.index.load_index reads it)
    index.json        kind, requested kind, count, dim, shards, train_sample, recall_at_20, seconds
    image_ids.parquet the gallery image_id of each index row, in index order
"""

from __future__ import annotations

import io
import json
import logging
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from amnet import storage
from amnet.data import shards
from amnet.errors import AmnetError
from amnet.names import FEATURES_JSON
from amnet.retrieval.featurize import decode_features
from amnet.retrieval.index import (
    ExactIndex,
    HNSWIndex,
    Index,
    IVFIndex,
    PQRefineIndex,
    default_nlist,
    index_params,
    load_index,
    recall_at_k,
    resolve_kind,
    save_index,
)

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
INDEX_JSON = "index.json"
INDEX_IDS = "image_ids.parquet"
TRAIN_SAMPLE = 65_536  # vectors the PQ quantizer is trained on (faiss samples 4,096 of them per sub-quantizer)


def _shard_vectors(uri: str, dim: int, columns: list[str] | None = None) -> tuple[pa.Table, np.ndarray]:
    table = pq.read_table(io.BytesIO(storage.read_bytes(uri)), columns=columns or ["image_id", "feature"])
    return table, decode_features(table.column("feature").to_pylist(), dim)


def _train_sample(uris: list[str], counts: list[int], dim: int, size: int, seed: int) -> np.ndarray:
    """A seeded uniform sample of ``size`` vectors across all shards (one shard in memory at a time)."""
    total = sum(counts)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(total, size=min(size, total), replace=False))
    out, start = [], 0
    for uri, count in zip(uris, counts, strict=True):
        lo, hi = np.searchsorted(chosen, [start, start + count])
        if hi > lo:
            out.append(_shard_vectors(uri, dim, ["feature"])[1][chosen[lo:hi] - start])
        start += count
    return np.concatenate(out)


def build_feature_index(features: str, out: str, kind: str = "auto", queries: np.ndarray | None = None,
                        train_sample: int = TRAIN_SAMPLE, seed: int = 0) -> dict:
    """Build the search index of the feature artifact ``features`` into ``out``; returns ``index.json``.

    ``kind``: "exact", "pq", "ivf", "hnsw" (efSearch tuned on ``queries``) or "auto"
    (:func:`~amnet.retrieval.index.resolve_kind`). Row i of the index is row i
    of the shards in shard order (``image_ids.parquet`` names it).
    """
    start = time.perf_counter()
    meta = json.loads(storage.read_text(storage.join(features, FEATURES_JSON)))
    dim = int(meta["dim"])
    uris = shards.list_shards(features)
    counts = [pq.ParquetFile(io.BytesIO(storage.read_bytes(u))).metadata.num_rows for u in uris]
    total = sum(counts)
    if total == 0:
        raise AmnetError(f"{features}: no feature vectors to index; featurize a non-empty gallery first")
    try:
        chosen = resolve_kind(kind, total, dim)
    except ValueError as exc:
        raise AmnetError(f"build_feature_index: {exc}") from None
    index: Index = ExactIndex(dim)
    sample = 0
    if (chosen == "pq" and total >= 16) or chosen == "ivf":
        train = _train_sample(uris, counts, dim, train_sample, seed)
        sample = len(train)
        index = PQRefineIndex(dim) if chosen == "pq" else IVFIndex(dim, nlist=min(default_nlist(total), sample))
        index.faiss_index.train(np.ascontiguousarray(train, dtype=np.float32))
        del train
    elif chosen == "hnsw":
        index = HNSWIndex(dim)
    ids: list[pa.Array] = []
    for uri in uris:
        table, vectors = _shard_vectors(uri, dim)
        index.add(vectors)
        ids.append(table.column("image_id").combine_chunks())
    if isinstance(index, HNSWIndex):
        if queries is not None and len(queries):  # the evaluation's queries: not in the graph, held out
            index.tune(np.asarray(queries, dtype=np.float32))
        else:
            log.warning("hnsw: no queries to tune efSearch on; it stays %d (recall not checked)", index.ef_search)
    recall = None
    if queries is not None and len(queries) and index.kind != "exact":
        exact = build_exact(uris, dim)
        recall = round(recall_at_k(index, exact, np.asarray(queries, dtype=np.float32), 20), 4)
        del exact
    save_index(index, storage.join(out, INDEX_FILE))
    buf = io.BytesIO()
    pq.write_table(pa.table({"image_id": pa.concat_arrays(ids)}), buf, compression="zstd")
    storage.write_bytes(storage.join(out, INDEX_IDS), buf.getvalue())
    summary = {
        "kind": index.kind, "requested": kind, "count": int(index.ntotal), "dim": dim, "shards": len(uris),
        "train_sample": sample, "recall_at_20": recall, "params": index_params(index), "features": features,
        "seconds": round(time.perf_counter() - start, 3),
    }
    storage.write_text(storage.join(out, INDEX_JSON), json.dumps(summary, indent=2) + "\n")
    return summary


def merge_parts(parts: list[str], out: str) -> dict:
    """Copy the feature shards of ``parts`` (feature artifacts of one model, e.g. the fan-out's groups)
    into ``out`` and write one ``features.json`` for all of them; returns it.

    ``seconds`` is the parts' summed task time, ``wall_seconds`` the longest part (they ran in parallel).
    """
    if not parts:
        raise AmnetError("no feature artifacts to merge; featurize the gallery first")
    metas = [json.loads(storage.read_text(storage.join(p, FEATURES_JSON))) for p in parts]
    for key in ("dim", "kind", "variant", "precision", "dtype"):
        values = {str(m.get(key)) for m in metas}
        if len(values) > 1:
            raise AmnetError(f"feature artifacts disagree on {key} ({sorted(values)}): {parts}; merge only the "
                             "groups of one featurization")
    names: dict[str, str] = {}
    for part in parts:
        for uri in shards.list_shards(part) if storage.list_files(part, ".parquet") else []:
            name = uri.replace("\\", "/").rsplit("/", 1)[-1]
            if name in names:
                raise AmnetError(f"shard {name} is in both {names[name]} and {part}; the groups overlap")
            names[name] = part
            storage.write_bytes(storage.join(out, name), storage.read_bytes(uri))
    count = sum(int(m.get("count", 0)) for m in metas)
    seconds = sum(float(m.get("seconds", 0.0)) for m in metas)
    merged = {**{k: v for k, v in metas[0].items() if k not in ("group", "groups", "skipped_shards")},
              "count": count, "shards": len(names), "seconds": round(seconds, 2),
              "wall_seconds": max(float(m.get("seconds", 0.0)) for m in metas),
              "images_per_s": round(count / max(seconds, 1e-9), 1),
              "parts": [{k: m.get(k) for k in ("group", "count", "seconds", "images_per_s", "device")}
                        for m in metas]}
    storage.write_text(storage.join(out, FEATURES_JSON), json.dumps(merged, indent=2) + "\n")
    return merged


def has_index(features: str) -> bool:
    """Whether the feature artifact ``features`` carries a stored index (the build-index stage's output)."""
    return storage.exists(storage.join(features, INDEX_JSON)) and storage.exists(storage.join(features, INDEX_FILE))


def build_exact(uris: list[str], dim: int) -> Index:
    """The exact index over the shards' vectors (the truth recall is measured against)."""
    index = ExactIndex(dim)
    for uri in uris:
        index.add(_shard_vectors(uri, dim, ["feature"])[1])
    return index


def load_feature_index(artifact: str) -> tuple[Index, list[str], dict]:
    """(index, image_id per index row, ``index.json``) of an artifact written by :func:`build_feature_index`."""
    index = load_index(storage.join(artifact, INDEX_FILE))
    table = pq.read_table(io.BytesIO(storage.read_bytes(storage.join(artifact, INDEX_IDS))))
    meta = json.loads(storage.read_text(storage.join(artifact, INDEX_JSON)))
    return index, table.column("image_id").to_pylist(), meta

