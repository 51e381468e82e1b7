"""Where a pipeline task keeps its resumable state: outside its output artifact, keyed by run, task,
inputs and config (:func:`checkpoint_dir`), so a retried attempt resumes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

from amnet import storage

log = logging.getLogger(__name__)


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
            log.warning("checkpoints: no place outside the output for %r; set the compile option "
                        "checkpoint_root (s3://bucket/prefix) to let retries resume", output_uri)
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
