"""Register the AMNet model in the MLflow Model Registry; move `champion` only when it is as good."""

from typing import List  # noqa: UP035 (KFP reads typing.List)

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def register_model(
    models: Input[List[Model]],  # noqa: UP006
    evaluations: Input[List[Dataset]],  # noqa: UP006
    features: Input[List[Dataset]],  # noqa: UP006
    split: Input[Dataset],
    config: dict,
    featurize_config: dict,
    evaluate_config: dict,
    parent_run_id: str,
    champion: Input[Artifact],
    decision: Output[Artifact],
    metrics: Output[Metrics],
):
    """Trained variants -> registered `amnet` version (alias challenger; champion if it wins the gate);
    ``champion``: the reevaluate-champion task's scores of the current champion on this data."""
    from amnet.steps.register import run_step
    from amnet.steps.results import log_results

    log_results(metrics, run_step([m.path for m in models], [e.path for e in evaluations], [f.path for f in features],
                                  split.path, decision.path, config, parent_run_id, featurize_config, evaluate_config,
                                  champion.path))
