"""What every stage entry point shares: config resolution, CLI flags and MLflow tracking.

A stage's ``run_step(..., config=...)`` is its one code path: the KFP component and the CLI ``main``
both only parse their inputs and call it. ``config`` is a mapping of the stage config's keys
(nested for nested configs, as the run file's section holds them); the dataclass supplies defaults.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import numbers
import os
import sys
import textwrap
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from amnet import config as cfgmod
from amnet import storage
from amnet.errors import ConfigError
from amnet.names import CONFIG_FILE
from amnet.ops.tracking import tracking_enabled

LogFn = Callable[[dict[str, float], int], None]  # (metrics, step): as amnet.runtime.LogFn, without torch

C = TypeVar("C")


def stage_config(cls: type[C], config: Mapping[str, Any] | None, **fixed: Any) -> C:
    """``cls`` from defaults <- ``config``; ``fixed`` keys (the variant a pipeline loop sets) win, and
    ``config`` may not contradict them."""
    values = dict(config or {})
    for key, value in fixed.items():
        if key in values and values[key] != value:
            raise ConfigError(f"{key} is set by the pipeline ({value!r}), not by the config ({values[key]!r}); "
                              "choose variants with the run-level `variants` list")
        values[key] = value
    return cfgmod.from_dict(cls, values)


def scalars(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in result.items()
            if isinstance(v, numbers.Number) and not isinstance(v, bool)}


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
    """Run ``body(log)``; with tracking on, inside an MLflow run nested under ``parent_run_id``.

    Lineage (``amnet.ops.lineage``): the dataset behind ``io["split"]`` (or, for the split itself, its
    output) is a dataset input of the run, and ``io["out"]`` gets ``mlflow_run.json`` naming the run
    (plus what ``after(run)`` returns, e.g. the logged model id). ``system_metrics``: CPU / memory /
    GPU metrics of the machine while ``body`` runs.

    Outputs are written by ``body`` before anything is logged, so a tracking failure never loses a
    trained model. With ``MLFLOW_TRACKING_URI`` set, an unreachable server fails fast at the start.

    ``io`` (the stage's input and output URIs) makes reruns idempotent in MLflow too: the run is
    tagged with a content key (``tracking.run_key``); a retry whose earlier attempt failed or was
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
    from amnet.ops import lineage, tracking

    tracking.check_tracking_server()
    params = tracking.safe_params(cfgmod.flatten(cfg))
    all_tags = {"amnet.stage": stage, **(tags or {})}
    if io is not None and not os.environ.get("MLFLOW_RUN_ID"):
        key = tracking.run_key(stage, parent_run_id, params, io)
        done = tracking.Tracker().finished_run(key, parent_run_id or None)
        if done:
            print(f"MLflow: stage {stage} already has a FINISHED run {done} for this config, input and output; "
                  "outputs are checked or rebuilt, nothing is logged again")
            result = body(None)
            lineage.mark_output(io, stage, done)
            return result
        all_tags[tracking.TAG_RUN_KEY] = key
    with tracking.stage_run(stage, parent_run_id or None, params, all_tags) as run:
        lineage.record_input(run, stage, io)
        with tracking.system_metrics(run.run_id if system_metrics else None):
            result = body(run.log_metrics)
        run.log_metrics(scalars(result), 0)
        run.log_text(cfgmod.to_yaml(cfg), CONFIG_FILE)
        for path in artifacts or []:
            if os.path.exists(path):
                run.log_artifact(path)
        extra = after(run) if after is not None else None
        lineage.record_output(run, stage, io, extra)
        return result


# -------------------------------------------------------------------------------------- checkpoints


def checkpoint_dir(root: str, output_uri: str, task: str, run_id: str, inputs: list[str], config: Any) -> str:
    """Where a pipeline task keeps resumable state: outside its output artifact, keyed by run and task.

    ``<root>/checkpoints/<run_id or "shared">/<task>-<key>``, ``key`` a digest of the task's input URIs
    and config, so a retried attempt (same run, inputs and config, but a fresh output folder) finds
    the state an earlier attempt left. Cacheable tasks get no run id (it would change their cache key
    every run): two runs share their state only when they share the inputs and config, which is
    exactly when the work is the same. ``root`` "" = derived from ``output_uri``: the first path segment
    of an ``s3://`` (or ``minio://``) pipeline root, or the run folder of a local one; "" (the default,
    inside the output folder) for a root amnet cannot write to, with a line saying so.
    """
    if not root:
        root = _root_of(output_uri)
        if not root:
            print(f"checkpoints: no place outside the output for {output_uri!r}; set the compile option "
                  "checkpoint_root (s3://bucket/prefix) to let retries resume")
            return ""
    key = hashlib.sha256(json.dumps({"task": task, "inputs": list(inputs), "config": config}, sort_keys=True,
                                    default=str).encode()).hexdigest()[:16]
    return storage.join(root, "checkpoints", run_id or "shared", f"{task}-{key}")


def _root_of(output_uri: str) -> str:
    """A shared place near a KFP output artifact's URI (see :func:`checkpoint_dir`); "" if none."""
    uri = str(output_uri)
    if uri.startswith("minio://"):
        uri = "s3://" + uri[len("minio://"):]
    if storage.is_s3(uri):
        bucket, key = storage.split_s3(uri)
        first = key.strip("/").split("/")[0] if key.strip("/") else ""
        return f"s3://{bucket}/{first}" if first else f"s3://{bucket}"
    if "://" in uri or not uri:
        return ""
    # kfp.local: <pipeline_root>/<run>/<task>/<output> -> the run folder
    return os.path.dirname(os.path.dirname(os.path.abspath(uri)))


# ------------------------------------------------------------------------------------- command line


def config_keys_help(config: type) -> str:
    """'config keys (--set KEY=VALUE), with defaults: a=1, b.c=x, ...' for a stage's --help."""
    flat = cfgmod.flatten(config())
    return "config keys (--set KEY=VALUE or --config FILE), with defaults:\n  " + textwrap.fill(
        ", ".join(f"{k}={v}" for k, v in flat.items()), width=100, subsequent_indent="  ")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Argument defaults in the option list, and the epilog's line breaks kept."""


def base_parser(prog: str, description: str, config: type | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_HelpFormatter,
                                epilog=config_keys_help(config) if config is not None else None)
    if config is not None:
        section = cfgmod.SECTION_OF.get(config, "")
        p.add_argument("--config", help="YAML file with this stage's config keys, or a run file "
                       f"(configs/*.yaml) whose `{section}:` section is used")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config key (repeatable; dotted keys reach nested ones: "
                       "model.backbone=alexnet)")
    p.add_argument("--parent-run-id", default=os.environ.get("AMNET_PARENT_RUN_ID", ""),
                   help="MLflow parent run to nest this stage's run under "
                   "(tracking is on when MLFLOW_TRACKING_URI is set)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def add_checkpoint_flag(p: argparse.ArgumentParser, what: str = "resumable training state") -> None:
    p.add_argument("--checkpoint-dir", default="", metavar="URI",
                   help=f"{what}: a folder or s3:// prefix outside OUT, so a rerun with a fresh --out resumes "
                   "(default: OUT/checkpoints)")


def cli_config(config: type, args: argparse.Namespace, extra: list[str] | None = None) -> dict[str, Any]:
    """The config mapping a stage's command line gives (``--config`` file <- ``--set`` items)."""
    return cfgmod.read_values(config, args.config, list(args.overrides) + list(extra or []))


def print_result(result: dict[str, Any]) -> None:
    width = max((len(k) for k in result), default=0)
    for key, value in result.items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        print(f"  {key.ljust(width)}  {shown}")
