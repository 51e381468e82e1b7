"""The current champion: found in the registry, scored on this run's evaluation data, and that score
handed to the gate.

The registry gate (:mod:`amnet.ops.registry.gate`) compares a challenger with the champion *on the same
data*. When the champion was evaluated on another split, it has to be featurized and evaluated again,
which is GPU work; the ``reevaluate-champion`` task does it next to training, and ``register-model`` (a
small CPU task) reads the scores from ``champion.json``. Scores that no longer fit (another champion by
then, other data) are ignored by the gate, which then falls back to re-scoring itself (:func:`rescore`):
behaviour never changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

from amnet import storage
from amnet.config import EvaluateConfig, FeaturizeConfig, RegisterConfig
from amnet.names import MODEL_FILE

CHAMPION_JSON = "champion.json"
TAG_FINGERPRINT = "amnet.eval_fingerprint"  # on a model version: the evaluation data its scores are for


def fingerprint(split: str) -> str:
    """Identity of the evaluation data: the gallery and query image ids of the split."""
    from amnet.data import shards

    digest = hashlib.sha256()
    for name in ("gallery", "queries"):
        ids = sorted(shards.read_shards(storage.join(split, name), columns=["image_id"])["image_id"])
        digest.update(("\n".join(ids) + f"|{name}|").encode())
    return digest.hexdigest()[:16]


def current_champion(client, name: str):
    """The model version of ``name`` aliased ``champion``, or None when there is none yet."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None


def rescore(champion_version, split: str, metrics: tuple[str, ...], featurize_cfg: FeaturizeConfig,
            evaluate_cfg: EvaluateConfig) -> dict[str, float]:
    """Champion metrics on *this* split, scored as the challenger was (same featurize / evaluate
    configs): download its model.pt, featurize, evaluate."""
    from dataclasses import replace

    from mlflow.artifacts import download_artifacts

    from amnet.retrieval.evaluate import run_evaluate
    from amnet.retrieval.featurize import run_featurize

    with tempfile.TemporaryDirectory(prefix="amnet-champion-") as tmp:
        run_id = champion_version.tags.get("amnet.run_id") or champion_version.run_id
        download_artifacts(run_id=run_id, artifact_path=MODEL_FILE, dst_path=tmp)
        variant = champion_version.tags.get("amnet.variant", "amnet")
        run_featurize(split, tmp, os.path.join(tmp, "features"), featurize_cfg, progress=False)
        result = run_evaluate(split, tmp, os.path.join(tmp, "features"), os.path.join(tmp, "eval"),
                              replace(evaluate_cfg, variant=variant), progress=False)
    return {m: float(result[m]) for m in metrics}


def reevaluate_champion(split: str, out: str, cfg: RegisterConfig, featurize_cfg: FeaturizeConfig,
                        evaluate_cfg: EvaluateConfig) -> dict:
    """Write ``out/champion.json``: the champion's version, the split's evaluation fingerprint and the
    champion's gate metrics on it (re-scored when its recorded ones are for other data)."""
    from mlflow import MlflowClient

    from amnet.ops.tracking import runs

    runs.check_tracking_server()
    champ = current_champion(MlflowClient(), cfg.model_name)
    result: dict = {"model_name": cfg.model_name, "version": None, "fingerprint": fingerprint(split),
                    "scores": {}, "reevaluated": False}
    if champ is None:
        result["reason"] = "no champion yet"
    elif champ.tags.get(TAG_FINGERPRINT) == result["fingerprint"]:
        result.update(version=str(champ.version), reason="already scored on this data",
                      scores={m: float(champ.tags[f"amnet.{m}"]) for m in cfg.gate_metrics
                              if f"amnet.{m}" in champ.tags})
    else:
        scores = rescore(champ, split, tuple(cfg.gate_metrics), featurize_cfg, evaluate_cfg)
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
