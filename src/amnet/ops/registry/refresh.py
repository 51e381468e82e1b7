"""The registry side of a gallery refresh: find the champion's servable model, and register the refreshed
gallery as a new version with the same weights.

The new version is a new logged searcher model (the same ``model.pt``, :func:`servable.log_searcher`)
with the refreshed gallery attached (:func:`servable.attach_gallery`), registered under the same name
with the source version's tags (weights digest, vocabulary, evaluation scores: the weights are the
ones evaluated) plus ``amnet.refreshed_from``. The aliases move through the registry gate's
compare-and-set (:func:`amnet.ops.registry.gate.gate_version`): the refreshed version carries its
source's scores, so it takes the champion aliases from its source (equal scores: the newer version
wins), but never from a champion with other weights that a retraining promoted meanwhile.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from amnet import storage
from amnet.errors import AmnetError
from amnet.names import MODEL_FILE
from amnet.ops.registry import champion, gate, servable
from amnet.ops.registry.model_uri import _parse_mlflow_uri, is_model_uri

log = logging.getLogger(__name__)

TAG_REFRESHED_FROM = "amnet.refreshed_from"  # on a refreshed version: the version whose gallery it refreshed
NOT_COPIED = ("amnet.gate.", "amnet.decision", "amnet.refresh")  # tag prefixes that describe one version only


@dataclass
class Source:
    """The servable model a refresh starts from: its local folder (``model.pt`` + ``gallery/``) and, when
    it came from the registry, its registered version."""

    root: str
    version: object | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def model_file(self) -> str:
        return os.path.join(self.root, MODEL_FILE)


def resolve_source(model: str, dst: str) -> Source:
    """``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` (downloaded into ``dst``), or a local servable
    model folder (its ``amnet/`` artifact, or a downloaded model holding ``artifacts/amnet``)."""
    if not is_model_uri(model):
        root = model if os.path.exists(os.path.join(model, MODEL_FILE)) else servable.servable_root(model)
        if root is None:
            raise AmnetError(f"{model}: not a servable model folder (no {MODEL_FILE}); pass models:/NAME@champion")
        return Source(root)
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from amnet.ops.tracking import runs

    form, name, ref = _parse_mlflow_uri(model)
    if form == "run":
        raise AmnetError(f"{model}: refresh a registered version (models:/NAME@ALIAS or models:/NAME/VERSION)")
    runs.check_tracking_server()
    client = MlflowClient()
    try:
        version = (client.get_model_version_by_alias(name, ref) if form == "alias"
                   else client.get_model_version(name, ref))
        local = download_artifacts(artifact_uri=f"models:/{name}/{version.version}", dst_path=dst)
    except (MlflowException, OSError) as exc:
        raise AmnetError(f"{model}: not a downloadable registered version ({str(exc).splitlines()[0][:200]})") from exc
    root = servable.servable_root(local)
    if root is None:
        raise AmnetError(f"{model} ({name} v{version.version}): not amnet's servable searcher model")
    log.info("refreshing the gallery of %s v%s", name, version.version)
    return Source(root, version, dict(version.tags))


def gate_scores(tags: dict[str, str], metrics: tuple[str, ...]) -> dict[str, float]:
    """The gate metrics a version's tags record (0 where a tag is missing: then both sides read 0)."""
    return {m: float(tags.get(f"amnet.{m}", 0.0)) for m in metrics}


def register_refresh(source: Source, features: str, gallery_split: str, counts: dict[str, int],
                     model_name: str = "", promote: bool = True, parent_run_id: str = "",
                     params: dict | None = None, out: str = "") -> dict:
    """Log the source's weights with the refreshed gallery ``features`` as a new searcher model, register it
    as a new version of the source's registered model and, with ``promote``, move the champion aliases
    to it; returns ``version``, ``promoted``, ``model_id``, ``run_id`` and the gate's reasons."""
    import mlflow
    from mlflow import MlflowClient

    from amnet.ops.tracking import runs

    client = MlflowClient()
    name = model_name or (source.version.name if source.version is not None else "amnet")
    with runs.stage_run("refresh", parent_run_id or None, {"model_name": name, **(params or {})},
                        {"amnet.stage": "refresh"}, out=out) as run:
        model_id, uri = servable.log_searcher(run.run_id, source.root)
        servable.attach_gallery(model_id, features, gallery_split)
        run.log_metrics({k: float(v) for k, v in counts.items()}, 0)
        run_id = run.run_id
    tags = {k: v for k, v in source.tags.items() if not k.startswith(NOT_COPIED)}
    tags.update({"amnet.features_uri": features, "amnet.gallery_uri": gallery_split,
                 TAG_REFRESHED_FROM: str(source.version.version) if source.version is not None else "",
                 gate.TAG_SOURCE: _weights_digest(source), "amnet.refresh_run_id": run_id,
                 **{f"amnet.refresh.{k}": str(v) for k, v in counts.items()}})
    tags.setdefault("amnet.run_id", run_id)
    version = mlflow.register_model(uri, name, tags=tags)
    v = str(version.version)
    log.info("registered the refreshed gallery as %s v%s (from v%s)", name, v, tags[TAG_REFRESHED_FROM] or "-")
    result = {"version": v, "model_id": model_id, "run_id": run_id, "promoted": False, "reasons": []}
    if not promote:
        result["reasons"] = ["not promoted: promote=false"]
        return result
    rule = gate.GateRule()
    digest = tags.get(champion.TAG_VOCAB) or champion.vocabulary_digest(_vocab(source))
    client.set_model_version_tag(name, v, champion.TAG_VOCAB, digest)
    ours = gate_scores(tags, rule.metrics)
    sha = tags[gate.TAG_SOURCE]

    def scores_of(registered) -> dict[str, float]:
        """Same weights: the same scores (the newer version wins the tie); other weights (a retraining
        promoted meanwhile): never beaten by a refresh of the old ones."""
        if registered.tags.get(gate.TAG_SOURCE) == sha:
            return dict(ours)
        return {m: float("inf") for m in rule.metrics}

    decision = gate.gate_version(client, name, v, ours, digest, rule, scores_of)
    if out:
        gate.record(client, decision, out, parent_run_id)
    result.update(promoted=decision.promoted, reasons=decision.reasons, alias=decision.alias,
                  serves_champion=decision.serves_champion)
    return result


def _weights_digest(source: Source) -> str:
    import hashlib

    return hashlib.sha256(storage.read_bytes(source.model_file)).hexdigest()


def _vocab(source: Source):
    from amnet.model_store import load_model

    return load_model(source.root).vocab
