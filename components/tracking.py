"""Open and close the MLflow parent run that groups one pipeline run's stage runs, and link the
cacheable upstream stages' runs under it."""

from typing import Optional  # noqa: UP035 (KFP reads typing.Optional)

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Input, Model


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def start_parent_run(experiment: str, kfp_run_id: str, kfp_run_name: str, dataset_uri: str, variants: list,
                     attribute_baseline: bool, split_config: dict, pretrain_config: dict, prototypes_config: dict,
                     train_config: dict, featurize_config: dict, evaluate_config: dict,
                     register_config: dict, seeds: int = 1, image_baseline: bool = True) -> str:
    """Start the parent run tagged with the KFP run, every pipeline parameter as an MLflow parameter;
    returns its id ('' when MLflow is not configured)."""
    from amnet.steps.parent import pipeline_params, start

    sections = {"split": split_config, "pretrain": pretrain_config, "prototypes": prototypes_config,
                "train": train_config, "featurize": featurize_config, "evaluate": evaluate_config,
                "register": register_config}
    return start(experiment, kfp_run_id, kfp_run_name,
                 pipeline_params(dataset_uri, variants, attribute_baseline, experiment, sections, seeds,
                                 image_baseline))


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
    baseline_index: Optional[Input[Dataset]] = None,  # noqa: UP045
    baseline_evaluation: Optional[Input[Dataset]] = None,  # noqa: UP045
):
    """Uncached: put each upstream artifact's MLflow run under the parent (the run itself when made in this
    pipeline run, else a short link run pointing at it); the split's dataset becomes a dataset input of
    the parent."""
    from amnet.steps.parent import link_upstream

    artifacts = {"split": split, "pretrain": attr_model, "prototypes": prototypes,
                 "index-attribute_based": baseline_index, "evaluate-attribute_based": baseline_evaluation}
    link_upstream(parent_run_id, {k: a.path for k, a in artifacts.items() if a is not None},
                  split.path if split is not None else None)
