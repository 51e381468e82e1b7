"""Represent every gallery image with a trained model (§4, Clothing Search)."""

from amnet_components.images import GPU_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def featurize_gallery(split: Input[Dataset], model: Input[Model], variant: str, config: dict, parent_run_id: str,
                      checkpoint_root: str, run_id: str, part: dict, features: Output[Dataset],
                      metrics: Output[Metrics]):
    """Block ``part`` (``{"group", "groups"}``, from plan-featurization) of the gallery's shards + the model
    of ``variant`` ("" = the model's own) -> fp16 feature shards; finished shards also kept under
    ``checkpoint_root``, keyed by ``run_id``, task, inputs and config (a retry skips them). The pipeline
    passes "" as ``parent_run_id`` and ``run_id``: the task stays cacheable (link-upstream-runs nests its
    MLflow run)."""
    from amnet.steps.featurize import run_part
    from amnet.steps.results import log_results

    log_results(metrics, run_part(split.path, model.path, features.path, config, parent_run_id, variant, part,
                                  checkpoint_root, run_id, [split.uri, model.uri], features.uri))
