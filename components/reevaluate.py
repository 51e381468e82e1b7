"""Score the current champion on this run's evaluation data (a GPU task feeding the registry gate)."""

from amnet_components.images import GPU_IMAGE
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def reevaluate_champion(split: Input[Dataset], config: dict, featurize_config: dict, evaluate_config: dict,
                        champion: Output[Artifact], metrics: Output[Metrics]):
    """The champion's gate metrics on ``split`` (re-featurized when they were measured on other data)."""
    from amnet.steps.reevaluate import run_step
    from amnet.steps.results import log_results

    log_results(metrics, run_step(split.path, champion.path, config, featurize_config, evaluate_config))
