"""Refresh a gallery's features from a changed catalogue without retraining: featurize only what changed.

The recorded feature artifact (its ``digest`` column: each image's content hash at featurization) is
compared with the catalogue's digests (:mod:`amnet.data.catalogue`):

* **unchanged** (same id, same digest): the row is copied, its ``feature`` bytes untouched (byte-identical
  to the recorded vector; a changed label is updated in the ``labels`` column, the vector stays);
* **changed** (same id, other digest) and **added** (new id): featurized with the model's own
  featurization (:func:`amnet.retrieval.featurize.featurize_frame`) into new shards after the kept ones;
* **removed** (id no longer in the catalogue): dropped.

A recorded row without a digest (features written before digests were recorded) counts as changed.
The output is a feature artifact like featurization's (``features.json`` + ``part-*.parquet``) plus its
search index (:mod:`amnet.retrieval.feature_index` layout). The index is updated, not rebuilt, where its
kind allows: an exact index drops the removed rows and appends the new ones (row order stays the
artifact's); an approximate one (pq, ivf) keeps its trained quantizer and re-encodes the vectors; past
``rebuild_fraction`` of the gallery changed, the quantizer is trained again (a full rebuild).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from amnet import storage
from amnet.config import FeaturizeConfig
from amnet.data import shards
from amnet.data.catalogue import CatalogueScan, scan_catalogue
from amnet.errors import AmnetError
from amnet.names import FEATURES_JSON
from amnet.retrieval.feature_index import INDEX_FILE, INDEX_IDS, INDEX_JSON, build_feature_index
from amnet.retrieval.featurize import featurize_frame, fp16_matrix
from amnet.retrieval.index import Index, build_index, load_index, recall_at_k, save_index

log = logging.getLogger(__name__)

REFRESH_JSON = "refresh.json"
SHARD_ROWS = 1024  # rows per new feature shard when the recorded shards do not say
RECALL_QUERIES = 256  # gallery vectors used as queries to measure an approximate index against exact search


@dataclass(frozen=True)
class Diff:
    """Gallery ids by what happened to them between the recorded features and the catalogue."""

    added: list[str]
    removed: list[str]
    changed: list[str]
    unchanged: list[str]

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed),
                "unchanged": len(self.unchanged)}


def diff_digests(recorded: Mapping[str, str | None], current: Mapping[str, str]) -> Diff:
    """Compare recorded digests (id -> digest, None = not recorded) with the catalogue's (id -> digest).

    Pure: ids keep the order of their mapping (``current`` for added / changed / unchanged)."""
    added = [i for i in current if i not in recorded]
    removed = [i for i in recorded if i not in current]
    changed = [i for i, d in current.items() if i in recorded and (recorded[i] is None or recorded[i] != d)]
    unchanged = [i for i, d in current.items() if i in recorded and recorded[i] is not None and recorded[i] == d]
    return Diff(added, removed, changed, unchanged)


def recorded_digests(features: str) -> dict[str, str | None]:
    """id -> recorded content digest of a feature artifact (None for rows written without one)."""
    out: dict[str, str | None] = {}
    for uri in shards.list_shards(features):
        schema = pq.read_schema(io.BytesIO(storage.read_bytes(uri)))
        columns = ["image_id", "digest"] if "digest" in schema.names else ["image_id"]
        table = shards.read_table(uri, columns)
        digests = table["digest"].tolist() if "digest" in table.columns else [None] * len(table)
        out.update(zip(table["image_id"].astype(str), digests, strict=True))
    return out


def _write(uri: str, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue())


def _kept_shards(features: str, out: str, keep: set[str], labels: Mapping[str, list[int]],
                 digests: Mapping[str, str]) -> tuple[list[int], int, int]:
    """Copy the rows of ``keep`` shard by shard into ``out`` (feature bytes untouched; labels and digests
    from the catalogue). Returns (recorded row positions removed, shards written, largest shard)."""
    removed: list[int] = []
    written = largest = position = 0
    for uri in shards.list_shards(features):
        table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
        ids = [str(i) for i in table.column("image_id").to_pylist()]
        largest = max(largest, len(ids))
        mask = np.array([i in keep for i in ids], dtype=bool)
        removed.extend(int(p) for p in np.flatnonzero(~mask) + position)
        position += len(ids)
        kept = table.filter(pa.array(mask))
        if kept.num_rows == 0:
            continue
        kept_ids = [str(i) for i in kept.column("image_id").to_pylist()]
        kept = kept.set_column(kept.schema.get_field_index("labels"), "labels",
                               pa.array([labels[i] for i in kept_ids], type=table.schema.field("labels").type))
        digest = pa.array([digests[i] for i in kept_ids], pa.string())
        if "digest" in kept.schema.names:
            kept = kept.set_column(kept.schema.get_field_index("digest"), "digest", digest)
        else:
            kept = kept.append_column("digest", digest)
        _write(storage.join(out, shards.shard_name(written)), kept)
        written += 1
    return removed, written, largest


def refresh_features(features: str, catalogue: str, loaded, device, out: str,
                     cfg: FeaturizeConfig | None = None, rebuild_fraction: float = 0.5,
                     scan: CatalogueScan | None = None) -> dict:
    """Refresh the feature artifact ``features`` (computed by ``loaded``) to the catalogue ``catalogue``
    into ``out`` (features + index); returns the summary also written to ``out/refresh.json``."""
    cfg = cfg or FeaturizeConfig()
    start = time.perf_counter()
    meta = json.loads(storage.read_text(storage.join(features, FEATURES_JSON)))
    recorded = recorded_digests(features)
    scan = scan or scan_catalogue(catalogue, recorded)
    if scan.vocab.to_json() != loaded.vocab.to_json():
        raise AmnetError(f"{catalogue}: its attribute vocabulary is not the model's; a catalogue with other "
                         "attributes or values needs a retrained model")
    current = dict(zip(scan.rows["image_id"], scan.rows["digest"], strict=True))
    diff = diff_digests(recorded, current)
    labels = dict(zip(scan.rows["image_id"], scan.rows["labels"], strict=True))
    scanned = time.perf_counter() - start
    removed_positions, written, largest = _kept_shards(features, out, set(diff.unchanged), labels, current)

    featurize_start = time.perf_counter()
    fresh = scan.fresh[scan.fresh["image_id"].isin(set(diff.added) | set(diff.changed))].reset_index(drop=True)
    size = largest or SHARD_ROWS
    first = shards.list_shards(features)[0]
    labels_type = pq.read_schema(io.BytesIO(storage.read_bytes(first))).field("labels").type
    fresh_vectors = []
    for begin in range(0, len(fresh), size):
        frame = featurize_frame(loaded, fresh.iloc[begin : begin + size], cfg.batch_size, device, cfg)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.set_column(table.schema.get_field_index("labels"), "labels",
                                 table.column("labels").cast(labels_type))
        fresh_vectors.append(fp16_matrix(table.column("feature"), int(meta["dim"])))
        _write(storage.join(out, shards.shard_name(written)), table)
        written += 1
    featurize_seconds = time.perf_counter() - featurize_start
    counts = diff.counts()
    total = counts["added"] + counts["changed"] + counts["unchanged"]
    if total == 0:
        raise AmnetError(f"{catalogue}: no usable catalogue rows; nothing to search")
    new_meta = {**meta, "count": total, "shards": written, "digest": "sha256",
                "refresh": {**counts, "catalogue": catalogue, "from": features}}
    storage.write_text(storage.join(out, FEATURES_JSON), json.dumps(new_meta, indent=2) + "\n")
    vectors = np.concatenate(fresh_vectors) if fresh_vectors else np.zeros((0, int(meta["dim"])), np.float16)
    index = update_index(features, out, removed_positions, vectors, rebuild_fraction)
    summary = {**counts, "quarantined": len(scan.quarantined), "count": total,
               "featurized": len(fresh), "scan_seconds": round(scanned, 3),
               "featurize_seconds": round(featurize_seconds, 3),
               "seconds": round(time.perf_counter() - start, 3), "index": index,
               "catalogue": catalogue, "catalogue_kind": scan.kind}
    storage.write_text(storage.join(out, REFRESH_JSON), json.dumps(summary, indent=2) + "\n")
    log.info("refreshed %d gallery images: %d added, %d changed, %d removed, %d unchanged (index %s, %s)",
             total, counts["added"], counts["changed"], counts["removed"], counts["unchanged"], index["kind"],
             index["update"])
    return summary


def _vectors(features: str) -> np.ndarray:
    dim = int(json.loads(storage.read_text(storage.join(features, FEATURES_JSON)))["dim"])
    mats = [fp16_matrix(pq.read_table(io.BytesIO(storage.read_bytes(u)), columns=["feature"]).column("feature"), dim)
            for u in shards.list_shards(features)]
    return np.concatenate(mats).astype(np.float32) if mats else np.zeros((0, dim), np.float32)


def update_index(recorded: str, out: str, removed: list[int], fresh: np.ndarray, rebuild_fraction: float = 0.5,
                 kind: str = "auto") -> dict:
    """The search index of the refreshed artifact ``out``, from the recorded artifact's stored index when
    it has one (see the module docstring); returns ``out/index.json``'s content plus ``update``."""
    start = time.perf_counter()
    stored = storage.join(recorded, INDEX_FILE)
    if not storage.exists(stored):
        summary = build_feature_index(out, out, kind=kind)
        return {**summary, "update": "built"}
    old_meta = json.loads(storage.read_text(storage.join(recorded, INDEX_JSON)))
    index = load_index(stored)
    n_old = index.ntotal
    changed_fraction = (len(removed) + len(fresh)) / max(n_old, 1)
    if index.kind != "exact" and changed_fraction > rebuild_fraction:
        summary = build_feature_index(out, out, kind=old_meta.get("requested", "auto"))
        return {**summary, "update": "rebuilt"}
    vectors = _vectors(out)
    if index.kind == "exact":
        if removed:
            index.faiss_index.remove_ids(faiss.IDSelectorBatch(np.asarray(removed, dtype=np.int64)))
        if len(fresh):
            index.add(np.asarray(fresh, dtype=np.float32))
        update = "incremental"
    else:
        index.faiss_index.reset()  # keeps the trained quantizer: no k-means / codebook training again
        index.add(vectors)
        update = "re-encoded"
    if index.ntotal != len(vectors):
        raise AmnetError(f"refreshed index holds {index.ntotal} vectors, the features {len(vectors)}")
    recall = index_recall(index, vectors)
    save_index(index, storage.join(out, INDEX_FILE))
    ids = pa.concat_arrays([pq.read_table(io.BytesIO(storage.read_bytes(u)), columns=["image_id"])
                            .column("image_id").combine_chunks().cast(pa.string())
                            for u in shards.list_shards(out)])
    _write(storage.join(out, INDEX_IDS), pa.table({"image_id": ids}))
    summary = {**old_meta, "count": int(index.ntotal), "shards": len(shards.list_shards(out)), "features": out,
               "recall_at_20": recall if index.kind != "exact" else old_meta.get("recall_at_20"),
               "refresh_recall_at_20": recall, "seconds": round(time.perf_counter() - start, 3)}
    storage.write_text(storage.join(out, INDEX_JSON), json.dumps(summary, indent=2) + "\n")
    return {**summary, "update": update}


def index_recall(index: Index, vectors: np.ndarray, queries: int = RECALL_QUERIES, seed: int = 0) -> float:
    """Recall@20 of ``index`` against exact search, on a seeded sample of the gallery's own vectors as
    queries (1.0 for an exact index)."""
    if index.kind == "exact" or len(vectors) == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    q = vectors[rng.choice(len(vectors), size=min(queries, len(vectors)), replace=False)]
    return round(recall_at_k(index, build_index(vectors, "exact"), q, 20), 4)
