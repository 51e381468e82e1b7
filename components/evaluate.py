"""Search the gallery with manipulated queries: top-k accuracy and NDCG@k (§5)."""

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def evaluate_retrieval(split: Input[Dataset], model: Input[Model], features: Input[Dataset], variant: str,
                       config: dict, parent_run_id: str, evaluation: Output[Dataset], metrics: Output[Metrics]):
    """Query shards + model + gallery features -> metrics.json and per-query results of ``variant``."""
    from amnet.steps.evaluate import run_step
    from amnet.steps.results import log_results

    results = run_step(split.path, model.path, features.path, evaluation.path, variant, config, parent_run_id)
    evaluation.metadata["variant"] = variant
    evaluation.metadata["index"] = str(results.get("index_kind", ""))  # exact, or the approximate kind picked
    log_results(metrics, results)
