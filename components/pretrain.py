"""Train the attribute CNN: backbone + one softmax branch per attribute (§3.4, §4)."""

from amnet_components.images import GPU_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def pretrain_attribute_cnn(split: Input[Dataset], config: dict, parent_run_id: str, model: Output[Model],
                           metrics: Output[Metrics]):
    """attr_train shards -> attribute CNN checkpoint."""
    from amnet.steps.pretrain import run_step
    from amnet.steps.results import log_results

    log_results(metrics, run_step(split.path, model.path, config, parent_run_id))
