"""The featurization fan-out (§4 Clothing Search at catalogue scale): plan the gallery's shard groups,
and merge the groups' features into one artifact carrying the search index."""

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def plan_featurization(split: Input[Dataset], config: dict) -> list:
    """``[{"group": g, "groups": G}, ...]``: ceil(gallery shards / ``shards_per_task``) featurization tasks."""
    from amnet.steps.index import plan

    return plan(split.path, config)


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def build_search_index(features: Input[list[Dataset]], split: Input[Dataset], model: Input[Model], variant: str,
                       config: dict, parent_run_id: str, index: Output[Dataset], metrics: Output[Metrics]):
    """The groups' feature shards -> one feature artifact with the search index (built once, its recall@20
    against exact search recorded), tracked as ``index-<variant>``; the whole gallery is attached to the
    model's servable MLflow model. The pipeline passes "" as ``parent_run_id`` (cacheable;
    link-upstream-runs nests the MLflow run)."""
    from amnet.steps.index import run_step
    from amnet.steps.results import log_results

    results = run_step([f.path for f in features], split.path, model.path, index.path, config, parent_run_id,
                       variant=variant)
    index.metadata["index"] = str(results.get("index_kind", ""))
    log_results(metrics, results)
