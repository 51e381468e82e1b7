"""AMNet's equations (Zhao et al., CVPR 2017, §3) checked numerically on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from amnet.config import ModelConfig
from amnet.errors import ConfigError
from amnet.models import (
    AMNet,
    AttributeCNN,
    Manipulator,
    MemoryBlock,
    amnet_loss,
    attribute_loss,
    build_backbone,
    classification_loss,
    indicator_from_targets,
    load_initial_weights,
    make_indicator,
    predict_labels,
    triplet_ranking_loss,
)

SIZES = [3, 2, 4]  # C_m; C = 9
OFFSETS = [0, 3, 5]
C, Q = 9, 8


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_backbone(q: int = Q) -> torch.nn.Module:
    return build_backbone(ModelConfig(backbone="small", image_size=32, feature_dim=q, width=4))


# --- Eq. 1: t = sum_i h'(i) M(i, :) -------------------------------------------------------------


def test_eq1_one_value_reads_its_row():
    mem = MemoryBlock(C, Q, torch.arange(C * Q, dtype=torch.float32).view(C, Q))
    h = make_indicator([[(1, 1)]], OFFSETS, C)  # attribute 1, value 1 -> row 4
    assert h.tolist() == [[0, 0, 0, 0, 1, 0, 0, 0, 0]]
    torch.testing.assert_close(mem(h), mem.memory[4:5])


def test_eq1_two_values_read_the_mean_of_their_rows():
    mem = MemoryBlock(C, Q, torch.randn(C, Q))
    h = make_indicator([[(0, 2), (2, 3)], [(1, 0)]], OFFSETS, C)  # rows 2 and 8; row 3
    t = mem(h)
    assert t.shape == (2, Q)
    torch.testing.assert_close(t[0], (mem.memory[2] + mem.memory[8]) / 2)
    torch.testing.assert_close(t[1], mem.memory[3])


def test_eq1_empty_indicator_gives_zeros_not_nan():
    mem = MemoryBlock(C, Q, torch.randn(C, Q))
    h = torch.zeros(2, C)
    h[1, 0] = 1
    t = mem(h)
    assert torch.isfinite(t).all()
    assert (t[0] == 0).all()
    t.sum().backward()
    assert torch.isfinite(mem.memory.grad).all()


def test_indicator_from_targets_matches_make_indicator():
    target = torch.tensor([[2, 0, 3], [1, 0, -1]], dtype=torch.int16)
    changed = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.int8)
    expected = make_indicator([[(0, 2), (2, 3)], [(1, 0)]], OFFSETS, C)
    torch.testing.assert_close(indicator_from_targets(target, changed, OFFSETS, C), expected)


# --- Eq. 2: dM = h' dt^T, only addressed rows ---------------------------------------------------


def test_eq2_gradient_only_on_addressed_rows():
    mem = MemoryBlock(C, Q, torch.randn(C, Q))
    h = make_indicator([[(0, 2), (2, 3)]], OFFSETS, C)  # rows 2 and 8, h' = 1/2 each
    grad_t = torch.randn(1, Q)
    mem(h).backward(grad_t)
    expected = torch.zeros(C, Q)
    expected[2] = 0.5 * grad_t[0]
    expected[8] = 0.5 * grad_t[0]
    torch.testing.assert_close(mem.memory.grad, expected)
    untouched = [i for i in range(C) if i not in (2, 8)]
    assert (mem.memory.grad[untouched] == 0).all()  # exactly zero


# --- Eq. 3: r' = W (r, t) + b --------------------------------------------------------------------


def test_eq3_shape_and_identity_init():
    manip = Manipulator(Q, 5)
    r, t = torch.randn(4, Q), torch.randn(4, 5)
    r2 = manip(r, t)
    assert r2.shape == (4, Q)
    torch.testing.assert_close(r2, r, atol=0.1, rtol=0)  # r' ~ r at start
    torch.testing.assert_close(manip(r, torch.zeros(4, 5)), r)  # exactly r when t = 0
    assert manip.fc.weight[:, Q:].abs().max() > 0  # t block nonzero: the memory gets a gradient


def test_eq3_is_a_linear_layer_on_the_concatenation():
    manip = Manipulator(Q, 5, identity_init=False)
    r, t = torch.randn(3, Q), torch.randn(3, 5)
    torch.testing.assert_close(manip(r, t), torch.cat([r, t], 1) @ manip.fc.weight.T + manip.fc.bias)
    assert not torch.allclose(manip(r, t), r, atol=0.1)


# --- Eq. 4: softmax loss on the desired attributes, -1 ignored -----------------------------------


def test_eq4_ignores_missing_labels():
    logits = [torch.randn(3, c) for c in SIZES]
    labels = torch.tensor([[0, 1, 3], [2, -1, 0], [-1, -1, 1]])
    expected = (
        torch.nn.functional.cross_entropy(logits[0][:2], labels[:2, 0])
        + torch.nn.functional.cross_entropy(logits[1][:1], labels[:1, 1])
        + torch.nn.functional.cross_entropy(logits[2], labels[:, 2])
    )
    torch.testing.assert_close(classification_loss(logits, labels), expected)
    # a missing label's logits do not matter
    logits[1][1:] = 1e3
    torch.testing.assert_close(classification_loss(logits, labels), expected)


def test_eq4_all_missing_column_adds_zero_without_nan():
    logits = [torch.randn(2, c, requires_grad=True) for c in SIZES]
    labels = torch.tensor([[0, -1, 1], [1, -1, 2]], dtype=torch.int16)
    loss = attribute_loss(logits, labels)
    expected = torch.nn.functional.cross_entropy(logits[0], labels[:, 0].long())
    expected = expected + torch.nn.functional.cross_entropy(logits[2], labels[:, 2].long())
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert (logits[1].grad == 0).all()
    assert torch.isfinite(attribute_loss(logits, torch.full((2, 3), -1))).all()


# --- Eq. 5: max(0, d(r', p) - d(r', n) + m), Euclidean d ----------------------------------------


def test_eq5_zero_when_negative_far_enough():
    a = torch.tensor([[0.0, 0.0]])
    p = torch.tensor([[1.0, 0.0]])  # d = 1
    n = torch.tensor([[0.0, 2.0]])  # d = 2 >= 1 + 0.5
    assert triplet_ranking_loss(a, p, n, margin=0.5).item() == pytest.approx(0.0, abs=1e-6)


def test_eq5_hand_computed_and_linear():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # d = 5, 1
    n = torch.tensor([[1.0, 0.0], [0.0, 3.0]])  # d = 1, 3
    # triplet 1: 5 - 1 + 0.5 = 4.5 ; triplet 2: 1 - 3 + 0.5 < 0 -> 0 ; mean = 2.25
    assert triplet_ranking_loss(a, p, n, margin=0.5).item() == pytest.approx(2.25, abs=1e-5)
    # linear in the violation: moving pos 1 further by 1 adds 1 (then /2 for the mean)
    p2 = torch.tensor([[3.6, 4.8], [1.0, 0.0]])  # d = 6
    assert triplet_ranking_loss(a, p2, n, margin=0.5).item() == pytest.approx(2.75, abs=1e-5)
    assert triplet_ranking_loss(a, p, n, margin=1.5).item() == pytest.approx(2.75, abs=1e-5)


def test_eq5_identical_features_have_finite_gradient():
    a = torch.zeros(2, 4, requires_grad=True)
    loss = triplet_ranking_loss(a, a.detach().clone(), torch.ones(2, 4))
    loss.backward()
    assert torch.isfinite(a.grad).all()


# --- Eq. 6: L = lam La + (1 - lam) Lt ------------------------------------------------------------


def test_eq6_weighting():
    la, lt = torch.tensor(2.0), torch.tensor(10.0)
    assert amnet_loss(la, lt, 1.0).item() == 2.0
    assert amnet_loss(la, lt, 0.0).item() == 10.0
    assert amnet_loss(la, lt, 0.2).item() == pytest.approx(0.2 * 2 + 0.8 * 10)


# --- the networks -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["amnet", "no_memory", "no_ranking"])
def test_amnet_forward_shapes(variant):
    model = AMNet(tiny_backbone(), Q, SIZES, torch.randn(C, Q), variant)
    b = 3
    ref, pos, neg = (torch.randn(b, 3, 32, 32) for _ in range(3))
    h = make_indicator([[(0, 1)], [(1, 0), (2, 2)], [(2, 3)]], OFFSETS, C)
    out = model(ref, h, pos, neg)
    assert out["r_manip"].shape == out["pos"].shape == out["neg"].shape == (b, Q)
    assert [lg.shape for lg in out["logits"]] == [(b, c) for c in SIZES]
    names = dict(model.named_parameters())
    if variant == "no_memory":
        assert model.memory is None and not any("memory" in k for k in names)
        assert model.manipulator.fc.in_features == Q + C
    else:
        assert names["memory.memory"].shape == (C, Q)
        assert model.manipulator.fc.in_features == 2 * Q
    loss = amnet_loss(
        classification_loss(out["logits"], torch.tensor([[1, 0, -1], [0, 0, 2], [2, 1, 3]])),
        triplet_ranking_loss(out["r_manip"], out["pos"], out["neg"]),
        0.2,
    )
    loss.backward()
    assert model.backbone.fc[0].weight.grad is not None
    model.eval()
    torch.testing.assert_close(model.query_vector(ref, h), model.manipulate(model.represent(ref), h))


def test_amnet_starts_from_attribute_cnn_weights():
    cnn = AttributeCNN(tiny_backbone(), Q, SIZES)
    model = AMNet(tiny_backbone(), Q, SIZES, None, "amnet")
    report = load_initial_weights(model, cnn.state_dict())
    assert not report.unexpected and not report.mismatched
    assert sorted(report.missing) == ["manipulator.fc.bias", "manipulator.fc.weight", "memory.memory"]
    torch.testing.assert_close(model.heads[0].weight, cnn.heads[0].weight)
    only_backbone = load_initial_weights(tiny_backbone(), cnn.state_dict(), prefix="backbone.")
    assert not only_backbone.missing and not only_backbone.unexpected
    wrong = load_initial_weights(tiny_backbone(Q + 1), cnn.state_dict(), prefix="backbone.")
    assert wrong.mismatched and "mismatched" in str(wrong)


def test_attribute_cnn_forward_and_loss():
    cnn = AttributeCNN(tiny_backbone(), Q, SIZES)
    r, logits = cnn(torch.randn(4, 3, 32, 32))
    assert r.shape == (4, Q) and [lg.shape for lg in logits] == [(4, c) for c in SIZES]
    labels = torch.tensor([[0, 1, 3], [2, -1, 0], [1, -1, 1], [0, -1, -1]])
    attribute_loss(logits, labels).backward()
    assert torch.isfinite(cnn.heads[1].weight.grad).all()
    assert predict_labels(logits).shape == (4, 3)


def test_small_backbone_64px():
    net = build_backbone(ModelConfig(backbone="small", image_size=64, feature_dim=32, width=8))
    out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 32) and net.out_dim == 32 and (out >= 0).all()
    assert net(torch.randn(2, 3, 37, 45)).shape == (2, 32)  # any size >= 32


def test_alexnet_fc7_is_4096():
    net = build_backbone(ModelConfig(backbone="alexnet", image_size=64, feature_dim=4096)).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 64, 64)).shape == (1, 4096)
    assert isinstance(net.proj, torch.nn.Identity)
    names = set(net.state_dict())
    assert {"features.0.weight", "classifier.1.weight", "classifier.4.weight"} <= names  # torchvision names
    with pytest.raises(ConfigError):
        build_backbone(ModelConfig(backbone="alexnet", image_size=48, feature_dim=4096))


def test_resnet18_projects_to_q():
    net = build_backbone(ModelConfig(backbone="resnet18", image_size=32, feature_dim=16)).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 16)
    assert net.out_dim == 16 and "layer4.1.conv2.weight" in net.state_dict()


def test_manipulator_t_scale_is_small():
    manip = Manipulator(4, 4, t_scale=0.01)
    assert manip.fc.weight[:, 4:].std().item() < 0.05
    assert math.isclose(manip.fc.weight[:, :4].trace().item(), 4.0)
