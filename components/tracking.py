"""Open and close the MLflow parent run that groups one pipeline run's stage runs, and nest the cacheable
stages' runs under it."""

from typing import List, Optional  # noqa: UP035 (KFP reads typing.List / typing.Optional)

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Model, Output


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def start_parent_run(experiment: str, kfp_run_id: str, kfp_run_name: str, pipeline_root: str, dataset_uri: str,
                     variants: list, attribute_baseline: bool, split_config: dict, pretrain_config: dict,
                     prototypes_config: dict, train_config: dict, featurize_config: dict, evaluate_config: dict,
                     register_config: dict, mlflow_run: Output[Markdown], seeds: int = 1,
                     image_baseline: bool = True) -> str:
    """Start the parent run tagged with the KFP run (its UI page, or the kfp.local run folder under
    ``pipeline_root``), every pipeline parameter as an MLflow parameter; ``mlflow_run``: a link to it for
    the KFP UI. Returns its id ('' when MLflow is not configured)."""
    from amnet.steps.parent import pipeline_params, start, write_run_link

    sections = {"split": split_config, "pretrain": pretrain_config, "prototypes": prototypes_config,
                "train": train_config, "featurize": featurize_config, "evaluate": evaluate_config,
                "register": register_config}
    run_id = start(experiment, kfp_run_id, kfp_run_name,
                   pipeline_params(dataset_uri, variants, attribute_baseline, experiment, sections, seeds,
                                   image_baseline), pipeline_root)
    write_run_link(mlflow_run.path, run_id)
    return run_id


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def expand_variants(variants: list, seeds: int, train_config: dict) -> list:
    """``[{"variant", "seed"}, ...]``: each trained variant with ``seeds`` training seeds from ``train.seed`` on."""
    from amnet.steps.variants import expand

    return expand(variants, seeds, train_config)


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def finish_parent_run(parent_run_id: str, status: dsl.PipelineTaskFinalStatus):
    """Mark the parent run FINISHED when the stages succeeded, FAILED otherwise (exit handler)."""
    from amnet.steps.parent import finish

    finish(parent_run_id, status.state == "SUCCEEDED")


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def link_upstream_runs(
    parent_run_id: str,
    split: Optional[Input[Dataset]] = None,  # noqa: UP045
    attr_model: Optional[Input[Model]] = None,  # noqa: UP045
    prototypes: Optional[Input[Model]] = None,  # noqa: UP045
    model: Optional[Input[Model]] = None,  # noqa: UP045
    features: Optional[Input[List[Dataset]]] = None,  # noqa: UP006, UP045
    index: Optional[Input[Dataset]] = None,  # noqa: UP045
    evaluation: Optional[Input[Dataset]] = None,  # noqa: UP045
    image_evaluation: Optional[Input[Dataset]] = None,  # noqa: UP045
):
    """Uncached: put the MLflow run behind each artifact of a cacheable stage under the parent (the run
    itself when made in this pipeline run, else a short link run pointing at it); the split's dataset
    becomes a dataset input of the parent. ``features``: a model's featurization groups."""
    from amnet.steps.parent import link_upstream

    artifacts = {"split": split, "pretrain": attr_model, "prototypes": prototypes, "train": model,
                 **{f"featurize-{i + 1}": part for i, part in enumerate(features or [])},
                 "index": index, "evaluate": evaluation, "evaluate-image_only": image_evaluation}
    link_upstream(parent_run_id, {k: a.path for k, a in artifacts.items() if a is not None},
                  split.path if split is not None else None)
