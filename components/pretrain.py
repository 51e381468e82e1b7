"""Train the attribute CNN: backbone + one softmax branch per attribute (§3.4, §4)."""

from amnet_components.images import GPU_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def pretrain_attribute_cnn(split: Input[Dataset], config: dict, parent_run_id: str, checkpoint_root: str,
                           model: Output[Model], metrics: Output[Metrics], processes: int = 1):
    """attr_train shards -> attribute CNN; resumable state under ``checkpoint_root`` (a retry resumes);
    ``processes`` > 1: one rank per GPU of the pod, started by torchrun's launcher API."""
    from amnet.steps.checkpoints import checkpoint_dir
    from amnet.steps.pretrain import run_step
    from amnet.steps.results import log_results

    state = checkpoint_dir(checkpoint_root, model.uri, "pretrain", "", [split.uri], config)
    log_results(metrics, run_step(split.path, model.path, config, parent_run_id, checkpoint_dir=state,
                                  processes=processes))
