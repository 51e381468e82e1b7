"""The current champion scored on this run's evaluation data, as a task of its own (on the GPU node).

The registry gate compares a challenger with the champion *on the same data*. When the champion was
evaluated on another split, it has to be featurized and evaluated again, which is GPU work; the
``reevaluate-champion`` task does it next to training, and ``register-model`` (a small CPU task)
reads the scores from ``champion.json``. Scores that no longer fit (another champion by then, other
data) are ignored by the gate, which then falls back to re-scoring itself: behaviour never changes.
"""

from __future__ import annotations

import json

from amnet import storage
from amnet.config import EvaluateConfig, FeaturizeConfig, RegisterConfig
from amnet.ops import registry

CHAMPION_JSON = "champion.json"


def reevaluate_champion(split: str, out: str, cfg: RegisterConfig, featurize_cfg: FeaturizeConfig,
                        evaluate_cfg: EvaluateConfig) -> dict:
    """Write ``out/champion.json``: the champion's version, the split's evaluation fingerprint and the
    champion's gate metrics on it (re-scored when its recorded ones are for other data)."""
    from mlflow import MlflowClient

    from amnet.ops import tracking

    tracking.check_tracking_server()
    champ = registry._champion(MlflowClient(), cfg.model_name)
    result: dict = {"model_name": cfg.model_name, "version": None, "fingerprint": registry.fingerprint(split),
                    "scores": {}, "reevaluated": False}
    if champ is None:
        result["reason"] = "no champion yet"
    elif champ.tags.get(registry.TAG_FINGERPRINT) == result["fingerprint"]:
        result.update(version=str(champ.version), reason="already scored on this data",
                      scores={m: float(champ.tags[f"amnet.{m}"]) for m in cfg.gate_metrics
                              if f"amnet.{m}" in champ.tags})
    else:
        scores = registry._reevaluate(champ, split, tuple(cfg.gate_metrics), featurize_cfg, evaluate_cfg)
        result.update(version=str(champ.version), reason="re-scored on this data", scores=scores, reevaluated=True)
    write(out, result)
    return result


def write(out: str, result: dict) -> None:
    storage.write_text(storage.join(out, CHAMPION_JSON), json.dumps(result, indent=2) + "\n")


def read(folder: str) -> dict | None:
    """``champion.json`` of a reevaluate-champion output, or None when there is none."""
    if not folder:
        return None
    uri = storage.join(folder, CHAMPION_JSON)
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else None


def usable_scores(rescored: dict | None, champion_version: str, fingerprint: str,
                  metrics: tuple[str, ...]) -> dict[str, float] | None:
    """The scores of ``rescored`` when they are for this champion version, this data and every gate
    metric; None otherwise (the gate then scores the champion itself)."""
    if not rescored or str(rescored.get("version")) != str(champion_version):
        return None
    if rescored.get("fingerprint") != fingerprint:
        return None
    scores = rescored.get("scores") or {}
    if not all(m in scores for m in metrics):
        return None
    return {m: float(scores[m]) for m in metrics}
