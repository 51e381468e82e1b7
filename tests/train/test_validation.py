"""Validation during training: metrics per epoch on the validation queries, the best epoch kept, and
training itself unchanged by validating."""

from __future__ import annotations

import os

import pytest
import torch

from amnet.model_store import load_model
from amnet.retrieval.validation import VAL_METRICS, Validator
from amnet.steps import train
from amnet.train.amnet_train import SELECTION_METRICS

pytestmark = pytest.mark.slow

CFG = {"epochs": 3, "steps_per_epoch": 6, "batch_size": 16}


def _train(chain, out, **extra) -> dict:
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        return train.run_step(str(chain.split), str(chain.attr), str(chain.protos), str(out), "amnet",
                              {**CFG, **extra}, progress=False)
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def test_every_epoch_is_scored_and_validating_changes_nothing(searchable_chain, tmp_path):
    quiet = _train(searchable_chain, tmp_path / "off", val_each_epoch=False)
    scored = _train(searchable_chain, tmp_path / "on", val_each_epoch=True)
    history = load_model(str(tmp_path / "on")).extra["history"]
    assert len(history) == CFG["epochs"]
    for row in history:
        assert {"val_top1", "val_top20"} <= set(row)
        assert all(0.0 <= row[m] <= 1.0 for m in VAL_METRICS if m in row)
    assert "val_top1" not in load_model(str(tmp_path / "off")).extra["history"][0]
    assert scored["loss"] == quiet["loss"]  # the same steps: validation draws no random numbers
    a, b = (load_model(str(tmp_path / d)).model.state_dict() for d in ("off", "on"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_keep_best_keeps_the_epoch_validation_prefers(searchable_chain, tmp_path):
    result = _train(searchable_chain, tmp_path / "best", val_each_epoch=True, keep="best")
    history = load_model(str(tmp_path / "best")).extra["history"]
    metric = next(m for m in SELECTION_METRICS if m in history[0])
    scores = [row[metric] for row in history]
    assert result["kept_epoch"] == scores.index(max(scores)) + 1  # the first of equal scores
    kept = load_model(str(tmp_path / "best"))
    validator = Validator.of(str(searchable_chain.split))
    assert validator is not None
    again = validator.score(kept.model, torch.device("cpu"), kept.model_config.image_size)
    assert again[metric] == pytest.approx(max(scores))  # the saved weights are the kept epoch's


def test_scores_are_the_same_streamed_or_from_the_decoded_cache(searchable_chain, monkeypatch):
    from amnet.retrieval import validation

    kept = load_model(str(searchable_chain.model))
    size = kept.model_config.image_size
    cached = Validator.of(str(searchable_chain.split))
    first, second = (cached.score(kept.model, torch.device("cpu"), size) for _ in range(2))
    assert cached._gallery_cache is not None  # a tiny gallery stays decoded between epochs
    monkeypatch.setattr(validation, "DECODED_CACHE_BYTES", 0)
    streamed = Validator.of(str(searchable_chain.split))
    assert streamed.score(kept.model, torch.device("cpu"), size) == first == second
    assert streamed._gallery_cache is None
