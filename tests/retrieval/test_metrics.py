"""Retrieval metrics (paper §5.1): exact-match hits, top-k accuracy, relevance and NDCG@k."""

import math

import numpy as np
import pytest

from amnet.retrieval.metrics import (
    exact_match,
    ndcg_at_k,
    per_attribute_topk,
    relevance,
    summarize,
    topk_accuracy,
)

TARGET = np.array([[1, 2, 0]])


def test_exact_match_requires_every_attribute():
    results = np.array([[[1, 2, 0], [1, 2, 1], [0, 0, 0]]])  # exact, one attribute off, all off
    assert exact_match(results, TARGET).tolist() == [[True, False, False]]


def test_missing_target_attribute_is_ignored():
    target = np.array([[1, -1, 0]])
    results = np.array([[[1, 5, 0], [1, -1, 0], [1, 5, 1]]])
    assert exact_match(results, target).tolist() == [[True, True, False]]
    assert relevance(results, target).tolist() == [[1.0, 1.0, 0.5]]


def test_missing_result_label_does_not_match():
    results = np.array([[[1, -1, 0], [-1, -1, -1]]])
    assert exact_match(results, TARGET).tolist() == [[False, False]]
    np.testing.assert_allclose(relevance(results, TARGET), [[2 / 3, 0.0]])


def test_target_with_nothing_known_is_rejected():
    with pytest.raises(ValueError, match="every attribute missing"):
        exact_match(np.zeros((1, 2, 3), int), np.full((1, 3), -1))


def test_relevance_counts_matched_attributes():
    results = np.array([[[1, 2, 0], [1, 2, 1], [1, 0, 1], [0, 0, 1]]])
    np.testing.assert_allclose(relevance(results, TARGET), [[1.0, 2 / 3, 1 / 3, 0.0]])


def test_topk_hit_rule_and_monotone_in_k():
    hits = np.array(
        [
            [True, False, False, False],  # hit at rank 1
            [False, False, True, False],  # hit at rank 3
            [False, False, False, False],  # never
            [False, False, False, True],  # hit at rank 4
        ]
    )
    acc = topk_accuracy(hits, [1, 2, 3, 4])
    assert acc == {1: 0.25, 2: 0.25, 3: 0.5, 4: 0.75}
    rng = np.random.default_rng(0)
    random_hits = rng.random((200, 50)) < 0.02
    values = list(topk_accuracy(random_hits, range(1, 51)).values())
    assert all(a <= b for a, b in zip(values[:-1], values[1:], strict=True))


def test_k_larger_than_available_raises():
    hits = np.zeros((3, 5), bool)
    with pytest.raises(ValueError, match="k=6"):
        topk_accuracy(hits, [1, 6])
    with pytest.raises(ValueError, match="k=6"):
        ndcg_at_k(np.zeros((3, 5)), 6)
    with pytest.raises(ValueError, match="k=10"):
        summarize(hits, np.zeros((3, 5)))


def test_ndcg_hand_computed():
    # rel = (1, 0, 0.5): gains 2^rel - 1 = (1, 0, sqrt(2) - 1); discounts 1/log2(2), 1/log2(3), 1/log2(4)
    rel = np.array([[1.0, 0.0, 0.5]])
    dcg = 1.0 / 1.0 + 0.0 + (math.sqrt(2) - 1) / 2.0
    z = 1.0 / 1.0 + 1.0 / math.log2(3) + 1.0 / 2.0  # k fully relevant results
    np.testing.assert_allclose(ndcg_at_k(rel, 3), [dcg / z])
    np.testing.assert_allclose(ndcg_at_k(rel, 1), [1.0])


def test_ndcg_bounds_and_rank_order():
    assert ndcg_at_k(np.ones((2, 4)), 4).tolist() == [1.0, 1.0]
    assert ndcg_at_k(np.zeros((1, 4)), 4).tolist() == [0.0]
    better, worse = ndcg_at_k(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), 3)
    assert better > worse


def test_summarize_keys_and_values():
    hits = np.array([[False, True, False], [False, False, False]])
    rel = np.array([[0.5, 1.0, 0.5], [0.0, 0.0, 0.0]])
    out = summarize(hits, rel, ks=(1, 2, 3), ndcg_ks=(2,))
    assert list(out) == ["top1", "top2", "top3", "ndcg2"]
    assert out["top1"] == 0.0 and out["top2"] == 0.5 and out["top3"] == 0.5
    assert out["ndcg2"] == pytest.approx(ndcg_at_k(rel, 2).mean())


def test_per_attribute_topk_groups_by_changed_attribute():
    hits = np.array([[True, False], [False, False], [False, True], [False, False]])
    changed = [[0], [0], [1, 2], [2]]
    names = ["color", "collar", "sleeve", "unused"]
    assert per_attribute_topk(hits, changed, names, k=2) == {"color": 0.5, "collar": 1.0, "sleeve": 0.5}
    assert per_attribute_topk(hits, changed, names, k=1) == {"color": 0.5, "collar": 0.0, "sleeve": 0.0}


# ---------------------------------------------------------------- the metrics tell a trained model apart


def test_a_trained_model_beats_an_untrained_one_of_the_same_config(searchable_chain, tmp_path, monkeypatch):
    """Top-20 accuracy and NDCG@20 of ``searchable_chain``'s model and of a randomly initialised AMNet of the
    same config (same vocabulary, architecture and retrieval space; random memory), featurized and evaluated
    by the same stages on the same queries. Seeds 0-4 of the chain gave a top-20 lead of 0.275-0.425 and an
    NDCG@20 lead of 0.097-0.12; a metric that scored both alike, or a training that learnt nothing, fails."""
    import json

    import torch

    from amnet import config as cfgmod
    from amnet.config import ModelConfig
    from amnet.data.schema import Vocabulary
    from amnet.model_store import build_model, load_model_payload, save_model
    from amnet.steps import evaluate, featurize

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    split = str(searchable_chain.split)
    payload = load_model_payload(str(searchable_chain.model))
    vocab = Vocabulary.from_json(payload["vocab"])
    model_cfg = cfgmod.from_dict(ModelConfig, payload["model_config"])
    torch.manual_seed(0)
    random_net = build_model("amnet", payload["variant"], model_cfg, vocab,
                             torch.randn(vocab.total_values, model_cfg.feature_dim), payload["extra"]["architecture"])
    untrained = tmp_path / "untrained"
    save_model(str(untrained), "amnet", payload["variant"], random_net, payload["model_config"], payload["vocab"],
               payload["extra"])
    metrics = {}
    for name, model in (("trained", str(searchable_chain.model)), ("untrained", str(untrained))):
        feats, out = tmp_path / f"{name}-feats", tmp_path / f"{name}-eval"
        featurize.run_step(split, model, str(feats), progress=False)
        evaluate.run_step(split, model, str(feats), str(out), progress=False)
        metrics[name] = json.loads((out / "metrics.json").read_text())["metrics"]
    shown = {name: {k: round(m[k], 3) for k in ("top20", "ndcg20", "two_top20")} for name, m in metrics.items()}
    print("trained vs untrained:", shown)
    trained, random_ = metrics["trained"], metrics["untrained"]
    assert trained["top20"] >= random_["top20"] + 0.15, shown
    assert trained["ndcg20"] >= random_["ndcg20"] + 0.05, shown
