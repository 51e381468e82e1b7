"""The current champion: found in the registry, scored on this run's evaluation data, and that score
handed to the gate.

The registry gate (:mod:`amnet.ops.registry.gate`) compares a challenger with the champion *on the same
data*. When the champion was evaluated on another split, it has to be featurized and evaluated again,
which is GPU work; the ``reevaluate-champion`` task does it next to training, and ``register-model`` (a
small CPU task) reads the scores from ``champion.json``. Scores that no longer fit (another champion by
then, other data) are ignored by the gate, which then falls back to re-scoring itself (:func:`rescore`):
behaviour never changes.

A champion belongs to one catalogue vocabulary (the attribute names and values of ``attributes.json``):
every registered version carries its digest (tag ``amnet.vocab_digest``) and each vocabulary has its own
alias ``champion-<digest[:8]>``. A champion of another vocabulary is never re-scored here (its model
cannot read this split's labels): :func:`find_champion` tells it apart, and :func:`rescore` refuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from typing import TYPE_CHECKING

from amnet import storage
from amnet.config import EvaluateConfig, FeaturizeConfig, RegisterConfig
from amnet.errors import AmnetError
from amnet.names import MODEL_FILE

if TYPE_CHECKING:
    from amnet.data.schema import Vocabulary

log = logging.getLogger(__name__)

CHAMPION_JSON = "champion.json"
CHAMPION = "champion"  # the alias users load (models:/amnet@champion): one vocabulary's champion
TAG_FINGERPRINT = "amnet.eval_fingerprint"  # on a model version: the evaluation data its scores are for
TAG_VOCAB = "amnet.vocab_digest"  # on a model version: the catalogue vocabulary it was trained on
INCOMPARABLE = "incomparable: champion for another catalogue vocabulary"


class IncomparableChampion(AmnetError):
    """The champion was trained on another catalogue vocabulary: it cannot be scored on this data."""


def vocabulary_digest(vocab: Vocabulary) -> str:
    """Identity of a catalogue vocabulary: its attribute names and values, in order (16 hex digits).

    Order counts: a model's label columns and memory rows follow it."""
    canonical = json.dumps([[a.name, list(a.values)] for a in vocab.attributes], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def split_vocabulary(split: str) -> str:
    """:func:`vocabulary_digest` of a split's (or dataset's) ``attributes.json``."""
    from amnet.data.schema import load_vocabulary

    return vocabulary_digest(load_vocabulary(split))


def champion_alias(digest: str) -> str:
    """The alias of the champion of one vocabulary: ``champion-<digest[:8]>``."""
    return f"{CHAMPION}-{digest[:8]}"


def fingerprint(split: str) -> str:
    """Identity of the evaluation data: the gallery and query image ids of the split."""
    from amnet.data import shards

    digest = hashlib.sha256()
    for name in ("gallery", "queries"):
        ids = sorted(shards.read_shards(storage.join(split, name), columns=["image_id"])["image_id"])
        digest.update(("\n".join(ids) + f"|{name}|").encode())
    return digest.hexdigest()[:16]


def alias_version(client, name: str, alias: str):
    """The model version of ``name`` with ``alias``, or None when no version has it (or no such model)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def current_champion(client, name: str):
    """The model version of ``name`` aliased ``champion``, or None when there is none yet."""
    return alias_version(client, name, CHAMPION)


def _payload_vocabulary(folder: str) -> str:
    from amnet.data.schema import Vocabulary
    from amnet.model_store import load_model_payload

    return vocabulary_digest(Vocabulary.from_json(load_model_payload(folder)["vocab"], source=folder))


def version_vocabulary(client, version) -> str | None:
    """The vocabulary digest of a registered version: its tag, or (a version registered without one) read
    from its ``model.pt`` once and tagged. None when neither is readable."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    digest = version.tags.get(TAG_VOCAB)
    if digest:
        return digest
    run_id = version.tags.get("amnet.run_id") or version.run_id
    try:
        with tempfile.TemporaryDirectory(prefix="amnet-vocab-") as tmp:
            download_artifacts(run_id=run_id, artifact_path=MODEL_FILE, dst_path=tmp)
            digest = _payload_vocabulary(tmp)
    except (MlflowException, OSError, AmnetError) as exc:
        log.warning("%s v%s: vocabulary unknown (%s)", version.name, version.version, str(exc)[:200])
        return None
    client.set_model_version_tag(version.name, version.version, TAG_VOCAB, digest)
    return digest


def find_champion(client, name: str, digest: str, with_other: bool = True) -> tuple[object | None, object | None]:
    """(the champion of vocabulary ``digest``, the ``champion`` alias's version when it serves another
    vocabulary). The first is alias ``champion-<digest[:8]>``, else ``champion`` when it is of this
    vocabulary (a registry from before per-vocabulary aliases); either may be None. ``with_other=False``: one
    read less when the vocabulary has its alias (the second is then None)."""
    own = alias_version(client, name, champion_alias(digest))
    if own is not None:
        if not with_other:
            return own, None
        other = current_champion(client, name)
        return own, (other if other is not None and version_vocabulary(client, other) != digest else None)
    shared = current_champion(client, name)
    if shared is None:
        return None, None
    return (shared, None) if version_vocabulary(client, shared) == digest else (None, shared)


def incomparable_reason(other, digest: str) -> str:
    """Why the ``champion`` alias's version ``other`` is not compared with a model of vocabulary ``digest``."""
    theirs = (other.tags.get(TAG_VOCAB) or "unknown")[:8]
    return (f"{INCOMPARABLE} ({other.name} v{other.version}, vocabulary {theirs}; this one is {digest[:8]}, "
            f"its champion is alias {champion_alias(digest)})")


def rescore(champion_version, split: str, metrics: tuple[str, ...], featurize_cfg: FeaturizeConfig,
            evaluate_cfg: EvaluateConfig) -> dict[str, float]:
    """Champion metrics on *this* split, scored as the challenger was (same featurize / evaluate
    configs): download its model.pt, featurize, evaluate. Raises :class:`IncomparableChampion`, before any
    scoring, when its vocabulary is not the split's."""
    from dataclasses import replace

    from mlflow.artifacts import download_artifacts

    from amnet.retrieval.evaluate import run_evaluate
    from amnet.retrieval.featurize import run_featurize

    with tempfile.TemporaryDirectory(prefix="amnet-champion-") as tmp:
        run_id = champion_version.tags.get("amnet.run_id") or champion_version.run_id
        download_artifacts(run_id=run_id, artifact_path=MODEL_FILE, dst_path=tmp)
        if (theirs := _payload_vocabulary(tmp)) != (ours := split_vocabulary(split)):
            raise IncomparableChampion(f"{champion_version.name} v{champion_version.version}: {INCOMPARABLE} "
                                       f"(vocabulary {theirs[:8]}, this split's is {ours[:8]})")
        variant = champion_version.tags.get("amnet.variant", "amnet")
        run_featurize(split, tmp, os.path.join(tmp, "features"), featurize_cfg, progress=False)
        result = run_evaluate(split, tmp, os.path.join(tmp, "features"), os.path.join(tmp, "eval"),
                              replace(evaluate_cfg, variant=variant), progress=False)
    return {m: float(result[m]) for m in metrics}


def reevaluate_champion(split: str, out: str, cfg: RegisterConfig, featurize_cfg: FeaturizeConfig,
                        evaluate_cfg: EvaluateConfig) -> dict:
    """Write ``out/champion.json``: the champion of the split's vocabulary, the split's evaluation
    fingerprint and the champion's gate metrics on it (re-scored when its recorded ones are for other
    data). A ``champion`` of another vocabulary is not scored: the file says why."""
    from mlflow import MlflowClient

    from amnet.ops.tracking import runs

    runs.check_tracking_server()
    client = MlflowClient()
    digest = split_vocabulary(split)
    champ, other = find_champion(client, cfg.model_name, digest)
    result: dict = {"model_name": cfg.model_name, "version": None, "fingerprint": fingerprint(split),
                    "vocabulary": digest, "alias": champion_alias(digest), "scores": {}, "reevaluated": False}
    if champ is None:
        result["reason"] = "no champion yet for this catalogue vocabulary"
        if other is not None:
            result["reason"] += f"; {incomparable_reason(other, digest)}"
    elif champ.tags.get(TAG_FINGERPRINT) == result["fingerprint"]:
        result.update(version=str(champ.version), reason="already scored on this data",
                      scores={m: float(champ.tags[f"amnet.{m}"]) for m in cfg.gate_metrics
                              if f"amnet.{m}" in champ.tags})
    else:
        try:
            scores = rescore(champ, split, tuple(cfg.gate_metrics), featurize_cfg, evaluate_cfg)
        except IncomparableChampion as exc:  # a mislabelled version: say so, the gate decides without it
            result["reason"] = str(exc)
        else:
            result.update(version=str(champ.version), reason="re-scored on this data", scores=scores,
                          reevaluated=True)
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
