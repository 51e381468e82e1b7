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
    parent_run_id: str,
    model_name: str,
    gate_metrics: str,
    gate_margin: float,
    gate_rule: str,
    decision: Output[Artifact],
    metrics: Output[Metrics],
):
    """Trained variants -> registered `amnet` version (alias challenger; champion if it wins the gate)."""
    from amnet.registry import GateRule, run_register
    from amnet.steps.results import log_results

    rule = GateRule(tuple(gate_metrics.split(",")), gate_margin, gate_rule)
    results = run_register([m.path for m in models], [e.path for e in evaluations], [f.path for f in features],
                           split.path, decision.path, model_name=model_name, rule=rule,
                           parent_run_id=parent_run_id)
    log_results(metrics, results)
