"""Training options beyond the paper, each on tiny tensors.

The defaults are *not* all the paper's: ``TrainConfig`` trains with batch-hard negatives, Eq. 4 on the
positive and negative images too, flips, half the negatives one attribute away, margin 1, λ 0.5 and
retrieval in the attribute space (each deviation named in ``amnet.config``). ``preset=paper`` puts every
one of them back at the paper's value; ``test_defaults_differ_from_the_paper_exactly_where_the_preset_says``
pins which defaults deviate, ``test_paper_preset_is_one_override_away`` what the preset restores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amnet import config as cfgmod
from amnet import names
from amnet.config import ModelConfig, TrainConfig
from amnet.data.triplets import TripletBatch
from amnet.errors import ConfigError
from amnet.models import (
    AMNet,
    Manipulator,
    MemoryBlock,
    losses,
    make_indicator,
    manipulator,
    memory,
    triplet_ranking_loss,
)
from amnet.models import amnet as amnet_model
from amnet.models.losses import mined_ranking_loss
from amnet.retrieval import index
from amnet.train.amnet_train import TrainOptions, optimizer, train_step
from tests.models.test_equations import OFFSETS, SIZES, C, Q, _seed, tiny_backbone  # noqa: F401 (_seed: autouse fixture)


def tiny_amnet(**arch) -> AMNet:
    return AMNet(tiny_backbone(), Q, SIZES, torch.rand(C, Q), "amnet", **arch)


# --- config ---------------------------------------------------------------------------------------


def test_choices_are_defined_once_in_names():
    """config.py (no torch) and the model layer check the very same tuples, from amnet.names."""
    assert cfgmod.NEGATIVE_MINING is losses.NEGATIVE_MINING is names.NEGATIVE_MINING
    assert cfgmod.MEMORY_READS is memory.MEMORY_READS is names.MEMORY_READS
    assert cfgmod.ACTIVATIONS is manipulator.ACTIVATIONS is names.ACTIVATIONS
    assert cfgmod.RETRIEVAL_SPACES is amnet_model.RETRIEVAL_SPACES is names.RETRIEVAL_SPACES
    assert cfgmod.INDEX_KINDS is index.INDEX_KINDS is names.INDEX_KINDS
    assert cfgmod.QUERY_SETS is names.QUERY_SETS and names.QUERY_SHARDS == {"test": "queries", "val": "val_queries"}


def test_paper_preset_is_one_override_away():
    paper = cfgmod.load(TrainConfig, overrides=["preset=paper"])
    assert (paper.negatives, paper.classify_pos_neg, paper.flip, paper.manipulator_lr_mult,
            paper.memory_read, paper.manipulator_activation, paper.hard_negative_fraction, paper.margin,
            paper.lam, paper.retrieval) == ("sampled", False, False, 1.0, "mean", "none", 0.0, 0.5, 0.2,
                                            "representation")
    assert paper.architecture == {"memory_read": "mean", "activation": "none", "retrieval": "representation"}
    # the preset wins over values given beside it, e.g. by the demo's run file
    assert cfgmod.load(TrainConfig, overrides=["preset=paper", "flip=true", "lr=0.3"]) == TrainConfig(
        **{**cfgmod.to_dict(paper), "lr": 0.3})


def test_defaults_differ_from_the_paper_exactly_where_the_preset_says():
    """Every option the paper preset sets, except the paper's own mean memory read, no activation after
    Eq. 3, learning-rate multiplier 1 and ranking in the representation space, has a non-paper default."""
    defaults, paper = cfgmod.to_dict(TrainConfig()), cfgmod.TRAIN_PRESETS["paper"]
    deviating = {k for k, v in paper.items() if defaults[k] != v}
    assert deviating == {"negatives", "classify_pos_neg", "flip", "hard_negative_fraction", "margin", "lam",
                         "retrieval", "group_positives"}, deviating
    assert (defaults["negatives"], defaults["retrieval"], defaults["group_positives"]) == ("batch_hard", "combined",
                                                                                          0.5)


def test_demo_run_file_writes_out_the_defaults():
    """configs/demo.yaml's train section is today's TrainConfig defaults, written out (its header says so)."""
    from pathlib import Path

    demo = cfgmod.read_yaml(str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"))
    defaults = cfgmod.to_dict(TrainConfig())
    assert {k: defaults[k] for k in demo["train"]} == demo["train"]
    assert demo["pretrain"]["epochs"] == cfgmod.PretrainConfig().epochs


def test_paper_run_file_trains_with_the_papers_options():
    from pathlib import Path

    paper = cfgmod.read_yaml(str(Path(__file__).resolve().parents[2] / "configs" / "paper-alexnet.yaml"))
    train = cfgmod.from_dict(TrainConfig, paper["train"])
    assert (train.negatives, train.classify_pos_neg, train.flip, train.margin, train.hard_negative_fraction) == (
        "sampled", False, False, 0.5, 0.0)


@pytest.mark.parametrize("bad", ["negatives=hardest", "memory_read=max", "manipulator_activation=tanh",
                                 "manipulator_lr_mult=0", "preset=fast",
                                 "retrieval=logits"])
def test_bad_option_values_are_refused(bad):
    with pytest.raises(ConfigError):
        cfgmod.load(TrainConfig, overrides=[bad])


# --- negatives mined in the batch (Eq. 5 variant) -------------------------------------------------


def test_batch_hard_takes_the_closest_legal_negative():
    anchor = torch.tensor([[0.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0]])  # d_pos = 1
    cands = torch.tensor([[0.5, 0.0], [0.0, 2.0], [0.0, 0.2]])  # d = 0.5, 2, 0.2
    valid = torch.tensor([[True, True, False]])  # candidate 2 has the target's attributes: not a negative
    loss = mined_ranking_loss(anchor, pos, cands, valid, margin=0.5, mode="batch_hard")
    assert loss.item() == pytest.approx(1.0 - 0.5 + 0.5, abs=1e-5)


def test_semi_hard_takes_the_closest_negative_beyond_the_positive():
    anchor = torch.tensor([[0.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0]])  # d_pos = 1
    cands = torch.tensor([[0.5, 0.0], [0.0, 1.2], [0.0, 3.0]])  # d = 0.5 (too hard), 1.2, 3
    valid = torch.ones(1, 3, dtype=torch.bool)
    loss = mined_ranking_loss(anchor, pos, cands, valid, margin=0.5, mode="semi_hard")
    assert loss.item() == pytest.approx(1.0 - 1.2 + 0.5, abs=1e-5)
    # none beyond the positive: the hardest overall
    near = mined_ranking_loss(anchor, pos, cands[:1], valid[:, :1], margin=0.5, mode="semi_hard")
    assert near.item() == pytest.approx(1.0 - 0.5 + 0.5, abs=1e-5)


def test_mined_loss_skips_anchors_without_negatives_and_has_gradients():
    anchor = torch.randn(2, Q, requires_grad=True)
    pos, cands = torch.randn(2, Q), torch.randn(5, Q, requires_grad=True)
    valid = torch.tensor([[False] * 5, [True, False, True, False, False]])
    loss = mined_ranking_loss(anchor, pos, cands, valid, margin=100.0, mode="batch_hard")
    d_pos = (anchor[1] - pos[1]).norm()
    d_neg = torch.stack([(anchor[1] - cands[j]).norm() for j in (0, 2)]).min()
    assert loss.item() == pytest.approx((d_pos - d_neg + 100.0).item(), rel=1e-5)  # the mean over 1 anchor
    loss.backward()
    assert anchor.grad[0].abs().sum() == 0 and anchor.grad[1].abs().sum() > 0
    assert torch.isfinite(cands.grad).all()


def test_mined_equals_sampled_when_the_own_negative_is_the_only_legal_one():
    anchor, pos, neg = torch.randn(3, Q), torch.randn(3, Q), torch.randn(3, Q)
    valid = torch.eye(3, dtype=torch.bool)  # candidate i = anchor i's own negative
    torch.testing.assert_close(mined_ranking_loss(anchor, pos, neg, valid, 0.5, "batch_hard"),
                               triplet_ranking_loss(anchor, pos, neg, 0.5))


# --- memory read and manipulator activation --------------------------------------------------------


def test_summed_read_adds_whole_prototypes():
    mem = MemoryBlock(C, Q, torch.randn(C, Q), read="sum")
    h = make_indicator([[(0, 2), (2, 3)], [(1, 0)]], OFFSETS, C)
    t = mem(h)
    torch.testing.assert_close(t[0], mem.memory[2] + mem.memory[8])
    torch.testing.assert_close(t[1], mem.memory[3])  # one change: the same as the mean read


def test_relu_after_eq3_makes_r_prime_non_negative():
    m = Manipulator(Q, Q, identity_init=False, activation="relu")
    r, t = torch.randn(4, Q), torch.randn(4, Q)
    torch.testing.assert_close(m(r, t), torch.relu(m.fc(torch.cat([r, t], 1))))
    assert (m(r, t) >= 0).all()


def test_architecture_round_trips_through_the_model_file(tmp_path):
    from amnet.data.schema import Vocabulary
    from amnet.model_store import load_model, save_model

    vocab = Vocabulary.from_json('{"attributes": [{"name": "a", "values": ["x", "y", "z"]}, '
                                 '{"name": "b", "values": ["p", "q"]}, '
                                 '{"name": "c", "values": ["1", "2", "3", "4"]}]}')
    cfg = TrainConfig(memory_read="sum", manipulator_activation="relu", retrieval="attributes")
    model = tiny_amnet(**cfg.architecture)
    save_model(str(tmp_path), "amnet", "amnet", model, cfgmod.to_dict(ModelConfig(image_size=32, feature_dim=Q,
               width=4)), vocab.to_json(), extra={"architecture": cfg.architecture})
    loaded = load_model(str(tmp_path))
    assert loaded.model.memory.read == "sum" and loaded.model.manipulator.activation == "relu"
    assert loaded.model.retrieval == "attributes" and loaded.retrieval_dim == C


# --- the retrieval space ---------------------------------------------------------------------------


def test_attribute_retrieval_compares_the_branches_softmax_outputs():
    """retrieval=attributes: gallery and query vectors are the per-attribute softmax of the attribute
    branches on r and on r' (each block sums to 1); representation: r and r' themselves (the paper)."""
    model = tiny_amnet(retrieval="attributes").eval()
    x, h = torch.rand(3, 3, 32, 32), make_indicator([[(0, 1)], [(1, 0), (2, 3)], []], OFFSETS, C)
    g, q = model.gallery_vector(x), model.query_vector(x, h)
    assert g.shape == q.shape == (3, C) == (3, model.retrieval_dim)
    r_manip = model.manipulate(model.represent(x), h)
    expected = torch.cat([lg.softmax(1) for lg in model.classify(r_manip)], 1)
    torch.testing.assert_close(q, expected)
    for block in torch.split(g, SIZES, dim=1):
        torch.testing.assert_close(block.sum(1), torch.ones(3))
    paper = tiny_amnet(retrieval="representation").eval()
    paper.load_state_dict(model.state_dict())
    assert paper.retrieval_dim == Q
    torch.testing.assert_close(paper.gallery_vector(x), model.represent(x))
    torch.testing.assert_close(paper.query_vector(x, h), r_manip)
    with pytest.raises(ValueError, match="retrieval space"):
        tiny_amnet(retrieval="logits")


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_combined_retrieval_weighs_attribute_and_unit_representation_distances(w):
    """retrieval=combined: |q - g|^2 = w |p' - p|^2 / M + (1 - w) |r'/|r'| - r/|r||^2, one vector per image."""
    model = tiny_amnet(retrieval="combined", retrieval_weight=w).eval()
    x, h = torch.rand(3, 3, 32, 32), make_indicator([[(0, 1)], [(1, 0), (2, 3)], []], OFFSETS, C)
    g, q = model.gallery_vector(x), model.query_vector(x, h)
    assert g.shape == q.shape == (3, C + Q) == (3, model.retrieval_dim)
    r, r_manip = model.represent(x), model.manipulate(model.represent(x), h)
    probs = [torch.cat([lg.softmax(1) for lg in model.classify(v)], 1) for v in (r, r_manip)]
    unit = [torch.nn.functional.normalize(v, dim=1) for v in (r, r_manip)]
    expected = (w * torch.cdist(probs[1], probs[0]) ** 2 / len(SIZES)
                + (1 - w) * torch.cdist(unit[1], unit[0]) ** 2)
    torch.testing.assert_close(torch.cdist(q, g) ** 2, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="retrieval_weight"):
        tiny_amnet(retrieval="combined", retrieval_weight=1.5)


def test_combined_weight_round_trips_through_the_model_file(tmp_path):
    from amnet.data.schema import Vocabulary
    from amnet.model_store import load_model, save_model

    vocab = Vocabulary.from_json('{"attributes": [{"name": "a", "values": ["x", "y", "z"]}, '
                                 '{"name": "b", "values": ["p", "q"]}, '
                                 '{"name": "c", "values": ["1", "2", "3", "4"]}]}')
    cfg = TrainConfig(retrieval="combined", retrieval_weight=0.2)
    assert cfg.architecture["retrieval_weight"] == 0.2
    model = tiny_amnet(**cfg.architecture)
    save_model(str(tmp_path), "amnet", "amnet", model, cfgmod.to_dict(ModelConfig(image_size=32, feature_dim=Q,
               width=4)), vocab.to_json(), extra={"architecture": cfg.architecture})
    loaded = load_model(str(tmp_path))
    assert loaded.model.retrieval == "combined" and loaded.model.retrieval_weight == 0.2
    assert loaded.retrieval_dim == C + Q
    assert "retrieval_weight" not in TrainConfig(retrieval="attributes").architecture  # older files unchanged


# --- the training step and optimiser ---------------------------------------------------------------


def test_manipulator_lr_mult_gives_memory_and_manipulator_their_own_rate():
    model = tiny_amnet()
    opt = optimizer(model, TrainConfig(lr=0.01, manipulator_lr_mult=10.0))
    rate = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rate[id(model.memory.memory)] == rate[id(model.manipulator.fc.weight)] == pytest.approx(0.1)
    assert rate[id(model.backbone.fc[0].weight)] == rate[id(model.heads[0].weight)] == pytest.approx(0.01)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    paper = optimizer(model, TrainConfig(lr=0.01))
    assert {g["lr"] for g in paper.param_groups} == {0.01}


@pytest.mark.parametrize("options", [
    TrainOptions(),
    TrainOptions(negatives="batch_hard", classify_pos_neg=True, flip=True),
    TrainOptions(negatives="semi_hard"),
])
def test_train_step_runs_each_option_and_moves_the_memory(options):
    model = tiny_amnet()
    labels = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [2, 1, 3], [1, 1, 1]])  # (N=6, M=3)
    images = torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8)
    batch = TripletBatch(ref=np.array([0, 0]), pos=np.array([1, 2]), neg=np.array([4, 5]),
                         target=np.array([[1, 0, 0], [0, 1, 0]]), changes=[[(0, 1)], [(1, 1)]])
    before = model.memory.memory.detach().clone()
    opt = optimizer(model, TrainConfig(lr=0.1))
    out = train_step(model, opt, images, batch, OFFSETS, C, 0.2, 0.5, torch.device("cpu"), labels=labels,
                     options=options)
    assert out.shape == (4,) and torch.isfinite(out).all()
    moved = (model.memory.memory.detach() - before).abs().sum(1)  # (C,)
    assert moved[1] > 0 and moved[4] > 0  # the addressed rows (Eq. 2) ...
    assert moved[0] == 0 and moved[8] == 0  # ... and no other


def test_ranking_space_retrieval_measures_eq5_between_the_searched_vectors():
    """ranking_space=retrieval: Eq. 5 on the attribute outputs of r', pos and neg, not on r' and r."""
    from amnet.data.tensors import to_input

    model = tiny_amnet(retrieval="attributes")
    images = torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8)
    batch = TripletBatch(ref=np.array([0, 0]), pos=np.array([1, 2]), neg=np.array([4, 5]),
                         target=np.array([[1, 0, 0], [0, 1, 0]]), changes=[[(0, 1)], [(1, 1)]])
    x = to_input(images[torch.tensor([0, 0, 1, 2, 4, 5])], torch.device("cpu"))
    h = make_indicator(batch.changes, OFFSETS, C)
    with torch.no_grad():
        out = model(x[:2], h, x[2:4], x[4:])
        expected = triplet_ranking_loss(model.embed(out["r_manip"]), model.embed(out["pos"]),
                                        model.embed(out["neg"]), 0.5)
        paper = triplet_ranking_loss(out["r_manip"], out["pos"], out["neg"], 0.5)
    got = train_step(model, optimizer(model, TrainConfig(lr=0.1)), images, batch, OFFSETS, C, 0.2, 0.5,
                     torch.device("cpu"), options=TrainOptions(ranking_space="retrieval"))
    torch.testing.assert_close(got[2], expected)
    assert not torch.isclose(got[2], paper)
