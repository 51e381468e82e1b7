"""Paper-protocol splits (§5.1): attribute-CNN set, gallery, manipulated queries, triplet pool.

From one validated dataset, disjoint sets are drawn with one seeded generator:

1. ``attr_train``: up to P images per attribute value (paper: 200). Rows are visited in a seeded
   order and taken while any of their values is still under its quota, so every value gets P
   images when the data has them (common values may get more: a row counts for all its values).
2. ``gallery``: G images drawn at random from the rest (paper: 200,000).
3. ``queries``: for each requested number of changes n (1 and 2, §5.5), N images from the rest,
   each with a manipulation that changes exactly n attributes to a target vector that at least one
   gallery image has exactly. Only rows with every label known are used as queries.
4. ``triplet_pool``: everything else; AMNet's training triplets are sampled from it.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from amnet import config as cfgmod
from amnet import storage
from amnet.config import SplitConfig
from amnet.data import shards
from amnet.data.schema import ATTRIBUTES, Vocabulary
from amnet.errors import DatasetError
from amnet.names import MISSING, SPLIT_JSON

SETS = ("attr_train", "gallery", "queries", "triplet_pool")


def label_matrix(labels: pd.Series | list, num_attributes: int) -> np.ndarray:
    """A (N, M) int16 matrix from a column of label lists."""
    if len(labels) == 0:
        return np.zeros((0, num_attributes), dtype=np.int16)
    return np.asarray([np.asarray(v, dtype=np.int16) for v in labels], dtype=np.int16).reshape(-1, num_attributes)


def pick_attr_train(labels: np.ndarray, order: np.ndarray, vocab: Vocabulary, per_value: int) -> np.ndarray:
    """Rows (in ``order``) taken while any of their values is below its quota of ``per_value``."""
    counts = [np.zeros(s, dtype=np.int64) for s in vocab.sizes]
    taken = []
    for row in order:
        vals = labels[row]
        if any(v != MISSING and counts[m][v] < per_value for m, v in enumerate(vals)):
            taken.append(row)
            for m, v in enumerate(vals):
                if v != MISSING:
                    counts[m][v] += 1
    return np.asarray(taken, dtype=np.int64)


def targets_at_distance(ref: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``candidates`` (U, M) that differ from ``ref`` (M,) in exactly n attributes,
    all labels known."""
    known = (candidates != MISSING).all(axis=1)
    diff = (candidates != ref[None, :]).sum(axis=1)
    return np.flatnonzero(known & (diff == n))


def make_queries(
    labels: np.ndarray, rows: np.ndarray, gallery_vectors: np.ndarray, n: int, count: int,
    rng: np.random.Generator,
) -> tuple[list[int], list[np.ndarray], list[list[int]]]:
    """Up to ``count`` queries from ``rows`` whose n-attribute manipulation has a gallery target."""
    chosen, targets, changed = [], [], []
    for row in rows:
        if len(chosen) == count:
            break
        ref = labels[row]
        if (ref == MISSING).any():
            continue
        hits = targets_at_distance(ref, gallery_vectors, n)
        if len(hits) == 0:
            continue
        target = gallery_vectors[hits[rng.integers(len(hits))]]
        chosen.append(int(row))
        targets.append(target.astype(np.int16))
        changed.append([int(m) for m in np.flatnonzero(target != ref)])
    return chosen, targets, changed


def split_frames(kept: pd.DataFrame, vocab: Vocabulary, cfg: SplitConfig) -> dict[str, pd.DataFrame]:
    """Disjoint frames for the four sets (pure function of ``kept`` and ``cfg``)."""
    rng = np.random.default_rng(cfg.seed)
    labels = label_matrix(kept["labels"], vocab.num_attributes)
    n = len(kept)
    order = rng.permutation(n)
    attr_rows = pick_attr_train(labels, order, vocab, cfg.per_value)
    taken = np.zeros(n, dtype=bool)
    taken[attr_rows] = True
    rest = order[~taken[order]]
    wanted_queries = cfg.num_queries * len(cfg.num_changes)
    if len(rest) < cfg.gallery_size + wanted_queries + 1:
        raise DatasetError(
            f"too few images for the requested split: {n} usable, {len(attr_rows)} went to the "
            f"attribute-CNN set (--per-value {cfg.per_value}), {len(rest)} remain but the gallery needs "
            f"{cfg.gallery_size} and the queries {wanted_queries} plus a triplet pool; lower "
            "--per-value, --gallery-size or --num-queries, or use a larger dataset"
        )
    gallery_rows = rest[: cfg.gallery_size]
    taken[gallery_rows] = True
    gallery_vectors = np.unique(labels[gallery_rows], axis=0)
    query_parts = []
    for n_changes in cfg.num_changes:
        candidates = order[~taken[order]]
        rows, targets, changed = make_queries(labels, candidates, gallery_vectors, n_changes, cfg.num_queries, rng)
        if not rows:
            raise DatasetError(
                f"no query with a {n_changes}-attribute manipulation has an exact target in the gallery; "
                "use a larger --gallery-size or a dataset with more attribute combinations"
            )
        taken[rows] = True
        part = kept.iloc[rows].copy()
        part["target"] = [t.tolist() for t in targets]
        part["changed"] = changed
        part["num_changes"] = n_changes
        query_parts.append(part)
    pool_rows = order[~taken[order]]
    return {
        "attr_train": kept.iloc[np.sort(attr_rows)],
        "gallery": kept.iloc[np.sort(gallery_rows)],
        "queries": pd.concat(query_parts, ignore_index=True),
        "triplet_pool": kept.iloc[np.sort(pool_rows)],
    }


def write_split(out: str, frames: dict[str, pd.DataFrame], vocab: Vocabulary, quarantine: pd.DataFrame,
                summary: dict, shard_size: int) -> None:
    """Write shards, the vocabulary, the quarantine table and ``split.json`` (written last)."""
    for name in SETS:
        shards.write_shards(frames[name].reset_index(drop=True), storage.join(out, name), shard_size)
    storage.write_text(storage.join(out, ATTRIBUTES), vocab.to_json())
    shards.write_table(storage.join(out, "quarantine.parquet"), quarantine.reset_index(drop=True))
    storage.write_text(storage.join(out, SPLIT_JSON), json.dumps(summary, indent=2) + "\n")


def run_split(dataset: str, out: str, cfg: SplitConfig, progress: bool = True, dataset_digest: str = "",
              dataset_rows: int = -1) -> dict:
    """Validate ``dataset``, split it as in §5.1 and write the shards to ``out``.

    ``split.json`` records the dataset's fingerprint (:mod:`amnet.data.fingerprint`): the one the
    pipeline's first stage computed (``dataset_digest``, ``dataset_rows``), or, when none is given,
    one computed here. A manifest whose row count differs from the fingerprint's changed in between.
    """
    from amnet.data.fingerprint import fingerprint_dataset
    from amnet.data.validate import check_fraction, validate_dataset

    start = time.perf_counter()
    result = validate_dataset(dataset, progress=progress)  # first: its errors name what is wrong with the data
    if not dataset_digest:
        fp = fingerprint_dataset(dataset)
        dataset_digest, dataset_rows = fp.digest, fp.rows
    if dataset_rows >= 0 and dataset_rows != result.rows_in:
        raise DatasetError(f"{dataset}: the manifest has {result.rows_in} rows but its fingerprint "
                           f"{dataset_digest[:12]} counted {dataset_rows}; the dataset changed while the pipeline "
                           "ran: rerun it once the update is complete")
    check_fraction(result, cfg.max_quarantine_fraction)
    vocab = result.vocab
    kept = result.kept[["image_id", "image_bytes", "labels"]].reset_index(drop=True)
    kept["labels"] = [list(map(int, v)) for v in kept["labels"]]
    try:
        frames = split_frames(kept, vocab, cfg)
    except DatasetError as exc:  # name the dataset: the user may split several
        raise DatasetError(f"{dataset}: {exc}") from None
    counts = {name: int(len(df)) for name, df in frames.items()}
    counts["queries_by_changes"] = {
        str(k): int(v) for k, v in frames["queries"]["num_changes"].value_counts().sort_index().items()
    }
    summary = {
        "dataset": dataset,
        "dataset_digest": dataset_digest,
        "rows_in": int(result.rows_in),
        "quarantined": int(len(result.quarantine)),
        "kept": int(len(kept)),
        **counts,
        "config": cfgmod.to_dict(cfg),
        "seconds": round(time.perf_counter() - start, 2),
    }
    used = sum(counts[name] for name in SETS)
    assert used == len(kept) and summary["kept"] + summary["quarantined"] == summary["rows_in"], summary
    write_split(out, frames, vocab, result.quarantine, summary, cfg.shard_size)
    return summary


def split_summary(split: str) -> dict:
    """The split's ``split.json`` (counts, config, ``dataset_digest``); {} for a folder without one."""
    uri = storage.join(split, SPLIT_JSON)
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else {}


def dataset_digest(split: str) -> str:
    """The fingerprint of the dataset ``split`` was made from ("" for splits made before fingerprints)."""
    return str(split_summary(split).get("dataset_digest", ""))


def load_split_vocab(split: str) -> Vocabulary:
    uri = storage.join(split, ATTRIBUTES)
    if not storage.exists(uri):
        raise DatasetError(f"{uri}: no such file; {split} is not a split, run `amnet data split` first")
    return Vocabulary.from_json(storage.read_text(uri), source=split)
