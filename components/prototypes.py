"""Initialise the memory: mean attribute-CNN feature per attribute value (§3.4, Memory Initialization)."""

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def compute_prototypes(split: Input[Dataset], attr_model: Input[Model], config: dict, parent_run_id: str,
                       prototypes: Output[Model], metrics: Output[Metrics]):
    """attr_train shards + attribute CNN -> memory matrix (C x Q)."""
    from amnet.steps.prototypes import run_step
    from amnet.steps.results import log_results

    log_results(metrics, run_step(split.path, attr_model.path, prototypes.path, config, parent_run_id))
