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
import os
import tempfile
from dataclasses import asdict, dataclass, field

from amnet import storage
from amnet.errors import AmnetError

TAG_SOURCE = "amnet.source_sha256"
TAG_FINGERPRINT = "amnet.eval_fingerprint"
TAG_DECISION = "amnet.decision"


@dataclass(frozen=True)
class GateRule:
    """Promote when every metric (``rule='all'``) or any metric (``'any'``) >= champion − margin."""

    metrics: tuple[str, ...] = ("top20", "ndcg20")
    margin: float = 0.0
    rule: str = "all"

    def __post_init__(self) -> None:
        if self.rule not in ("all", "any"):
            raise AmnetError(f"gate rule must be 'all' or 'any' (got {self.rule!r})")


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


def fingerprint(split: str) -> str:
    """Identity of the evaluation data: the gallery and query image ids of the split."""
    from amnet.data import shards

    digest = hashlib.sha256()
    for name in ("gallery", "queries"):
        ids = sorted(shards.read_shards(storage.join(split, name), columns=["image_id"])["image_id"])
        digest.update(("\n".join(ids) + f"|{name}|").encode())
    return digest.hexdigest()[:16]


def _metrics(evaluation: str) -> dict[str, float]:
    return json.loads(storage.read_text(storage.join(evaluation, "metrics.json")))["metrics"]


def _champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        return None


def _reevaluate(champion_version, split: str, metrics: tuple[str, ...]) -> dict[str, float]:
    """Champion metrics on *this* split: download its model.pt, featurize, evaluate."""
    from mlflow.artifacts import download_artifacts

    from amnet.config import EvaluateConfig, FeaturizeConfig
    from amnet.evaluate import run_evaluate
    from amnet.featurize import run_featurize

    with tempfile.TemporaryDirectory(prefix="amnet-champion-") as tmp:
        run_id = champion_version.tags.get("amnet.run_id") or champion_version.run_id
        download_artifacts(run_id=run_id, artifact_path="model.pt", dst_path=tmp)
        variant = champion_version.tags.get("amnet.variant", "amnet")
        run_featurize(split, tmp, os.path.join(tmp, "features"), FeaturizeConfig(), progress=False)
        result = run_evaluate(split, tmp, os.path.join(tmp, "features"), os.path.join(tmp, "eval"),
                              EvaluateConfig(variant=variant), progress=False)
    return {m: float(result[m]) for m in metrics}


def register_and_gate(model: str, evaluation: str, features: str, split: str, out: str,
                      model_name: str = "amnet", rule: GateRule | None = None, parent_run_id: str = "") -> Decision:
    """Register ``model`` (an AMNet artifact folder), alias it ``challenger``, gate ``champion``."""
    import mlflow
    import torch
    from mlflow import MlflowClient

    from amnet import tracking
    from amnet.model_store import load_model

    rule = rule or GateRule()
    tracking.check_tracking_server()
    client = MlflowClient()
    loaded = load_model(model)
    source_sha = hashlib.sha256(storage.read_bytes(storage.join(model, "model.pt"))).hexdigest()
    scores = {m: float(v) for m, v in _metrics(evaluation).items()}
    challenger = {m: scores[m] for m in rule.metrics}
    eval_fp = fingerprint(split)

    existing = client.search_model_versions(f"name = '{model_name}' and tag.`{TAG_SOURCE}` = '{source_sha}'")
    if existing:  # a retried task: same file, same version, no duplicate
        version = existing[0]
    else:
        with tracking.stage_run("register", parent_run_id or None, {"model_name": model_name, **asdict(rule)}) as run:
            size = loaded.model_config.image_size
            uri = tracking.log_pytorch_model(run.run_id, loaded.model.backbone, torch.zeros(2, 3, size, size))
            run.log_artifact(storage.local_copy(storage.join(model, "model.pt"), tempfile.mkdtemp()))
            run.log_text(loaded.vocab.to_json(), "attributes.json")
            run.log_metrics(scores, 0)
            run_id = run.run_id
        version = mlflow.register_model(uri, model_name, tags={
            TAG_SOURCE: source_sha, TAG_FINGERPRINT: eval_fp, "amnet.variant": loaded.variant,
            "amnet.features_uri": features, "amnet.gallery_uri": split,
            "amnet.attributes": json.dumps(loaded.vocab.names),
            **{f"amnet.{m}": f"{v:.6f}" for m, v in scores.items() if m in ("top20", "ndcg20", "two_top20")},
        })
        client.set_model_version_tag(model_name, version.version, "amnet.run_id", run_id)
        version = client.get_model_version(model_name, version.version)
    client.set_registered_model_alias(model_name, "challenger", version.version)

    champ = _champion(client, model_name)
    champion_scores = None
    if champ is not None and champ.version != version.version:
        if champ.tags.get(TAG_FINGERPRINT) == eval_fp:
            champion_scores = {m: float(champ.tags[f"amnet.{m}"]) for m in rule.metrics}
        else:
            champion_scores = _reevaluate(champ, split, rule.metrics)
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
    storage.write_text(storage.join(out, "decision.json"), json.dumps(asdict(decision), indent=2) + "\n")
    return decision


def _variant_of(folder: str, filename: str) -> str:
    if filename == "model.pt":
        from amnet.train.checkpoint import load_model_payload

        return str(load_model_payload(folder).get("variant", ""))
    return str(json.loads(storage.read_text(storage.join(folder, filename))).get("variant", ""))


def run_register(models: list[str], evaluations: list[str], features: list[str], split: str, out: str,
                 variant: str = "amnet", model_name: str = "amnet", rule: GateRule | None = None,
                 parent_run_id: str = "") -> dict:
    """Pick ``variant`` among the trained models (ParallelFor outputs, in any order) and gate it.

    Without ``MLFLOW_TRACKING_URI`` there is no registry: the decision says so and nothing fails.
    """
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        payload = {"model_name": model_name, "promoted": False, "reasons": ["tracking off: not registered"]}
        storage.write_text(storage.join(out, "decision.json"), json.dumps(payload, indent=2) + "\n")
        return {"promoted": 0.0}

    def pick(folders: list[str], filename: str) -> str:
        found = [f for f in folders if _variant_of(f, filename) == variant]
        if not found:
            raise AmnetError(f"no {variant!r} output among {len(folders)} {filename} artifacts; train it first")
        return found[0]

    feature_variants = {f: json.loads(storage.read_text(storage.join(f, "features.json")))["variant"]
                        for f in features}
    feats = [f for f, v in feature_variants.items() if v == variant]
    decision = register_and_gate(pick(models, "model.pt"), pick(evaluations, "metrics.json"),
                                 feats[0] if feats else "", split, out, model_name, rule, parent_run_id)
    print(decision.summary())
    return {"promoted": float(decision.promoted), "version": float(decision.version)}


def compare_runs(run_ids: list[str] | None = None, experiment: str | None = None, last: int = 5) -> str:
    """Headline metrics of pipeline parent runs side by side (default: the last few of the experiment)."""
    from mlflow import MlflowClient

    from amnet import tracking
    from amnet.report import COLUMNS, VARIANT_ORDER

    tracking.check_tracking_server()
    client = MlflowClient()
    if run_ids:
        runs = [client.get_run(r) for r in run_ids]
    else:
        exp = client.get_experiment_by_name(experiment or tracking.default_experiment())
        if exp is None:
            raise AmnetError(f"no MLflow experiment {experiment or tracking.default_experiment()!r}")
        runs = client.search_runs([exp.experiment_id], "tags.`amnet.role` = 'pipeline'",
                                  order_by=["attributes.start_time DESC"], max_results=last)
    if not runs:
        return "no pipeline runs found\n"
    keys = [f"{v}_{k}" for v in VARIANT_ORDER for k, _ in COLUMNS if k in ("top20", "ndcg20", "two_top20")]
    keys = [k for k in keys if any(k in r.data.metrics for r in runs)]
    head = ["metric"] + [r.info.run_id[:8] for r in runs]
    rows = [head, ["status"] + [r.info.status for r in runs],
            ["decision"] + [("champion" if "promoted" in r.data.tags.get(TAG_DECISION, "") else
                             "kept" if TAG_DECISION in r.data.tags else "-") for r in runs]]
    rows += [[k] + [f"{r.data.metrics[k]:.3f}" if k in r.data.metrics else "-" for r in runs] for k in keys]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows) + "\n"


def main_compare(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="amnet runs compare",
                                description="Print the headline metrics of pipeline runs side by side "
                                "(MLflow parent runs; default: the last few of the experiment).")
    p.add_argument("run_ids", nargs="*", help="MLflow parent run ids (default: the latest runs)")
    p.add_argument("--experiment", help="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME or amnet)")
    p.add_argument("--last", type=int, default=5, help="how many recent runs when no id is given")
    args = p.parse_args(argv)
    print(compare_runs(args.run_ids, args.experiment, args.last), end="")
    return 0
