"""Missing labels are unknown at every stage: never a value, never equal to or different from one.

Unit tests: batch mining (``negative_mask``), the triplet sampler, the re-scoring script's matching. One
slow test runs split -> pretrain -> prototypes -> train -> featurize -> evaluate on a tiny catalogue with
20 % of its attribute cells empty or null and checks each stage's output."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from amnet.data.triplets import TripletSampler, differs_on_known
from amnet.train.amnet_train import negative_mask
from tests.helpers import load_quality

MISSING_FRACTION = 0.2


def _known_difference(own: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(B, N) bool: image j differs from target i on an attribute known on both sides (brute force)."""
    return np.array([[differs_on_known(o, t) for o in own] for t in target], dtype=bool)


# ------------------------------------------------------------------------------------------------ mining

def test_an_unknown_label_never_makes_an_image_a_negative():
    target = torch.tensor([[1, 0, 0], [1, -1, 2]])
    own = torch.tensor([[1, 0, 0],      # equal: no
                        [1, -1, -1],    # equal where known: no (it may be a true match)
                        [-1, -1, -1],   # nothing known: no
                        [1, 0, -1],     # target 0: equal where known; target 1: unknown on both sides
                        [2, -1, 0],     # differs on a known attribute: yes
                        [1, 3, 2]])     # target 0: differs on attribute 1; target 1: attribute 1 unknown
    mask = negative_mask(own, target)
    assert mask.tolist() == [[False, False, False, False, True, True],
                             [True, False, False, False, True, False]]
    np.testing.assert_array_equal(mask.numpy(), _known_difference(own.numpy(), target.numpy()))


def test_exact_triplets_still_take_other_items_whatever_their_labels():
    own = torch.tensor([[0, 0], [0, -1],    # refs (items 4, 6)
                        [1, 0], [1, 0],     # positives (items 4, 6)
                        [1, -1], [-1, 0]])  # negatives (item 5, none): equal to the target where known
    target = torch.tensor([[1, 0], [1, 0]])
    item = torch.tensor([4, 6, 4, 6, 5, -1])
    mask = negative_mask(own, target, item, torch.tensor([True, False]))
    assert mask.tolist() == [[True, True, False, True, True, True],   # exact: any other item
                             [True, True, False, False, False, False]]


def test_mining_matches_a_brute_force_scan_with_missing_labels():
    rng = np.random.default_rng(0)
    own = rng.integers(0, 3, size=(24, 5))
    own[rng.random(own.shape) < MISSING_FRACTION] = -1
    target = rng.integers(0, 3, size=(8, 5))
    target[rng.random(target.shape) < MISSING_FRACTION] = -1
    got = negative_mask(torch.from_numpy(own), torch.from_numpy(target)).numpy()
    np.testing.assert_array_equal(got, _known_difference(own, target))


# --------------------------------------------------------------------------------------------- triplets

def _labels_with_missing(rows: int = 600, attrs: int = 4, values: int = 3, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, values, size=(rows, attrs)).astype(np.int16)
    labels[rng.random(labels.shape) < MISSING_FRACTION] = -1
    labels[:5] = -1  # a few images with no label at all
    return labels


def check_triplets(labels: np.ndarray, sampler: TripletSampler, steps: int = 10, batch_size: int = 32) -> int:
    """Assert the missing-label rules on ``steps`` batches; returns how many triplets had a partial target."""
    partial = 0
    for batch in sampler.batches(epoch=0, steps=steps, batch_size=batch_size):
        for i in range(len(batch.ref)):
            ref, pos, neg, target = labels[batch.ref[i]], labels[batch.pos[i]], labels[batch.neg[i]], batch.target[i]
            changed = [m for m, _ in batch.changes[i]]
            assert changed and all(ref[m] >= 0 and target[m] >= 0 and ref[m] != target[m] for m in changed)
            assert [v for _, v in batch.changes[i]] == [int(target[m]) for m in changed]
            known = target >= 0
            np.testing.assert_array_equal(known, ref >= 0)  # the target knows what the reference knows
            same = [m for m in np.flatnonzero(known) if m not in changed]
            np.testing.assert_array_equal(target[same], ref[same])
            np.testing.assert_array_equal(pos[known], target[known])  # pos carries every known target value
            assert differs_on_known(neg, target)
            partial += int(not known.all())
    return partial


def test_partly_labelled_references_are_changed_only_on_what_they_know():
    labels = _labels_with_missing()
    sampler = TripletSampler(labels, seed=0)
    assert not np.isin(np.arange(5), sampler.refs).any()  # no label at all: never a reference
    assert check_triplets(labels, sampler) > 0


def test_hard_negatives_differ_on_a_known_attribute():
    labels = _labels_with_missing(seed=2)
    assert check_triplets(labels, TripletSampler(labels, seed=3, hard_negative_fraction=1.0)) > 0


def test_group_triplets_use_fully_labelled_members_only():
    labels = _labels_with_missing(seed=4)
    groups = np.random.default_rng(4).integers(-1, 150, size=len(labels))
    sampler = TripletSampler(labels, seed=0, groups=groups, group_positive_fraction=1.0)
    assert len(sampler.group_refs)
    for batch in sampler.batches(epoch=0, steps=5, batch_size=16):
        assert (labels[batch.ref] >= 0).all() and (labels[batch.pos] >= 0).all()
        assert all(differs_on_known(labels[n], t) for n, t in zip(batch.neg, batch.target, strict=True))


# ------------------------------------------------------------------------------------------------ losses

def test_the_classification_loss_ignores_missing_labels():
    from amnet.models.losses import classification_loss

    torch.manual_seed(0)
    logits = [torch.randn(6, 3), torch.randn(6, 4)]
    labels = torch.tensor([[0, -1], [2, -1], [-1, -1], [1, -1], [-1, -1], [0, -1]])  # attribute 1: none known
    known = labels[:, 0] >= 0
    want = torch.nn.functional.cross_entropy(logits[0][known], labels[known, 0])
    got = classification_loss(logits, labels)
    assert torch.isfinite(got) and torch.allclose(got, want)


# ----------------------------------------------------------------------------------------------- rescore

def test_rescore_never_matches_a_missing_label_and_skips_a_missing_target_attribute():
    rescore = load_quality("rescore")
    truth = rescore.Truth(["color", "shape"], {"color": ["red", "blue"], "shape": ["round", "square"]}, {})
    assert rescore.wanted(truth, [1, -1]) == ["blue", None]
    assert rescore.matched(["blue", None], ["blue", "round"]) == 1
    assert rescore.matched([None, None], [None, None]) == 0
    assert rescore.matched(["blue", "square"], ["blue", None]) == 1
    assert [rescore._cell(v) for v in ("", " red ", None, float("nan"))] == [None, "red", None, None]


# ------------------------------------------------------------------------------------- the whole chain

def with_missing_labels(source: str, out: Path, fraction: float = MISSING_FRACTION, seed: int = 0) -> Path:
    """A copy of dataset ``source`` with ``fraction`` of its attribute cells emptied (half '', half null)."""
    shutil.copytree(source, out)
    manifest = pd.read_parquet(out / "manifest.parquet")
    names = [a["name"] for a in json.loads((out / "attributes.json").read_text())["attributes"]]
    rng = np.random.default_rng(seed)
    drop = rng.random((len(manifest), len(names))) < fraction
    for m, name in enumerate(names):
        column = manifest[name].to_numpy(dtype=object, copy=True)
        rows = np.flatnonzero(drop[:, m])
        column[rows] = ["" if k % 2 else None for k in range(len(rows))]
        manifest[name] = column
    manifest.to_parquet(out / "manifest.parquet", index=False)
    return out


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The tiny chain of tests/conftest.py on a catalogue with 20 % missing labels, then featurize and
    evaluate (tracking off)."""
    from amnet.cli import main
    from tests.conftest import TINY_MODEL, build_chain
    from tests.helpers import tiny_dataset

    root = tmp_path_factory.mktemp("missing")
    dataset = with_missing_labels(tiny_dataset(root, num_images=700), root / "dataset")
    built = build_chain(root, str(dataset),
                        {"per_value": 8, "gallery_size": 200, "num_queries": 20, "shard_size": 64},
                        {"model": TINY_MODEL, "epochs": 1, "batch_size": 32},
                        {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8})
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        assert main(["step", "featurize", "--split", str(built.split), "--model", str(built.model),
                     "--out", str(root / "feats"), "--quiet"]) == 0
        assert main(["step", "evaluate", "--split", str(built.split), "--model", str(built.model),
                     "--features", str(root / "feats"), "--out", str(root / "eval"), "--quiet"]) == 0
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return built


def _labels(split: Path, name: str) -> tuple[pd.DataFrame, np.ndarray]:
    from amnet.data import shards
    from amnet.data.split import label_matrix

    df = shards.read_shards(str(split / name))
    return df, label_matrix(df["labels"], 6)


@pytest.mark.slow
def test_the_catalogue_really_has_missing_labels_in_every_set(chain):
    for name in ("attr_train", "gallery", "triplet_pool"):
        labels = _labels(chain.split, name)[1]
        assert 0.1 < (labels == -1).mean() < 0.3, name


@pytest.mark.slow
def test_no_query_changes_or_asks_for_an_unknown_attribute(chain):
    gallery = {tuple(v) for v in _labels(chain.split, "gallery")[1].tolist()}
    drawn = 0
    for name in ("queries", "val_queries"):
        df, labels = _labels(chain.split, name)
        for ref, target, changed, n in zip(labels, df["target"], df["changed"], df["num_changes"], strict=True):
            target = np.asarray(target)
            assert (ref >= 0).all() and (target >= 0).all()  # reference and target fully known
            assert sorted(changed) == np.flatnonzero(target != ref).tolist() and len(changed) == n
            assert tuple(target.tolist()) in gallery
            drawn += 1
    assert drawn >= 40


@pytest.mark.slow
def test_mined_and_sampled_negatives_differ_from_the_target_on_a_known_attribute(chain):
    """The training triplets of the chain's pool with the training defaults: every sampled negative and
    every image mining may take differs from the target on an attribute known on both sides, and images
    the old rule (any difference, unknown included) would have taken are really left out."""
    from amnet.config import TrainConfig

    df, labels = _labels(chain.split, "triplet_pool")
    cfg = TrainConfig()
    groups = df["item_group"].to_numpy() if "item_group" in df.columns else None
    sampler = TripletSampler(labels, seed=0, two_change_fraction=cfg.two_change_fraction,
                             hard_negative_fraction=cfg.hard_negative_fraction, groups=groups,
                             group_positive_fraction=cfg.group_positives)
    assert check_triplets(labels, sampler, steps=20, batch_size=8) > 0
    spared = 0
    for batch in sampler.batches(epoch=0, steps=20, batch_size=8):
        own = torch.from_numpy(labels[np.concatenate([batch.ref, batch.pos, batch.neg])].astype(np.int64))
        target = torch.from_numpy(batch.target)
        mask = negative_mask(own, target).numpy()
        for i, j in zip(*np.nonzero(mask), strict=True):
            assert differs_on_known(own[j].numpy(), batch.target[i])
        spared += int(((own[None] != target[:, None]).any(2).numpy() & ~mask).sum())
    assert spared > 0


@pytest.mark.slow
def test_training_ran_with_finite_losses(chain):
    from amnet.model_store import load_model_payload

    history = load_model_payload(str(chain.model))["extra"]["history"]
    assert history and all(np.isfinite(row["loss"]) for row in history)


@pytest.mark.slow
def test_prototypes_average_only_the_images_that_know_the_value(chain):
    from amnet.data.schema import Vocabulary
    from amnet.data.split import load_split_vocab
    from amnet.data.tensors import decode_batch, to_input
    from amnet.model_store import load_payload
    from amnet.names import PROTOTYPES_FILE
    from amnet.train.prototypes import accumulate

    vocab: Vocabulary = load_split_vocab(str(chain.split))
    df, labels = _labels(chain.split, "attr_train")
    rows = [vocab.memory_row(m, int(v)) for row in labels for m, v in enumerate(row) if v >= 0]
    want_counts = np.bincount(rows, minlength=vocab.total_values)
    counts = load_payload(str(chain.protos / PROTOTYPES_FILE))["counts"].numpy()
    np.testing.assert_array_equal(counts, want_counts)

    # the sums with a stand-in representation (mean colour): only images that know the value add to its row
    loaded = SimpleNamespace(vocab=vocab, model_config=SimpleNamespace(feature_dim=3, image_size=32),
                             represent=lambda x: x.mean(dim=(2, 3)))
    sums, got_counts = accumulate(loaded, str(chain.split), 50, torch.device("cpu"), progress=False)
    feats = to_input(decode_batch(list(df["image_bytes"]), 32)).mean(dim=(2, 3)).double().numpy()
    for m in range(vocab.num_attributes):
        for v in range(vocab.sizes[m]):
            have = labels[:, m] == v
            np.testing.assert_allclose(sums[vocab.memory_row(m, v)].numpy(), feats[have].sum(0), atol=1e-6)
    np.testing.assert_array_equal(got_counts.numpy(), want_counts)


@pytest.mark.slow
def test_evaluation_counts_a_missing_result_label_as_not_matching_and_rescoring_agrees(chain):
    """A hit is a result that carries every target value; one with a missing label on a target attribute
    is not (even when its known labels all agree); the independent re-scoring agrees to 1e-12."""
    rescore = load_quality("rescore")
    ev = chain.root / "eval"
    per_query = pd.read_parquet(ev / "per_query.parquet")
    gallery_df, gallery = _labels(chain.split, "gallery")
    row_of = {str(i): r for r, i in enumerate(gallery_df["image_id"])}
    unknown = 0
    for results, target, first in zip(per_query["results"], per_query["target"], per_query["first_hit_rank"],
                                      strict=True):
        result_labels = gallery[[row_of[str(r)] for r in results]]
        hits = np.flatnonzero((result_labels == np.asarray(target)[None, :]).all(1))  # -1 never equals a value
        assert first == (hits[0] + 1 if len(hits) else -1)
        unknown += int((result_labels == -1).any(1).sum())
    assert unknown > 0  # ranked results with a missing label: the rule is exercised
    payload = json.loads((ev / "metrics.json").read_text())
    mine = rescore.rescore(rescore.read_truth(chain.dataset), ev)
    assert {"top1", "top20", "ndcg20"} <= set(mine)
    for key, value in mine.items():
        assert value == pytest.approx(payload["metrics"][key], abs=1e-12), key
