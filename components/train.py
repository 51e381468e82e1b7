"""Train AMNet or one of its ablations on manipulation triplets (§3.2-3.6, Eq. 1-6)."""

from amnet_components.images import GPU_IMAGE, PROJECT_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train_amnet(split: Input[Dataset], attr_model: Input[Model], prototypes: Input[Model], variant: str,
                config: dict, parent_run_id: str, checkpoint_root: str, run_id: str, model: Output[Model],
                metrics: Output[Metrics], processes: int = 1, seed: int = -1):
    """Triplet pool + attribute CNN + prototypes -> AMNet model of ``variant``, trained with ``seed`` (-1 =
    the config's); resumable state under ``checkpoint_root``, keyed by ``run_id``, task, seed, inputs and
    config (a retry resumes); ``processes`` > 1: one rank per GPU of the pod (torchrun's launcher API).
    The pipeline passes "" as ``parent_run_id`` and ``run_id``: the task stays cacheable, its MLflow run is
    nested under the pipeline's parent run by link-upstream-runs."""
    from amnet.steps.checkpoints import checkpoint_dir
    from amnet.steps.results import log_results
    from amnet.steps.train import run_step

    seed = int(seed)  # KFP hands loop items' numbers as floats
    state = checkpoint_dir(checkpoint_root, model.uri, f"train-{variant}" + (f"-seed{seed}" if seed >= 0 else ""),
                           run_id, [split.uri, attr_model.uri, prototypes.uri], config)
    log_results(metrics, run_step(split.path, attr_model.path, prototypes.path, model.path, variant, config,
                                  parent_run_id, checkpoint_dir=state, processes=processes, seed=seed))


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def train_amnet_trainjob(split: Input[Dataset], attr_model: Input[Model], prototypes: Input[Model], variant: str,
                         config: dict, parent_run_id: str, checkpoint_root: str, run_id: str, cluster: dict,
                         model: Output[Model], metrics: Output[Metrics], seed: int = -1):
    """The same training as ``train_amnet``, on ``cluster["num_nodes"]`` nodes: submits a Kubeflow Trainer
    TrainJob (``amnet.steps.train.run_on_nodes``), streams its log, waits; the job writes the model
    straight to this task's output URI and its resumable state under ``checkpoint_root``."""
    from amnet.steps.checkpoints import checkpoint_dir
    from amnet.steps.results import log_results
    from amnet.steps.train import run_on_nodes

    seed = int(seed)  # KFP hands loop items' numbers as floats
    if seed >= 0:
        config = {**config, "seed": seed}
    state = checkpoint_dir(checkpoint_root, model.uri, f"train-{variant}" + (f"-seed{seed}" if seed >= 0 else ""),
                           run_id, [split.uri, attr_model.uri, prototypes.uri], config)
    log_results(metrics, run_on_nodes(split.uri, attr_model.uri, prototypes.uri, model.uri, variant, config,
                                      parent_run_id, state, cluster, marker_dir=model.path,
                                      labels={"amnet.variant": variant}))
