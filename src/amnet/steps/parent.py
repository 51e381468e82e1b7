"""The MLflow parent run that groups one pipeline run's stage runs: started first, ended by the exit handler."""

from __future__ import annotations

from amnet.ops import tracking


def start(experiment: str, kfp_run_id: str, kfp_run_name: str) -> str:
    """Start the parent run tagged with the KFP run; returns its id ("" when tracking is off)."""
    tags = {"kfp.pipeline_run_id": kfp_run_id, "kfp.pipeline_run_name": kfp_run_name}
    return tracking.start_parent(experiment, kfp_run_name, tags)


def finish(parent_run_id: str, succeeded: bool) -> None:
    """Mark the parent run FINISHED when every stage succeeded, FAILED otherwise."""
    tracking.finish_parent(parent_run_id, "FINISHED" if succeeded else "FAILED")
