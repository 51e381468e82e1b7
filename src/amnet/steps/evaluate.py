"""Stage: evaluation (§5.1): top-k accuracy and NDCG@k for one variant (and, in the pipeline, the
image-only baseline beside the amnet variant: :func:`run_with_image_only`).

With tracking on, the evaluation run also holds the curves as step metrics (step = K: ``curve/top_k_accuracy``,
``curve/exact_recall``, ...; the MLflow chart view overlays runs), and a trained model's own evaluation logs
its headline metrics against the logged model too (MLflow's Models page), with the dataset they were
measured on (:func:`log_evaluation`)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from amnet import storage
from amnet.config import EvaluateConfig
from amnet.model_store import model_variant
from amnet.names import (
    ATTRIBUTE_BASED,
    EXACT_METRICS,
    IMAGE_ONLY,
    IMAGE_ONLY_MODEL,
    METRIC_COLUMNS,
    METRICS_JSON,
    NOT_EVALUATED_JSON,
    VARIANTS,
)
from amnet.retrieval.evaluate import run_evaluate
from amnet.steps.cli_args import base_parser, cli_config, print_result
from amnet.steps.settings import stage_config
from amnet.steps.tracked import run_tracked

log = logging.getLogger(__name__)
MODEL_METRICS = (*(k for k, _ in METRIC_COLUMNS), *EXACT_METRICS)  # logged against the model (Models page)


def variant_of_model(model: str) -> str:
    """The evaluation a model gets by default: its own variant, ``attribute_based`` for the attribute CNN."""
    variant = model_variant(model)
    return ATTRIBUTE_BASED if variant == "attribute_cnn" else variant


def run_step(split: str, model: str, features: str, out: str, variant: str = "",
             config: Mapping[str, Any] | None = None, parent_run_id: str = "", progress: bool = True) -> dict:
    """Query shards + model + gallery features -> metrics.json and per-query results in ``out``;
    tracked as ``evaluate-<variant>`` (``variant`` "" = the model's own)."""
    if not variant:
        stage_config(EvaluateConfig, config)  # a bad config is reported before the model is read
        variant = variant_of_model(model)
    cfg = stage_config(EvaluateConfig, config, variant=variant)
    return run_tracked(f"evaluate-{variant}", cfg,
                       lambda log: run_evaluate(split, model, features, out, cfg, progress), parent_run_id,
                       {"amnet.variant": variant}, [os.path.join(out, METRICS_JSON)],
                       after=log_evaluation(split, model, out, variant, cfg.queries),
                       io={"split": split, "model": model, "features": features, "out": out})


def model_metrics(payload: Mapping[str, Any], queries: str = "test") -> dict[str, float]:
    """The headline metrics of an evaluation as the model carries them: ``top20``, ``recall10``, ...
    (``val_top20``, ... when the validation queries were scored)."""
    prefix = "" if queries == "test" else f"{queries}_"
    scores = payload.get("metrics") or {}
    return {f"{prefix}{k}": float(scores[k]) for k in MODEL_METRICS if k in scores}


def log_evaluation(split: str, model: str, out: str, variant: str, queries: str = "test") -> Callable[[Any], None]:
    """After the evaluation, into its MLflow run: the top-k and Recall@K curves as step metrics, and, when
    ``variant`` is the model's own (not image_only) and the model was logged by a tracked training run
    (``model_id`` in its ``mlflow_run.json``), the headline metrics against that logged model with the
    split's dataset."""

    def _log(run: Any) -> None:
        from amnet.ops.tracking import lineage, runs

        payload = json.loads(storage.read_text(storage.join(out, METRICS_JSON)))
        run.log_series(runs.curve_series(payload))
        model_id = lineage.read_marker(model).get("model_id")
        if not model_id or variant != variant_of_model(model):
            return
        info = lineage.dataset_of(split)
        try:
            run.log_metrics(model_metrics(payload, queries), 0, model_id=model_id,
                            dataset=(info.name, info.short_digest) if info else None)
        except Exception as exc:  # a model on another server, or deleted: the run keeps its metrics
            log.warning("evaluation metrics not logged against model %s: %s", model_id, exc)

    return _log


def run_with_image_only(split: str, model: str, features: str, out: str, image_out: str, variant: str = "",
                        config: Mapping[str, Any] | None = None, parent_run_id: str = "", image_only: bool = False,
                        progress: bool = True) -> tuple[dict, dict | None]:
    """The pipeline's evaluate task: :func:`run_step` of ``variant`` into ``out`` and, when ``image_only`` is
    asked for and the model is the amnet variant's, the ``image_only`` baseline (plain visual search) with the
    same model, gallery features and index into ``image_out``. Otherwise ``image_out`` holds only
    ``not_evaluated.json`` saying why (the task's output exists either way). Returns (results, image-only
    results or None)."""
    results = run_step(split, model, features, out, variant, config, parent_run_id, progress)
    scored = variant or variant_of_model(model)
    if image_only and scored == IMAGE_ONLY_MODEL:
        return results, run_step(split, model, features, image_out, IMAGE_ONLY, config, parent_run_id, progress)
    why = ("not asked of this task (image_baseline off, or the attribute baseline's task)" if not image_only
           else f"image_only searches with the {IMAGE_ONLY_MODEL} model, not the {scored} one")
    write_not_evaluated(image_out, IMAGE_ONLY, why)
    return results, None


def write_not_evaluated(out: str, variant: str, reason: str) -> None:
    """Mark ``out`` as an evaluation of ``variant`` left out on purpose (the report skips it:
    :func:`amnet.steps.report.is_evaluation`)."""
    payload = {"variant": variant, "evaluated": False, "reason": reason}
    storage.write_text(storage.join(out, NOT_EVALUATED_JSON), json.dumps(payload, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step evaluate", "Manipulate each query of SPLIT/queries, search the featurized "
                    "gallery (L2 as in the paper: exact while one exact query stays cheap, PQ fast-scan + exact "
                    "re-ranking above, override with --set index=exact|ivf|pq|hnsw; the choice and its recall are "
                    "recorded) and compute top-k accuracy (k = 1..50) and NDCG@k.", config=EvaluateConfig)
    p.add_argument("--split", required=True, help="output of `amnet data split`")
    p.add_argument("--model", required=True, help="the model that featurized the gallery")
    p.add_argument("--features", required=True, help="output of `amnet step featurize`")
    p.add_argument("--variant", default="", choices=["", *VARIANTS],
                   help="how queries are answered (default: the model's own variant; attribute_based for the "
                   "attribute CNN; image_only: plain visual search with the amnet model's vector of the query "
                   "image itself, no change applied, against the gallery features that model wrote)")
    p.add_argument("--out", required=True, help="folder for metrics.json + per_query.parquet")
    args = p.parse_args(argv)
    config = cli_config(EvaluateConfig, args)
    variant = args.variant or config.pop("variant", "")
    print_result(run_step(args.split, args.model, args.features, args.out, variant, config, args.parent_run_id,
                          progress=not args.quiet), as_json=args.json)
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
