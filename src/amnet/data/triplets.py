"""Training triplets for AMNet (§4): (ref, manipulation, pos, neg), deterministic per seed and epoch.

For a reference image, a manipulation changes n attributes (n = 2 with probability
``two_change_fraction``, else 1) to values such that some pool image has *exactly* the target
attribute vector; that image is the positive. The negative is a random pool image whose attribute
vector differs from the target (the paper: "a randomly sampled image dissimilar to the reference").
With ``hard_negative_fraction`` > 0 (an option; 0 is the paper's setting) a share of negatives are
drawn among images one attribute away from the target, e.g. the reference itself.

Variant groups (``groups``: the pool's ``item_group`` codes, an option beyond the paper): with
``group_positive_fraction`` > 0 that share of triplets takes its reference from a group and its
positive from the *same* group, one or two attributes away: the exact target a shopper asking for that
change wants, not any image that happens to carry the target labels. Such triplets are marked
``exact``; batch mining may then also take other items with the target's labels as negatives
(:func:`amnet.train.amnet_train.train_step`), which is what teaches r' to keep the item's look.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amnet.data.schema import MISSING
from amnet.errors import DatasetError


@dataclass(frozen=True)
class TripletBatch:
    ref: np.ndarray  # (B,) pool row of the reference image
    pos: np.ndarray  # (B,) pool row of an image with exactly the target attributes
    neg: np.ndarray  # (B,) pool row of an image whose attributes differ from the target
    target: np.ndarray  # (B, M) desired attribute vector
    changes: list[list[tuple[int, int]]]  # per triplet: (attribute, new value) pairs -> indicator h
    exact: np.ndarray | None = None  # (B,) bool: pos is the reference's own variant (None: no group triplets)


# ref, pos, neg, target attributes, changes, whether pos is the reference's own variant
Triplet = tuple[int, int, int, np.ndarray, list[tuple[int, int]], bool]


class TripletSampler:
    """Samples triplets from a labelled pool; ``batches(epoch, steps, batch_size)`` is deterministic."""

    def __init__(self, labels: np.ndarray, seed: int = 0, two_change_fraction: float = 0.5,
                 hard_negative_fraction: float = 0.0, groups: np.ndarray | None = None,
                 group_positive_fraction: float = 0.0):
        self.labels = np.asarray(labels, dtype=np.int16)  # (N, M)
        self.seed = seed
        self.two_change_fraction = two_change_fraction
        self.hard_negative_fraction = hard_negative_fraction
        self.group_positive_fraction = group_positive_fraction
        complete = (self.labels != MISSING).all(axis=1)
        # pool row -> its variants 1 or 2 attributes away, per number of changes (rows without any: absent)
        self.siblings: dict[int, dict[int, np.ndarray]] = (
            variant_siblings(self.labels, np.asarray(groups), complete) if groups is not None
            and group_positive_fraction > 0 else {})
        self.group_refs = np.array(sorted(self.siblings), dtype=np.int64)
        self.vectors, inverse = np.unique(self.labels[complete], axis=0, return_inverse=True)  # (U, M)
        rows = np.flatnonzero(complete)
        self.vector_of_row = np.full(len(self.labels), -1, dtype=np.int64)  # pool row -> row of self.vectors
        self.vector_of_row[rows] = inverse.ravel()
        order = np.argsort(inverse.ravel(), kind="stable")
        bounds = np.searchsorted(inverse.ravel()[order], np.arange(len(self.vectors) + 1))
        self.members = [rows[order[bounds[u]:bounds[u + 1]]] for u in range(len(self.vectors))]
        self._neighbours: dict[tuple[int, int], np.ndarray] = {}
        self.refs = self._usable_refs(rows)
        if len(self.refs) == 0:
            raise DatasetError(
                "the triplet pool has no image whose 1-attribute manipulation has an exact match in the "
                "pool; use a larger dataset or a smaller attribute-CNN/gallery split"
            )

    def _usable_refs(self, rows: np.ndarray) -> np.ndarray:
        has_neighbour = np.array([len(self._targets(u, 1)) > 0 for u in range(len(self.vectors))], dtype=bool)
        return rows[has_neighbour[self.vector_of_row[rows]]].astype(np.int64)

    def _targets(self, u: int, n: int) -> np.ndarray:
        """Rows of ``self.vectors`` exactly ``n`` attributes away from vector ``u`` (ascending; cached:
        the sampler asks for the same few lists millions of times)."""
        key = (u, n)
        found = self._neighbours.get(key)
        if found is None:
            diff = (self.vectors != self.vectors[u][None, :]).sum(axis=1)
            found = self._neighbours[key] = np.flatnonzero(diff == n)
        return found

    def sample(self, rng: np.random.Generator) -> Triplet:
        if len(self.group_refs) and rng.random() < self.group_positive_fraction:
            return self._sample_variant(rng)
        while True:
            ref = int(self.refs[rng.integers(len(self.refs))])
            ref_vec, ref_u = self.labels[ref], int(self.vector_of_row[ref])
            n = 2 if rng.random() < self.two_change_fraction else 1
            cands = self._targets(ref_u, n)
            if len(cands) == 0:
                cands = self._targets(ref_u, 1)
            u = int(cands[rng.integers(len(cands))])
            target = self.vectors[u]
            members = self.members[u]
            pos = int(members[rng.integers(len(members))])
            neg = self._negative(rng, u, ref)
            changed = np.flatnonzero(target != ref_vec)
            return ref, pos, neg, target, [(int(m), int(target[m])) for m in changed], False

    def _sample_variant(self, rng: np.random.Generator) -> Triplet:
        """A group triplet: the positive is the reference's own variant with the target labels."""
        ref = int(self.group_refs[rng.integers(len(self.group_refs))])
        by_n = self.siblings[ref]
        n = 2 if rng.random() < self.two_change_fraction else 1
        cands = by_n.get(n, by_n.get(3 - n))
        pos = int(cands[rng.integers(len(cands))])
        target = self.labels[pos]
        neg = self._negative(rng, int(self.vector_of_row[pos]), ref)
        changed = np.flatnonzero(target != self.labels[ref])
        return ref, pos, neg, target.astype(np.int64), [(int(m), int(target[m])) for m in changed], True

    def _negative(self, rng: np.random.Generator, u: int, ref: int) -> int:
        target = self.vectors[u]
        if self.hard_negative_fraction > 0 and rng.random() < self.hard_negative_fraction:
            near = self._targets(u, 1)
            if len(near):
                members = self.members[int(near[rng.integers(len(near))])]
                return int(members[rng.integers(len(members))])
        while True:
            neg = int(rng.integers(len(self.labels)))
            if (self.labels[neg] != target).any():
                return neg

    def batches(self, epoch: int, steps: int, batch_size: int):
        """Yield ``steps`` TripletBatch objects for ``epoch`` (same seed+epoch -> same triplets)."""
        rng = np.random.default_rng([self.seed, epoch])
        for _ in range(steps):
            items = [self.sample(rng) for _ in range(batch_size)]
            yield TripletBatch(
                ref=np.array([i[0] for i in items]),
                pos=np.array([i[1] for i in items]),
                neg=np.array([i[2] for i in items]),
                target=np.stack([i[3] for i in items]).astype(np.int64),
                changes=[i[4] for i in items],
                exact=np.array([i[5] for i in items], dtype=bool) if len(self.group_refs) else None,
            )


def variant_siblings(labels: np.ndarray, groups: np.ndarray, complete: np.ndarray) -> dict[int, dict[int, np.ndarray]]:
    """Row -> {number of changes (1 or 2): rows of the same group that many attributes away}, for the fully
    labelled rows of groups (code >= 0) that have such a sibling."""
    out: dict[int, dict[int, np.ndarray]] = {}
    rows = np.flatnonzero((groups >= 0) & complete)
    order = rows[np.argsort(groups[rows], kind="stable")]
    starts = np.r_[0, np.flatnonzero(np.diff(groups[order])) + 1, len(order)]
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        members = order[a:b]
        if len(members) < 2:
            continue
        diff = (labels[members][:, None, :] != labels[members][None, :, :]).sum(axis=2)  # (G, G)
        for i, row in enumerate(members.tolist()):
            found = {n: members[diff[i] == n] for n in (1, 2) if (diff[i] == n).any()}
            if found:
                out[row] = found
    return out
