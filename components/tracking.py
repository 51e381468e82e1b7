"""Open and close the MLflow parent run that groups one pipeline run's stage runs."""

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def start_parent_run(experiment: str, kfp_run_id: str, kfp_run_name: str) -> str:
    """Start the parent run tagged with the KFP run; returns its id ('' when MLflow is not configured)."""
    from amnet.steps.parent import start

    return start(experiment, kfp_run_id, kfp_run_name)


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def finish_parent_run(parent_run_id: str, status: dsl.PipelineTaskFinalStatus):
    """Mark the parent run FINISHED when the stages succeeded, FAILED otherwise (exit handler)."""
    from amnet.steps.parent import finish

    finish(parent_run_id, status.state == "SUCCEEDED")
