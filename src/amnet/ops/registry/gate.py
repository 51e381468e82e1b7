"""Champion / challenger gate for scheduled retraining, on the MLflow Model Registry.

Every evaluated AMNet model is registered (signature, config, attribute vocabulary, a reference to
its gallery features) and gets the alias ``challenger``. The alias ``champion`` moves to it only
when it is at least as good as the current champion *on the same evaluation data*: when the
champion was evaluated on other data (another split), it is re-evaluated on this one first. The
first model becomes champion. The decision and its reasons are a version tag and ``decision.json``.
Registering the same model file twice (a KFP retry) reuses its version instead of adding one.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

from amnet import storage
from amnet.config import GATE_RULES, EvaluateConfig, FeaturizeConfig, RegisterConfig
from amnet.errors import AmnetError
from amnet.names import DECISION_JSON, FEATURES_JSON, METRICS_JSON, MODEL_FILE, REGISTRY_METRICS
from amnet.ops.registry import champion
from amnet.ops.tracking.runs import TAG_DECISION

TAG_SOURCE = "amnet.source_sha256"


@dataclass(frozen=True)
class GateRule:
    """Promote when every metric (``rule='all'``) or any metric (``'any'``) >= champion − margin."""

    metrics: tuple[str, ...] = RegisterConfig.gate_metrics
    margin: float = RegisterConfig.gate_margin
    rule: str = RegisterConfig.gate_rule

    def __post_init__(self) -> None:
        if self.rule not in GATE_RULES:
            raise AmnetError(f"gate rule must be 'all' or 'any' (got {self.rule!r})")

    @classmethod
    def of(cls, cfg: RegisterConfig) -> GateRule:
        return cls(tuple(cfg.gate_metrics), cfg.gate_margin, cfg.gate_rule)


@dataclass
class Decision:
    model_name: str
    version: str
    promoted: bool
    champion_before: str | None
    reasons: list[str] = field(default_factory=list)
    challenger: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        verdict = "promoted to champion" if self.promoted else "kept the champion"
        return f"{self.model_name} v{self.version}: {verdict} ({'; '.join(self.reasons)})"


def compare(challenger: dict[str, float], champion: dict[str, float] | None, rule: GateRule) -> tuple[bool, list[str]]:
    """The gate itself: (promote?, reasons). Pure, so it is tested without a server."""
    if champion is None:
        return True, ["first model: no champion yet"]
    verdicts, reasons = [], []
    for m in rule.metrics:
        if m not in challenger or m not in champion:
            raise AmnetError(f"gate metric {m!r} missing (challenger has {sorted(challenger)})")
        ok = challenger[m] >= champion[m] - rule.margin
        verdicts.append(ok)
        reasons.append(f"{m} {challenger[m]:.4f} {'>=' if ok else '<'} {champion[m]:.4f} - {rule.margin:g}")
    promote = all(verdicts) if rule.rule == "all" else any(verdicts)
    return promote, reasons


def _metrics(evaluation: str) -> dict[str, float]:
    return json.loads(storage.read_text(storage.join(evaluation, METRICS_JSON)))["metrics"]


def training_model(client, model: str) -> tuple[str, str]:
    """(``models:/<id>``, training run id) of the servable model the training run logged for the artifact
    ``model`` (its ``mlflow_run.json``); ("", "") when it was trained untracked or on another server."""
    from mlflow.exceptions import MlflowException

    from amnet.ops.tracking import lineage

    marker = lineage.read_marker(model)
    model_id, run_id = marker.get("model_id", ""), marker.get("run_id", "")
    if not model_id or not run_id:
        return "", ""
    try:
        logged = client.get_logged_model(model_id)
    except MlflowException:
        return "", ""
    return (f"models:/{model_id}", run_id) if logged.source_run_id == run_id else ("", "")


def _as_metrics(scores: dict[str, float]) -> list:
    """The evaluation's scores as ``eval/<metric>`` metrics of the training run (the version's source run)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(f"eval/{k}", float(v), now, 0) for k, v in scores.items()]


def register_and_gate(model: str, evaluation: str, features: str, split: str, out: str,
                      model_name: str = "amnet", rule: GateRule | None = None, parent_run_id: str = "",
                      featurize_cfg: FeaturizeConfig | None = None,
                      evaluate_cfg: EvaluateConfig | None = None, rescored: dict | None = None) -> Decision:
    """Register ``model`` (an AMNet artifact folder), alias it ``challenger``, gate ``champion``.

    ``rescored``: the ``reevaluate-champion`` task's ``champion.json`` (:mod:`amnet.ops.registry.champion`), used
    when it holds this champion's scores on this data; otherwise the champion is re-scored here."""
    import mlflow
    from mlflow import MlflowClient

    from amnet.model_store import load_model
    from amnet.ops.registry import servable
    from amnet.ops.tracking import runs

    rule = rule or GateRule()
    runs.check_tracking_server()
    client = MlflowClient()
    loaded = load_model(model)
    source_sha = hashlib.sha256(storage.read_bytes(storage.join(model, MODEL_FILE))).hexdigest()
    scores = {m: float(v) for m, v in _metrics(evaluation).items()}
    challenger = {m: scores[m] for m in rule.metrics}
    eval_fp = champion.fingerprint(split)

    existing = client.search_model_versions(f"name = '{model_name}' and tag.`{TAG_SOURCE}` = '{source_sha}'")
    if existing:  # a retried task: same file, same version, no duplicate
        version = existing[0]
    else:
        uri, run_id = training_model(client, model)
        if uri:  # the training run's own servable model: version -> training run -> params -> dataset
            client.log_batch(run_id, metrics=_as_metrics(scores))
        else:  # trained without tracking: log the servable model now, in a register run
            with runs.stage_run("register", parent_run_id or None,
                                    {"model_name": model_name, **asdict(rule)}) as run:
                model_id, uri = servable.log_searcher(run.run_id, model)
                if features:
                    servable.attach_gallery(model_id, features, split)
                run.log_artifact(storage.local_copy(storage.join(model, MODEL_FILE), tempfile.mkdtemp()))
                run.log_text(loaded.vocab.to_json(), "attributes.json")
                run.log_metrics(scores, 0)
                run_id = run.run_id
        version = mlflow.register_model(uri, model_name, tags={
            TAG_SOURCE: source_sha, champion.TAG_FINGERPRINT: eval_fp, "amnet.variant": loaded.variant,
            "amnet.features_uri": features, "amnet.gallery_uri": split,
            "amnet.attributes": json.dumps(loaded.vocab.names),
            **{f"amnet.{m}": f"{v:.6f}" for m, v in scores.items() if m in REGISTRY_METRICS},
        })
        client.set_model_version_tag(model_name, version.version, "amnet.run_id", run_id)
        version = client.get_model_version(model_name, version.version)
    client.set_registered_model_alias(model_name, "challenger", version.version)

    champ = champion.current_champion(client, model_name)
    champion_scores = None
    if champ is not None and champ.version != version.version:
        if champ.tags.get(champion.TAG_FINGERPRINT) == eval_fp:
            champion_scores = {m: float(champ.tags[f"amnet.{m}"]) for m in rule.metrics}
        elif (scored := champion.usable_scores(rescored, champ.version, eval_fp, rule.metrics)) is not None:
            champion_scores = scored
        else:
            champion_scores = champion.rescore(champ, split, rule.metrics, featurize_cfg or FeaturizeConfig(),
                                               evaluate_cfg or EvaluateConfig())
    if champ is not None and champ.version == version.version:
        promote, reasons = True, ["already champion"]
    else:
        promote, reasons = compare(challenger, champion_scores, rule)
    if promote:
        client.set_registered_model_alias(model_name, "champion", version.version)
    decision = Decision(model_name, str(version.version), promote, champ.version if champ else None, reasons,
                        challenger, champion_scores or {})
    client.set_model_version_tag(model_name, version.version, TAG_DECISION, decision.summary()[:4900])
    if parent_run_id:
        client.set_tag(parent_run_id, TAG_DECISION, decision.summary()[:4900])
    write_decision(out, asdict(decision))
    return decision


def write_decision(out: str, decision: dict) -> None:
    """``out/decision.json``: what the gate decided and why (the report shows it)."""
    storage.write_text(storage.join(out, DECISION_JSON), json.dumps(decision, indent=2) + "\n")


def _variant_and_seed(folder: str, filename: str) -> tuple[str, Any]:
    """(variant, training seed) an artifact records, read once (seed None when it does not say)."""
    if filename == MODEL_FILE:
        from amnet.model_store import load_model_payload, training_seed

        payload = load_model_payload(folder)
        return str(payload.get("variant", payload["kind"])), training_seed(payload.get("extra", {}))
    meta = json.loads(storage.read_text(storage.join(folder, filename)))
    return str(meta.get("variant", "")), meta.get("seed")


def run_register(models: list[str], evaluations: list[str], features: list[str], split: str, out: str,
                 cfg: RegisterConfig, parent_run_id: str = "", featurize_cfg: FeaturizeConfig | None = None,
                 evaluate_cfg: EvaluateConfig | None = None, rescored: dict | None = None) -> Decision:
    """Pick ``cfg.variant`` among the trained models (ParallelFor outputs, in any order) and gate it.

    With several training seeds per variant (the pipeline's ``seeds``), the model, its evaluation and its
    gallery features of the *lowest* seed are taken together (each artifact records its model's seed), so
    the registered model is the one a ``seeds: 1`` run would register."""

    def found(folders: list[str], filename: str, required: bool = True) -> list[tuple[str, Any]]:
        read = {f: _variant_and_seed(f, filename) for f in folders}
        out = [(f, seed) for f, (variant, seed) in read.items() if variant == cfg.variant]
        if not out and required:
            raise AmnetError(f"no {cfg.variant!r} output among {len(folders)} {filename} artifacts; train it first")
        return out

    model_seeds, evaluation_seeds = found(models, MODEL_FILE), found(evaluations, METRICS_JSON)
    seeds = sorted({s for _, s in model_seeds if s is not None})
    seed = seeds[0] if seeds else None

    def pick(candidates: list[tuple[str, Any]]) -> str:
        return next((f for f, s in candidates if s == seed), candidates[0][0])

    feats = found(features, FEATURES_JSON, required=False)
    return register_and_gate(pick(model_seeds), pick(evaluation_seeds), pick(feats) if feats else "",
                             split, out, cfg.model_name, GateRule.of(cfg), parent_run_id, featurize_cfg, evaluate_cfg,
                             rescored)
