"""A stage run, tracked: torch's threads matched to the CPUs, and, with ``MLFLOW_TRACKING_URI`` set, an
MLflow run with lineage (:func:`run_tracked`): nested under a parent run when given one, else top-level in
the experiment (the pipeline's cacheable stages), until ``amnet.steps.parent.link_upstream`` nests it."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from amnet import config as cfgmod
from amnet.names import CONFIG_FILE
from amnet.ops.tracking.runs import tracking_enabled
from amnet.steps.settings import scalars

LogFn = Callable[[dict[str, float], int], None]  # (metrics, step): as amnet.runtime.LogFn, without torch
logger = logging.getLogger(__name__)  # `log` is the metrics callback here


def _is_main() -> bool:
    """Rank 0 of a torchrun job, or the only process (torch is imported only under torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return True
    from amnet.train import distributed

    return distributed.is_main()


def run_tracked(stage: str, cfg: Any, body: Callable[[LogFn | None], dict], parent_run_id: str = "",
                tags: dict[str, str] | None = None, artifacts: list[str] | None = None,
                after: Callable[[Any], dict | None] | None = None, io: dict[str, Any] | None = None,
                system_metrics: bool = False) -> dict:
    """Run ``body(log)``; with tracking on, inside an MLflow run nested under ``parent_run_id`` ("" = a
    top-level run, which names itself in ``io["out"]``'s ``mlflow_run.json`` so a later task can nest it).

    Lineage (``amnet.ops.tracking.lineage``): the dataset behind ``io["split"]`` (or, for the split itself, its
    output) is a dataset input of the run, and ``io["out"]`` gets ``mlflow_run.json`` naming the run
    (plus what ``after(run)`` returns, e.g. the logged model id). ``system_metrics``: CPU / memory /
    GPU metrics of the machine while ``body`` runs.

    Outputs are written by ``body`` before anything is logged, so a tracking failure never loses a
    trained model. With ``MLFLOW_TRACKING_URI`` set, an unreachable server fails fast at the start.

    ``io`` (the stage's input and output URIs) makes reruns idempotent in MLflow too: the run is
    tagged with a content key (``runs.run_key``); a retry whose earlier attempt failed or was
    killed logs into that attempt's run, and a rerun of a FINISHED one logs nothing new (the outputs
    are the same: every stage is idempotent). Not when KFP hands over ``MLFLOW_RUN_ID``.
    Every stage that uses torch first matches torch's thread count to the CPUs it really gets
    (``match_torch_threads``); stages that never import torch (split, fingerprint) do not load it.
    Under torchrun only rank 0 tracks (the other ranks run ``body(None)``).
    """
    if "torch" in sys.modules:  # the stage's modules imported it; a torch-free stage stays torch-free
        from amnet.runtime import match_torch_threads

        match_torch_threads()
    if not tracking_enabled() or not _is_main():
        return body(None)  # tracking off (no mlflow import: bare GPU nodes lack it), or a rank > 0 of torchrun
    from amnet.ops.tracking import lineage, runs

    runs.check_tracking_server()
    params = runs.safe_params(cfgmod.flatten(cfg))
    all_tags = {"amnet.stage": stage, **(tags or {})}
    if io is not None and not os.environ.get("MLFLOW_RUN_ID"):
        key = runs.run_key(stage, parent_run_id, params, io)
        done = runs.Tracker().finished_run(key, parent_run_id or None)
        if done:
            logger.info("MLflow: stage %s already has a FINISHED run %s for this config, input and output; "
                        "outputs are checked or rebuilt, nothing is logged again", stage, done)
            result = body(None)
            lineage.mark_output(io, stage, done)
            return result
        all_tags[runs.TAG_RUN_KEY] = key
    with runs.stage_run(stage, parent_run_id or None, params, all_tags, out=(io or {}).get("out", "")) as run:
        lineage.record_input(run, stage, io)
        with runs.system_metrics(run.run_id if system_metrics else None):
            result = body(run.log_metrics)
        run.log_metrics(scalars(result), 0)
        run.log_text(cfgmod.to_yaml(cfg), CONFIG_FILE)
        for path in artifacts or []:
            if os.path.exists(path):
                run.log_artifact(path)
        extra = after(run) if after is not None else None
        lineage.record_output(run, stage, io, extra)
        return result
