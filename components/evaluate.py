"""Search the gallery with manipulated queries: top-k accuracy and NDCG@k (§5)."""

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def evaluate_retrieval(split: Input[Dataset], model: Input[Model], features: Input[Dataset], variant: str,
                       config: dict, parent_run_id: str, evaluation: Output[Dataset], metrics: Output[Metrics],
                       image_evaluation: Output[Dataset], image_only: bool = False):
    """Query shards + model + gallery features -> metrics.json and per-query results of ``variant``; with
    ``image_only`` and the amnet variant's model, also the image-only baseline (plain visual search, the same
    model, features and index) in ``image_evaluation`` (otherwise it holds only not_evaluated.json). The
    pipeline passes "" as ``parent_run_id`` (cacheable; link-upstream-runs nests the MLflow runs)."""
    from amnet.steps.evaluate import run_with_image_only
    from amnet.steps.results import log_results

    results, image = run_with_image_only(split.path, model.path, features.path, evaluation.path,
                                         image_evaluation.path, variant, config, parent_run_id, image_only)
    evaluation.metadata["variant"] = variant
    evaluation.metadata["index"] = str(results.get("index_kind", ""))  # exact, or the approximate kind picked
    image_evaluation.metadata["variant"] = "image_only" if image is not None else ""
    log_results(metrics, {**results, **{f"image_only_{k}": v for k, v in (image or {}).items()}})
