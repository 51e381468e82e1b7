"""Paper-protocol splits (§5.1): attribute-CNN set, gallery, manipulated queries, triplet pool.

From one validated dataset, disjoint sets are drawn with one seeded generator:

1. ``attr_train``: up to P images per attribute value (paper: 200). Rows are visited in a seeded
   order and taken while any of their values is still under its quota, so every value gets P
   images when the data has them (common values may get more: a row counts for all its values).
2. ``gallery``: G images drawn at random from the rest (paper: 200,000).
3. ``queries``: for each requested number of changes n (1 and 2, §5.5), N images from the rest,
   each with a manipulation that changes exactly n attributes to a target vector that at least one
   gallery image has exactly. Only rows with every label known are used as queries, and only fully
   labelled vectors as targets, so no query changes or asks for an unknown attribute.
4. ``val_queries``: validation queries built exactly like ``queries`` (one- and two-attribute,
   targets present in the gallery), drawn from what is left *after* the test queries with the same
   generator, so for a given seed ``attr_train``, ``gallery`` and ``queries`` are the sets the split
   gave before validation queries existed. Defaults are chosen on them (``evaluate.queries: val``);
   the test queries are scored once per run and reported.
5. ``triplet_pool``: everything else; AMNet's training triplets are sampled from it.

Variant groups (a manifest ``item_id`` shared by rows that are the same item with other attribute
values): when the kept rows hold groups with two or more fully labelled members, queries come from
them first, with an *exact* target. For each query set (test, then validation) and number of changes
n, groups are visited in the seeded order; a group serves one query when two of its fully labelled
members differ in exactly n attributes: a pair drawn at random gives the query image (in no set but
the query set) and its target (in the gallery; the manipulation is exactly their label difference,
``target_id`` names it). Such groups are reserved whole before anything else is drawn: their other
members go to the gallery too, so no image of a query group reaches ``attr_train`` or
``triplet_pool``. A group is only taken while the gallery has room for its members and its decoys
(each query set and number of changes gets its share of the gallery, by its number of queries):
after the attribute-CNN set, up to ``decoys_per_query`` unrelated images carrying exactly the
target's labels join the gallery (when the rest has them), then random images fill it to G. Query
slots the groups cannot fill get label-vector queries as above (``target_id`` null; a warning gives
the counts). Without ``item_id``, or without a usable group, the split is exactly the one above.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from amnet import config as cfgmod
from amnet import storage
from amnet.config import SplitConfig
from amnet.data import shards, validate
from amnet.data.schema import ATTRIBUTES, Vocabulary
from amnet.data.validate import StagedValidation
from amnet.errors import DatasetError
from amnet.names import MISSING, QUERY_SETS, QUERY_SHARDS, SPLIT_JSON

log = logging.getLogger(__name__)

SETS = ("attr_train", "gallery", *QUERY_SHARDS.values(), "triplet_pool")  # queries, val_queries: the query shards


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


@dataclass
class QueryPlan:
    """Manipulated queries (indices into the label matrix) in query order: by number of changes, then as drawn."""

    rows: np.ndarray  # (Q,)
    targets: np.ndarray  # (Q, M) int16 desired attribute vectors
    changed: list[list[int]]  # per query: the manipulated attributes
    num_changes: np.ndarray  # (Q,) int64
    # (Q,) int64: the exact target's index (a gallery row of the query's variant group), -1 = none
    target_rows: np.ndarray | None = None

    def exact_targets(self) -> np.ndarray:
        """``target_rows``, all -1 when the queries were not drawn from variant groups."""
        return self.target_rows if self.target_rows is not None else np.full(len(self.rows), -1, dtype=np.int64)


@dataclass
class SplitPlan:
    """Which kept rows (indices into the label matrix) go where; decided on the labels alone."""

    attr_train: np.ndarray  # (A,) ascending
    gallery: np.ndarray  # (G,) ascending
    test: QueryPlan  # the ``queries`` set
    val: QueryPlan  # the ``val_queries`` set (empty with num_val_queries 0)
    triplet_pool: np.ndarray  # (T,) ascending
    # variant groups: how many are usable (2+ fully labelled members), used by queries, and decoys drawn
    groups: dict[str, int] = field(default_factory=lambda: {"variant_groups": 0, "query_groups": 0, "decoys": 0})

    @property
    def queries(self) -> np.ndarray:
        return self.test.rows

    def query_plans(self) -> dict[str, QueryPlan]:
        return {"queries": self.test, "val_queries": self.val}

    def sets(self) -> dict[str, np.ndarray]:
        return {"attr_train": self.attr_train, "gallery": self.gallery, "queries": self.test.rows,
                "val_queries": self.val.rows, "triplet_pool": self.triplet_pool}


def _take_queries(labels: np.ndarray, order: np.ndarray, taken: np.ndarray, gallery_vectors: np.ndarray,
                  n_changes: int, count: int, rng: np.random.Generator, required: bool, have: int = 0,
                  ) -> tuple[list[int], list[np.ndarray], list[list[int]]]:
    """Up to ``count`` queries with ``n_changes`` changes from the rows not yet ``taken`` (visited in
    ``order``), marked taken: (rows, targets, changed) of :func:`make_queries`. ``required``: ``have`` (queries
    already drawn elsewhere) plus none here is an error."""
    candidates = order[~taken[order]]
    rows, targets, changed = make_queries(labels, candidates, gallery_vectors, n_changes, count, rng)
    if have + len(rows) == 0 and required:
        raise DatasetError(
            f"no query with a {n_changes}-attribute manipulation has an exact target in the gallery; "
            "use a larger --gallery-size or a dataset with more attribute combinations")
    taken[rows] = True
    return rows, targets, changed


def draw_queries(labels: np.ndarray, order: np.ndarray, taken: np.ndarray, gallery_vectors: np.ndarray,
                 num_changes: tuple[int, ...], count: int, rng: np.random.Generator, required: bool = True,
                 ) -> QueryPlan:
    """Up to ``count`` queries per number of changes from the rows not yet ``taken`` (visited in
    ``order``); marks them taken. ``required``: none at all for some number of changes is an error
    (test queries); otherwise that group is just smaller (validation queries: ``split.json`` counts them)."""
    query_rows, targets, changed, counts = [], [], [], []
    for n_changes in num_changes if count else ():
        rows, tgt, chg = _take_queries(labels, order, taken, gallery_vectors, n_changes, count, rng, required)
        query_rows += rows
        targets += tgt
        changed += chg
        counts += [n_changes] * len(rows)
    return QueryPlan(np.asarray(query_rows, dtype=np.int64),
                     np.asarray(targets, dtype=np.int16).reshape(-1, labels.shape[1]), changed,
                     np.asarray(counts, dtype=np.int64))


def variant_groups(labels: np.ndarray, groups: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """The groups (``groups``: (N,) codes, -1 = none) with 2+ fully labelled members, each as its
    members' indices in ``order``'s order; groups listed by where their first member comes in ``order``."""
    idx = np.flatnonzero(groups >= 0)
    if len(idx) == 0:
        return []
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(order))
    idx = idx[np.lexsort((rank[idx], groups[idx]))]
    starts = np.r_[0, np.flatnonzero(np.diff(groups[idx])) + 1]
    known = (labels[idx] != MISSING).all(axis=1).astype(np.int64)
    keep = np.flatnonzero(np.add.reduceat(known, starts) >= 2)
    members = np.split(idx, starts[1:])
    return [members[k] for k in keep[np.argsort(rank[idx[starts[keep]]], kind="stable")]]


def group_pairs(labels: np.ndarray, members: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(query, target) index pairs of fully labelled ``members`` whose labels differ in exactly n attributes."""
    full = members[(labels[members] != MISSING).all(axis=1)]
    vectors = labels[full]
    diff = (vectors[:, None, :] != vectors[None, :, :]).sum(axis=2)
    q, t = np.nonzero(diff == n)
    return full[q], full[t]


def _row_keys(matrix: np.ndarray) -> np.ndarray:
    """One comparable key per label row (its bytes), for exact-vector look-ups."""
    m = np.ascontiguousarray(matrix, dtype=np.int16)
    return m.view(np.dtype((np.void, m.shape[1] * m.itemsize))).ravel()


def plan_split(labels: np.ndarray, vocab: Vocabulary, cfg: SplitConfig, groups: np.ndarray | None = None,
               ) -> SplitPlan:
    """Disjoint sets for the five outputs: a pure function of the (N, M) label matrix, the variant
    ``groups`` ((N,) item codes, -1 = none; None = no ``item_id`` column) and ``cfg``.

    Draw order (one generator): attribute-CNN set, gallery, test queries, then validation queries;
    the last only take rows that would otherwise be in the triplet pool. With usable variant groups,
    :func:`plan_grouped_split` instead (see the module doc).
    """
    rng = np.random.default_rng(cfg.seed)
    n = len(labels)
    order = rng.permutation(n)
    if groups is not None:
        usable = variant_groups(labels, groups, order)
        if usable:
            return plan_grouped_split(labels, vocab, cfg, rng, order, usable)
        log.warning("the dataset has item_id but no variant group with 2 or more fully labelled members "
                    "(%d rows in a group); every query is a label-vector query (target_id null)",
                    int((groups >= 0).sum()))
    attr_rows = pick_attr_train(labels, order, vocab, cfg.per_value)
    taken = np.zeros(n, dtype=bool)
    taken[attr_rows] = True
    rest = order[~taken[order]]
    wanted_queries = cfg.num_queries * len(cfg.num_changes)
    wanted_val = cfg.val_queries * len(cfg.num_changes)
    if len(rest) < cfg.gallery_size + wanted_queries + wanted_val + 1:
        raise DatasetError(
            f"too few images for the requested split: {n} usable, {len(attr_rows)} went to the "
            f"attribute-CNN set (--per-value {cfg.per_value}), {len(rest)} remain but the gallery needs "
            f"{cfg.gallery_size}, the queries {wanted_queries} and the validation queries {wanted_val} plus a "
            "triplet pool; lower --per-value, --gallery-size, --num-queries or --num-val-queries (0 = none), "
            "or use a larger dataset"
        )
    gallery_rows = rest[: cfg.gallery_size]
    taken[gallery_rows] = True
    gallery_vectors = np.unique(labels[gallery_rows], axis=0)
    test = draw_queries(labels, order, taken, gallery_vectors, cfg.num_changes, cfg.num_queries, rng)
    val = draw_queries(labels, order, taken, gallery_vectors, cfg.num_changes, cfg.val_queries, rng, required=False)
    return SplitPlan(
        attr_train=np.sort(attr_rows),
        gallery=np.sort(gallery_rows),
        test=test,
        val=val,
        triplet_pool=np.sort(order[~taken[order]]),
    )


def _too_few(n: int, attr: int, rest: int, cfg: SplitConfig, gallery: int, queries: int, val: int) -> DatasetError:
    return DatasetError(
        f"too few images for the requested split: {n} usable, {attr} went to the attribute-CNN set "
        f"(--per-value {cfg.per_value}), {rest} remain but the gallery needs {gallery}, the queries {queries} "
        f"and the validation queries {val} plus a triplet pool; lower --per-value, --gallery-size, --num-queries "
        "or --num-val-queries (0 = none), or use a larger dataset")


def plan_grouped_split(labels: np.ndarray, vocab: Vocabulary, cfg: SplitConfig, rng: np.random.Generator,
                       order: np.ndarray, usable: list[np.ndarray]) -> SplitPlan:
    """:func:`plan_split` with variant groups (``usable``, from :func:`variant_groups`): exact-target
    queries from whole reserved groups, decoys, then label-vector queries for the slots left."""
    n = len(labels)
    slots = [(name, n_changes, count) for name, count in (("test", cfg.num_queries), ("val", cfg.val_queries))
             if count for n_changes in cfg.num_changes]
    used = np.zeros(len(usable), dtype=bool)
    exact: dict[tuple[str, int], list[tuple[int, int]]] = {}  # slot -> [(query row, target row)]
    reserved: list[np.ndarray] = []
    total = sum(count for _, _, count in slots)
    for name, n_changes, count in slots:
        # each query set gets its share of the gallery: test groups must not use up the validation's room
        room = cfg.gallery_size * count // max(total, 1)
        got = exact.setdefault((name, n_changes), [])
        for g, members in enumerate(usable):
            if len(got) == count:
                break
            need = len(members) - 1 + cfg.decoys_per_query
            if used[g] or need > room:
                continue
            queries, targets = group_pairs(labels, members, n_changes)
            if len(queries) == 0:
                continue
            pick = int(rng.integers(len(queries)))
            got.append((int(queries[pick]), int(targets[pick])))
            used[g] = True
            room -= need  # its other variants and room for its decoys
            reserved.append(members)
    taken = np.zeros(n, dtype=bool)
    query_rows = np.asarray([q for pairs in exact.values() for q, _ in pairs], dtype=np.int64)
    group_rows = np.concatenate(reserved) if reserved else np.zeros(0, dtype=np.int64)
    taken[group_rows] = True
    group_gallery = group_rows[~np.isin(group_rows, query_rows)]
    attr_rows = pick_attr_train(labels, order[~taken[order]], vocab, cfg.per_value)
    taken[attr_rows] = True
    # decoys: unrelated rows from the rest with exactly an exact target's labels, first in seeded order
    decoys: list[int] = []
    rest = order[~taken[order]]
    if cfg.decoys_per_query and len(rest):
        keys = _row_keys(labels[rest])
        sorter = np.argsort(keys, kind="stable")
        sorted_keys = keys[sorter]
        for pairs in exact.values():
            for _, target in pairs:
                key = _row_keys(labels[target][None, :])[0]
                lo, hi = np.searchsorted(sorted_keys, key, "left"), np.searchsorted(sorted_keys, key, "right")
                hits = [int(r) for r in rest[sorter[lo:hi]] if not taken[r]][: cfg.decoys_per_query]
                taken[hits] = True
                decoys += hits
    gallery_need = cfg.gallery_size - len(group_gallery) - len(decoys)
    wanted = {slot: count for slot, count in ((s[:2], s[2]) for s in slots)}
    short = {slot: count - len(exact.get(slot, [])) for slot, count in wanted.items()}
    rest = order[~taken[order]]
    fill_test = sum(v for (name, _), v in short.items() if name == "test")
    fill_val = sum(v for (name, _), v in short.items() if name == "val")
    if len(rest) < gallery_need + fill_test + fill_val + 1:
        raise _too_few(n, len(attr_rows), len(rest), cfg, gallery_need, fill_test, fill_val)
    fill = rest[:gallery_need]
    taken[fill] = True
    gallery_rows = np.concatenate([group_gallery, np.asarray(decoys, dtype=np.int64), fill]).astype(np.int64)
    gallery_vectors = np.unique(labels[gallery_rows], axis=0)
    plans = {}
    for which, count in (("test", cfg.num_queries), ("val", cfg.val_queries)):
        rows, targets, changed, nums, target_rows = [], [], [], [], []
        for n_changes in cfg.num_changes if count else ():
            for q, t in exact.get((which, n_changes), []):
                rows.append(q)
                targets.append(labels[t].astype(np.int16))
                changed.append([int(m) for m in np.flatnonzero(labels[t] != labels[q])])
                nums.append(n_changes)
                target_rows.append(t)
            missing = short[(which, n_changes)]
            if missing:
                have = count - missing
                more, tgt, chg = _take_queries(labels, order, taken, gallery_vectors, n_changes, missing, rng,
                                               which == "test", have)
                rows += more
                targets += tgt
                changed += chg
                nums += [n_changes] * len(more)
                target_rows += [-1] * len(more)
                log.warning("%s queries with %d change(s): %d of %d from variant groups (exact target), %d "
                            "label-vector queries (target_id null) for the rest; %d usable groups in the dataset",
                            which, n_changes, have, count, len(more), len(usable))
        plans[which] = QueryPlan(np.asarray(rows, dtype=np.int64),
                                 np.asarray(targets, dtype=np.int16).reshape(-1, labels.shape[1]), changed,
                                 np.asarray(nums, dtype=np.int64), np.asarray(target_rows, dtype=np.int64))
    return SplitPlan(
        attr_train=np.sort(attr_rows),
        gallery=np.sort(gallery_rows),
        test=plans["test"],
        val=plans["val"],
        triplet_pool=np.sort(order[~taken[order]]),
        groups={"variant_groups": len(usable), "query_groups": int(used.sum()), "decoys": len(decoys)},
    )


# item_group: the row's variant group within this split (the dataset's item_id as a code; -1 = none):
# AMNet training draws a query's exact target as Eq. 5's positive from it (amnet.data.triplets)
SHARD_SCHEMA = pa.schema([("image_id", pa.large_string()), ("image_bytes", pa.binary()),
                          ("labels", pa.list_(pa.int64())), ("item_group", pa.int64())])
QUERY_SCHEMA = SHARD_SCHEMA.append(pa.field("target", pa.list_(pa.int64()))).append(
    pa.field("changed", pa.list_(pa.int64()))).append(pa.field("num_changes", pa.int64())).append(
    pa.field("target_id", pa.large_string()))  # the exact target's image_id (variant groups), else null


def _query_columns(plan: QueryPlan, positions: np.ndarray, target_ids: dict[int, str]) -> list[pa.Array]:
    """target, changed, num_changes and target_id of the queries at ``positions`` (in query order);
    ``target_ids``: image_id by kept index of the exact targets."""
    exact = plan.exact_targets()[positions]
    return [
        pa.array(plan.targets[positions].astype(np.int64).tolist(), type=pa.list_(pa.int64())),
        pa.array([plan.changed[p] for p in positions], type=pa.list_(pa.int64())),
        pa.array(plan.num_changes[positions], type=pa.int64()),
        pa.array([target_ids[int(t)] if t >= 0 else None for t in exact], type=pa.large_string()),
    ]


def write_sets(staged: StagedValidation, plan: SplitPlan, out: str, shard_size: int, workdir: str) -> None:
    """Gather each set's rows by kept index from the staging parts into ``out/<set>/part-*.parquet``.

    One pass over the parts (``pyarrow.dataset``, one fragment at a time): the ascending sets stream
    straight into their shards; query rows (few, in query order) go to a small local file per query
    set first and are written in query order from there. Memory: one part plus one shard per set.
    """
    sets = plan.sets()
    writers = {name: shards.ShardWriter(storage.join(out, name), shard_size, SHARD_SCHEMA)
               for name in SETS if name not in QUERY_SHARDS.values()}
    qschema = SHARD_SCHEMA.append(pa.field("position", pa.int64()))
    gathers = {}
    for name, qplan in plan.query_plans().items():
        qorder = np.argsort(qplan.rows, kind="stable")  # query positions by kept index
        path = os.path.join(workdir, f"{name}-gather.parquet")
        gathers[name] = (path, qorder, qplan.rows[qorder], pq.ParquetWriter(path, qschema, compression="none"))
    data = ds.dataset(staged.parts, format="parquet", schema=validate.PART_SCHEMA)
    exact = np.unique(np.concatenate([q.exact_targets() for q in plan.query_plans().values()]))
    exact = exact[exact >= 0]
    target_ids: dict[int, str] = {}
    try:
        for fragment, part, start, stop in zip(data.get_fragments(), staged.parts, staged.part_starts[:-1],
                                               staged.part_starts[1:], strict=True):
            assert fragment.path == part, (fragment.path, part)  # kept order = part order
            table = fragment.to_table(columns=["image_id", "image_bytes", "labels"])
            codes = staged.groups[start:stop] if staged.groups is not None else np.full(stop - start, -1)
            table = table.append_column("item_group", pa.array(np.asarray(codes, dtype=np.int64)))
            for name, writer in writers.items():
                idx = sets[name]
                lo, hi = np.searchsorted(idx, [start, stop])
                if hi > lo:
                    writer.add(table.take(pa.array(idx[lo:hi] - start)))
            lo, hi = np.searchsorted(exact, [start, stop])
            if hi > lo:
                found = table.column("image_id").take(pa.array(exact[lo:hi] - start)).to_pylist()
                target_ids.update(zip(exact[lo:hi].tolist(), found, strict=True))
            for _, qorder, qsorted, qwriter in gathers.values():
                lo, hi = np.searchsorted(qsorted, [start, stop])
                if hi > lo:
                    rows = table.take(pa.array(qsorted[lo:hi] - start))
                    qwriter.write_table(rows.append_column("position", pa.array(qorder[lo:hi], type=pa.int64())))
    finally:
        for _, _, _, qwriter in gathers.values():
            qwriter.close()
    for writer in writers.values():
        writer.close()
    assert len(target_ids) == len(exact), "exact targets not found in the staging parts"
    for name, qplan in plan.query_plans().items():
        _write_queries(gathers[name][0], qplan, storage.join(out, name), shard_size, target_ids)


def _write_queries(gather_file: str, plan: QueryPlan, prefix: str, shard_size: int,
                   target_ids: dict[int, str]) -> None:
    """The gathered query rows (any order, with their ``position``) as shards in query order."""
    qwriter_out = shards.ShardWriter(prefix, shard_size, QUERY_SCHEMA)
    gathered = pq.ParquetFile(gather_file)
    for first in range(0, max(len(plan.rows), 1), shard_size):
        want = np.arange(first, min(first + shard_size, len(plan.rows)))
        pieces = []
        for batch in gathered.iter_batches(batch_size=1024):
            pos = batch.column("position").to_numpy()
            keep = np.flatnonzero((pos >= first) & (pos < first + shard_size))
            if len(keep):
                pieces.append(pa.Table.from_batches([batch]).take(pa.array(keep)))
        if not pieces:
            break
        rows = pa.concat_tables(pieces)
        rows = rows.take(pa.array(np.argsort(rows.column("position").to_numpy(), kind="stable")))
        assert np.array_equal(rows.column("position").to_numpy(), want), "query gather lost rows"
        base = rows.select(["image_id", "image_bytes", "labels", "item_group"])
        qwriter_out.add(pa.Table.from_arrays([*base.columns, *_query_columns(plan, want, target_ids)],
                                             schema=QUERY_SCHEMA))
    qwriter_out.close()


def write_split(out: str, staged: StagedValidation, plan: SplitPlan, summary: dict, shard_size: int,
                workdir: str) -> None:
    """Write shards, the vocabulary, the quarantine table and ``split.json`` (written last)."""
    write_sets(staged, plan, out, shard_size, workdir)
    storage.write_text(storage.join(out, ATTRIBUTES), staged.vocab.to_json())
    with open(staged.quarantine_file, "rb") as fh:
        storage.write_bytes(storage.join(out, "quarantine.parquet"), fh.read())
    storage.write_text(storage.join(out, SPLIT_JSON), json.dumps(summary, indent=2) + "\n")


def run_split(dataset: str, out: str, cfg: SplitConfig, progress: bool = True, dataset_digest: str = "",
              dataset_rows: int = -1, workers: int = 0) -> dict:
    """Validate ``dataset``, split it as in §5.1 and write the shards to ``out``.

    Streamed: validation writes the kept rows to local staging files (images decoded in ``workers``
    processes, 0 = one per CPU), the split is decided on the (N, M) label matrix alone, and each set's
    rows are gathered from the staging files into its shards; peak memory does not grow with the
    images (``benchmarks/scale.py``). Staging lives under ``$AMNET_TMPDIR`` (else the system temp
    folder) and is removed at the end.

    ``split.json`` records the dataset's fingerprint (:mod:`amnet.data.fingerprint`): the one the
    pipeline's first stage computed (``dataset_digest``, ``dataset_rows``), or, when none is given,
    one computed here. A manifest whose row count differs from the fingerprint's changed in between.
    """
    from amnet.data.fingerprint import fingerprint_dataset

    start = time.perf_counter()
    workdir = tempfile.mkdtemp(prefix="amnet-split-", dir=os.environ.get("AMNET_TMPDIR") or None)
    try:
        # first: its errors name what is wrong with the data
        result = validate.validate_to_staging(dataset, workdir, progress=progress, workers=workers)
        if not dataset_digest:
            fp = fingerprint_dataset(dataset)
            dataset_digest, dataset_rows = fp.digest, fp.rows
        if dataset_rows >= 0 and dataset_rows != result.rows_in:
            raise DatasetError(f"{dataset}: the manifest has {result.rows_in} rows but its fingerprint "
                               f"{dataset_digest[:12]} counted {dataset_rows}; the dataset changed while the "
                               "pipeline ran: rerun it once the update is complete")
        validate.check_fraction(result, cfg.max_quarantine_fraction)
        try:
            plan = plan_split(result.labels, result.vocab, cfg, result.groups)
        except DatasetError as exc:  # name the dataset: the user may split several
            raise DatasetError(f"{dataset}: {exc}") from None
        counts = {name: int(len(rows)) for name, rows in plan.sets().items()}
        for name, qplan in plan.query_plans().items():
            values, freq = np.unique(qplan.num_changes, return_counts=True)
            counts[f"{name}_by_changes"] = {str(int(k)): int(v) for k, v in zip(values, freq, strict=True)}
        exact = {f"exact_target_{name}": int((qplan.exact_targets() >= 0).sum())
                 for name, qplan in plan.query_plans().items()}
        summary = {
            "dataset": dataset,
            "dataset_digest": dataset_digest,
            "rows_in": int(result.rows_in),
            "quarantined": int(result.num_quarantined),
            "kept": int(result.num_kept),
            **counts,
            **exact,  # queries whose target_id names their exact target (variant groups)
            "item_groups": validate.group_stats(result.groups)["item_groups"],  # distinct item_id values kept
            **plan.groups,
            "config": cfgmod.to_dict(cfg),
            "seconds": 0.0,
        }
        used = sum(counts[name] for name in SETS)
        assert used == result.num_kept and summary["kept"] + summary["quarantined"] == summary["rows_in"], summary
        summary["seconds"] = round(time.perf_counter() - start, 2)  # validation + plan (as before)
        write_split(out, result, plan, summary, cfg.shard_size, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return summary


def split_summary(split: str) -> dict:
    """The split's ``split.json`` (counts, config, ``dataset_digest``); {} for a folder without one."""
    uri = storage.join(split, SPLIT_JSON)
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else {}


def dataset_digest(split: str) -> str:
    """The fingerprint of the dataset ``split`` was made from ("" for splits made before fingerprints)."""
    return str(split_summary(split).get("dataset_digest", ""))


def query_set(split: str, which: str = "test") -> str:
    """The query shards' prefix of ``split``: ``test`` -> ``queries``, ``val`` -> ``val_queries``
    (``EvaluateConfig.queries``); a clear error for a split made before validation queries existed."""
    if which not in QUERY_SHARDS:
        raise DatasetError(f"unknown query set {which!r}; choose {' or '.join(QUERY_SETS)}")
    prefix = storage.join(split, QUERY_SHARDS[which])
    if which == "val" and (not storage.list_files(prefix, ".parquet") or split_summary(split).get("val_queries") == 0):
        raise DatasetError(f"{split}: no validation queries (val_queries/); split the dataset again with "
                           "num_val_queries > 0, or evaluate the test queries (evaluate.queries: test)")
    return prefix


def load_split_vocab(split: str) -> Vocabulary:
    uri = storage.join(split, ATTRIBUTES)
    if not storage.exists(uri):
        raise DatasetError(f"{uri}: no such file; {split} is not a split, run `amnet data split` first")
    return Vocabulary.from_json(storage.read_text(uri), source=split)
