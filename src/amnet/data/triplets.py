"""Training triplets for AMNet (§4): (ref, manipulation, pos, neg), deterministic per seed and epoch.

For a reference image, a manipulation changes n attributes (n = 2 with probability
``two_change_fraction``, else 1) to values such that some pool image carries the target attribute
vector; that image is the positive. The negative is a random pool image whose attribute vector differs
from the target (the paper: "a randomly sampled image dissimilar to the reference").
With ``hard_negative_fraction`` > 0 (an option; 0 is the paper's setting) a share of negatives are
drawn among images one attribute away from the target, e.g. the reference itself.

Missing labels (-1) are unknown, never a value: only attributes the reference knows are changed, and
the target knows exactly the reference's known attributes (the changed ones with their new values);
an attribute the reference lacks is not part of the target (Eq. 4 ignores it). The positive must carry
every value the target knows, a missing label counting as not carrying it (as in the evaluation's
hits), so it never has a manipulated attribute missing; where the target is unknown it may be anything.
A negative must differ from the target on an attribute known on both sides, so a pool image with no
label at all is never a reference, a positive or a negative.

Variant groups (``groups``: the pool's ``item_group`` codes, an option beyond the paper): with
``group_positive_fraction`` > 0 that share of triplets takes its reference from a group and its
positive from the *same* group, one or two attributes away: the exact target a shopper asking for that
change wants, not any image that happens to carry the target labels. Only fully labelled members take
part. Such triplets are marked ``exact``; batch mining may then also take other items with the target's
labels as negatives (:func:`amnet.train.amnet_train.train_step`), which is what teaches r' to keep the
item's look.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from amnet.data.schema import MISSING
from amnet.errors import DatasetError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TripletBatch:
    ref: np.ndarray  # (B,) pool row of the reference image
    pos: np.ndarray  # (B,) pool row of an image carrying every known target attribute
    neg: np.ndarray  # (B,) pool row of an image that differs from the target on a known attribute
    target: np.ndarray  # (B, M) desired attribute vector, -1 where the reference's label is missing
    changes: list[list[tuple[int, int]]]  # per triplet: (attribute, new value) pairs -> indicator h
    exact: np.ndarray | None = None  # (B,) bool: pos is the reference's own variant (None: no group triplets)


# ref, pos, neg, target attributes, changes, whether pos is the reference's own variant
Triplet = tuple[int, int, int, np.ndarray, list[tuple[int, int]], bool]


class TripletSampler:
    """Samples triplets from a labelled pool; ``batches(epoch, steps, batch_size)`` is deterministic.

    ``labels`` (N, M), -1 = missing. ``vectors`` are the pool's distinct label vectors (missing labels
    included, sorted), ``members[u]`` the pool rows that carry vector u."""

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
        self.vectors, inverse = np.unique(self.labels, axis=0, return_inverse=True)  # (U, M)
        inverse = inverse.ravel()
        self.known = self.vectors != MISSING  # (U, M)
        self.vector_of_row = inverse.astype(np.int64)  # pool row -> row of self.vectors
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(self.vectors) + 1))
        self.members = [order[bounds[u]:bounds[u + 1]] for u in range(len(self.vectors))]
        self.sizes = np.diff(bounds)  # (U,) rows per vector
        self._neighbours: dict[tuple[int, int], np.ndarray] = {}
        self._goals: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._near: dict[bytes, np.ndarray] = {}
        self.refs = self._usable_refs(np.arange(len(self.labels)))
        if len(self.refs) == 0:
            raise DatasetError(
                "the triplet pool has no image whose 1-attribute manipulation has a match in the pool "
                "(known labels only); use a larger dataset, fewer missing labels or a smaller "
                "attribute-CNN/gallery split"
            )
        if not complete.all():
            logger.info("triplet pool: %d of %d images have a missing label; %d images can be references",
                        int((~complete).sum()), len(self.labels), len(self.refs))

    def _usable_refs(self, rows: np.ndarray) -> np.ndarray:
        has_neighbour = np.array([len(self._targets(u, 1)) > 0 for u in range(len(self.vectors))], dtype=bool)
        return rows[has_neighbour[self.vector_of_row[rows]]].astype(np.int64)

    def _targets(self, u: int, n: int) -> np.ndarray:
        """Rows of ``self.vectors`` that can be the positive of vector ``u`` changed in ``n`` attributes:
        known on every attribute ``u`` knows, differing from it in exactly ``n`` of them (ascending;
        cached: the sampler asks for the same few lists millions of times). With every label known,
        the vectors exactly ``n`` attributes away."""
        key = (u, n)
        found = self._neighbours.get(key)
        if found is None:
            k = self.known[u]
            cover = self.known[:, k].all(axis=1)
            diff = (self.vectors[:, k] != self.vectors[u, k][None, :]).sum(axis=1)
            found = self._neighbours[key] = np.flatnonzero(cover & (diff == n))
        return found

    def _goal_vectors(self, u: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(goals, which, found)``: the distinct target vectors of vector ``u`` changed in ``n`` attributes
        (sorted; -1 where ``u`` is missing), ``found`` = :meth:`_targets` and ``which[i]`` the goal that
        ``found[i]`` carries. With every label known, goals = the vectors of ``found``, one each."""
        key = (u, n)
        got = self._goals.get(key)
        if got is None:
            found = self._targets(u, n)
            restricted = np.where(self.known[u][None, :], self.vectors[found], MISSING).astype(np.int16)
            goals, which = np.unique(restricted.reshape(-1, self.vectors.shape[1]), axis=0, return_inverse=True)
            got = self._goals[key] = (goals, which.ravel(), found)
        return got

    def _member(self, rng: np.random.Generator, vectors: np.ndarray) -> int:
        """A pool row drawn uniformly among the members of ``vectors``."""
        if len(vectors) == 1:
            members = self.members[int(vectors[0])]
            return int(members[rng.integers(len(members))])
        ends = np.cumsum(self.sizes[vectors])
        pick = int(rng.integers(int(ends[-1])))
        v = int(np.searchsorted(ends, pick, side="right"))
        start = int(ends[v - 1]) if v else 0
        return int(self.members[int(vectors[v])][pick - start])

    def sample(self, rng: np.random.Generator) -> Triplet:
        if len(self.group_refs) and rng.random() < self.group_positive_fraction:
            return self._sample_variant(rng)
        ref = int(self.refs[rng.integers(len(self.refs))])
        ref_vec, ref_u = self.labels[ref], int(self.vector_of_row[ref])
        n = 2 if rng.random() < self.two_change_fraction else 1
        goals, which, found = self._goal_vectors(ref_u, n)
        if len(goals) == 0:
            goals, which, found = self._goal_vectors(ref_u, 1)
        g = int(rng.integers(len(goals)))
        target = goals[g]
        pos = self._member(rng, found[which == g])
        neg = self._negative(rng, target)
        changed = np.flatnonzero((target != ref_vec) & (target != MISSING))
        return ref, pos, neg, target, [(int(m), int(target[m])) for m in changed], False

    def _sample_variant(self, rng: np.random.Generator) -> Triplet:
        """A group triplet: the positive is the reference's own variant with the target labels."""
        ref = int(self.group_refs[rng.integers(len(self.group_refs))])
        by_n = self.siblings[ref]
        n = 2 if rng.random() < self.two_change_fraction else 1
        cands = by_n.get(n, by_n.get(3 - n))
        pos = int(cands[rng.integers(len(cands))])
        target = self.labels[pos]
        neg = self._negative(rng, target)
        changed = np.flatnonzero(target != self.labels[ref])
        return ref, pos, neg, target.astype(np.int64), [(int(m), int(target[m])) for m in changed], True

    def _near_vectors(self, target: np.ndarray) -> np.ndarray:
        """Rows of ``self.vectors`` that differ from ``target`` in exactly one attribute known on both sides
        (cached per target)."""
        key = target.astype(np.int16).tobytes()
        near = self._near.get(key)
        if near is None:
            both = self.known & (target != MISSING)[None, :]
            near = self._near[key] = np.flatnonzero(((self.vectors != target[None, :]) & both).sum(axis=1) == 1)
        return near

    def _negative(self, rng: np.random.Generator, target: np.ndarray) -> int:
        """A pool row whose labels differ from ``target`` on an attribute known on both sides. The loop
        ends: the reference itself differs from the target on a changed (known) attribute."""
        if self.hard_negative_fraction > 0 and rng.random() < self.hard_negative_fraction:
            near = self._near_vectors(target)
            if len(near):
                members = self.members[int(near[rng.integers(len(near))])]
                return int(members[rng.integers(len(members))])
        while True:
            neg = int(rng.integers(len(self.labels)))
            if differs_on_known(self.labels[neg], target):
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


def differs_on_known(labels: np.ndarray, target: np.ndarray) -> bool:
    """True when ``labels`` and ``target`` (M,) differ on an attribute known (not -1) on both sides: the
    rule for a legal negative. An unknown label is neither equal nor different."""
    return bool(((labels != target) & (labels != MISSING) & (target != MISSING)).any())


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
