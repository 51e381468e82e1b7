"""Group positives (``train.group_positives``): triplets whose positive is the reference's own variant,
mining that may then take another item with the target labels as the negative, and the pool that
carries the split's item groups. Tiny hand-made labels; no images but the 32 px random ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amnet.config import TrainConfig
from amnet.data.triplets import TripletSampler, variant_siblings
from amnet.errors import ConfigError
from amnet.train.amnet_train import negative_mask

# rows 0-2: item 0 (colour, sleeve changed); rows 3-4: item 1; row 5: item 2 alone; rows 6-9: no item
LABELS = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [2, 1, 1], [2, 1, 2], [1, 0, 0],
                   [0, 0, 1], [1, 1, 0], [2, 0, 0], [0, 1, 0]])
GROUPS = np.array([0, 0, 0, 1, 1, 2, -1, -1, -1, -1])


def test_variant_siblings_by_number_of_changes():
    sib = variant_siblings(LABELS, GROUPS, np.ones(len(LABELS), dtype=bool))
    assert set(sib) == {0, 1, 2, 3, 4}  # item 2 has one member; rows 6-9 have no item
    assert sib[0][1].tolist() == [1] and sib[0][2].tolist() == [2]
    assert sib[1][1].tolist() == [0, 2] and 2 not in sib[1]
    assert sib[3][1].tolist() == [4]


def test_every_group_triplet_takes_its_positive_from_the_references_item():
    sampler = TripletSampler(LABELS, seed=3, groups=GROUPS, group_positive_fraction=1.0)
    seen = 0
    for batch in sampler.batches(epoch=0, steps=5, batch_size=16):
        assert batch.exact is not None and batch.exact.all()
        for ref, pos, neg, target, changes in zip(batch.ref, batch.pos, batch.neg, batch.target, batch.changes,
                                                  strict=True):
            assert GROUPS[ref] == GROUPS[pos] >= 0 and ref != pos
            assert target.tolist() == LABELS[pos].tolist()
            assert changes == [(int(m), int(LABELS[pos][m])) for m in np.flatnonzero(LABELS[pos] != LABELS[ref])]
            assert (LABELS[neg] != target).any()
            seen += 1
    assert seen == 80


def test_a_share_of_group_triplets_and_none_without_groups():
    mixed = TripletSampler(LABELS, seed=3, groups=GROUPS, group_positive_fraction=0.5)
    exact = np.concatenate([b.exact for b in mixed.batches(0, 20, 16)])
    assert 0.35 < exact.mean() < 0.65
    plain = TripletSampler(LABELS, seed=3, groups=GROUPS, group_positive_fraction=0.0)
    old = TripletSampler(LABELS, seed=3)
    for a, b in zip(plain.batches(0, 3, 8), old.batches(0, 3, 8), strict=True):  # the paper's triplets, as before
        assert a.exact is None and np.array_equal(a.pos, b.pos) and np.array_equal(a.neg, b.neg)


def test_mining_takes_other_items_with_the_target_labels_only_for_exact_triplets():
    own = torch.tensor([[0, 0, 0], [0, 0, 0],    # refs
                        [1, 0, 0], [1, 0, 0],    # positives
                        [1, 0, 0], [2, 2, 2]])   # negatives: row 4 carries the target labels
    target = torch.tensor([[1, 0, 0], [1, 0, 0]])
    item = torch.tensor([7, 8, 7, 8, 9, -1])
    exact = torch.tensor([True, False])
    plain = negative_mask(own, target)
    assert plain.tolist() == [[True, True, False, False, False, True]] * 2
    mask = negative_mask(own, target, item, exact)
    assert mask[0].tolist() == [True, True, False, True, True, True]  # not its own positive; the decoy; item 8's
    assert mask[1].tolist() == plain[1].tolist()


@pytest.mark.parametrize("key", ["group_positives", "retrieval_weight"])
def test_fractions_are_checked(key):
    with pytest.raises(ConfigError, match=key):
        TrainConfig(**{key: 1.5}).validate()
    assert TrainConfig(**{key: 0.0}).validate() is None
