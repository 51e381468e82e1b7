"""Champion / challenger gate for scheduled retraining, on the MLflow Model Registry.

Every evaluated AMNet model is registered (signature, config, attribute vocabulary, a reference to
its gallery features) and gets the alias ``challenger``. A champion is kept per catalogue vocabulary
(alias ``champion-<vocabulary digest[:8]>``; :mod:`amnet.ops.registry.champion`): the challenger is
compared only with the champion of its own vocabulary, and that alias moves to it only when it is at
least as good *on the same evaluation data* (a champion evaluated on another split is re-evaluated on
this one first). The first model of a vocabulary becomes its champion. The alias ``champion`` follows
the champion of the vocabulary that holds it (the first one registered, until moved by hand); a
``champion`` of another vocabulary is left alone and the decision says it is incomparable.

The alias moves with a compare-and-set (:mod:`amnet.ops.registry.promote`), so two runs gating at once
cannot lose the better model. The decision, the version it was compared against and the reasons are
version tags, a parent-run tag and ``decision.json``. Registering the same model file twice (a KFP
retry) reuses its version instead of adding one.
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
from amnet.ops.registry import champion, promote
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
    """The gate's verdict on one registered version (``champion_before`` = ``compared_with``: the champion
    it was compared against; ``alias``: its vocabulary's champion alias; ``serves_champion``: whether the
    alias ``champion`` points at it)."""

    model_name: str
    version: str
    promoted: bool
    champion_before: str | None
    reasons: list[str] = field(default_factory=list)
    challenger: dict[str, float] = field(default_factory=dict)
    champion: dict[str, float] = field(default_factory=dict)
    compared_with: str | None = None
    vocabulary: str = ""
    alias: str = ""
    serves_champion: bool = False

    def summary(self) -> str:
        if not self.promoted:
            verdict = "kept the champion"
        elif self.serves_champion or not self.alias:
            verdict = "promoted to champion"
        else:
            verdict = f"promoted to champion of its catalogue vocabulary ({self.alias})"
        against = f"v{self.compared_with}" if self.compared_with else "no champion"
        return f"{self.model_name} v{self.version}: {verdict}; compared with {against} ({'; '.join(self.reasons)})"


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
    """Register ``model`` (an AMNet artifact folder), alias it ``challenger``, gate its vocabulary's champion.

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
    digest = champion.vocabulary_digest(loaded.vocab)

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
            TAG_SOURCE: source_sha, champion.TAG_FINGERPRINT: eval_fp, champion.TAG_VOCAB: digest,
            "amnet.variant": loaded.variant, "amnet.features_uri": features, "amnet.gallery_uri": split,
            "amnet.attributes": json.dumps(loaded.vocab.names),
            **{f"amnet.{m}": f"{v:.6f}" for m, v in scores.items() if m in REGISTRY_METRICS or m in rule.metrics},
        })
        client.set_model_version_tag(model_name, version.version, "amnet.run_id", run_id)
        version = client.get_model_version(model_name, version.version)
    if version.tags.get(champion.TAG_VOCAB) != digest:  # registered before versions carried it
        client.set_model_version_tag(model_name, version.version, champion.TAG_VOCAB, digest)
    client.set_registered_model_alias(model_name, "challenger", version.version)

    def scores_of(registered) -> dict[str, float]:
        """A registered version's gate metrics on this evaluation data: its tags, the reevaluate task's
        ``champion.json``, or scored here."""
        tags = registered.tags
        if tags.get(champion.TAG_FINGERPRINT) == eval_fp and all(f"amnet.{m}" in tags for m in rule.metrics):
            return {m: float(tags[f"amnet.{m}"]) for m in rule.metrics}
        if (scored := champion.usable_scores(rescored, registered.version, eval_fp, rule.metrics)) is not None:
            return scored
        return champion.rescore(registered, split, rule.metrics, featurize_cfg or FeaturizeConfig(),
                                evaluate_cfg or EvaluateConfig())

    decision = gate_version(client, model_name, str(version.version), challenger, digest, rule, scores_of)
    record(client, decision, out, parent_run_id)
    return decision


def gate_version(client, model_name: str, version: str, challenger: dict[str, float], digest: str,
                 rule: GateRule, scores_of: promote.ScoresOf) -> Decision:
    """Gate a registered ``version`` of vocabulary ``digest`` (gate metrics ``challenger``) against its
    vocabulary's champion, move ``champion-<digest[:8]>`` with a compare-and-set and let ``champion``
    follow it when it serves this vocabulary. ``scores_of(v)``: a version's gate metrics on this data.

    A ``champion`` of another vocabulary is never scored: the decision records it as incomparable."""
    contest = promote.Contest(model_name, champion.champion_alias(digest), digest, champion.TAG_VOCAB)
    _, other = champion.find_champion(client, model_name, digest)
    notes = [champion.incomparable_reason(other, digest)] if other is not None else []

    def find():
        return champion.find_champion(client, model_name, digest, with_other=False)[0]

    try:
        outcome = promote.gate_alias(client, contest, version, challenger, lambda a, b: compare(a, b, rule), find,
                                     scores_of)
    except champion.IncomparableChampion as exc:  # a version whose vocabulary tag is wrong: never a traceback
        outcome = promote.Outcome(False, None, [str(exc)])
    if outcome.moved:
        promote.follow(client, model_name, champion.CHAMPION, contest.alias,
                       lambda v: champion.version_vocabulary(client, v) == digest)
    holder = champion.current_champion(client, model_name)
    serves = holder is not None and str(holder.version) == version
    return Decision(model_name, version, outcome.promoted, outcome.compared_with, outcome.reasons + notes,
                    challenger, outcome.champion, outcome.compared_with, digest, contest.alias, serves)


def record(client, decision: Decision, out: str, parent_run_id: str = "") -> None:
    """The decision as tags (its version; the pipeline's parent run, when there is one) and ``decision.json``."""
    summary = decision.summary()[:4900]
    client.set_model_version_tag(decision.model_name, decision.version, TAG_DECISION, summary)
    if parent_run_id:
        client.set_tag(parent_run_id, TAG_DECISION, summary)
        client.set_tag(parent_run_id, promote.TAG_COMPARED_WITH, decision.compared_with or promote.NO_CHAMPION)
    write_decision(out, asdict(decision))


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
