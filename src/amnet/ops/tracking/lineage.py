"""Lineage in MLflow: where a run's code and data came from, and which run made an artifact.

* :func:`source_tags`: MLflow's source conventions on every run (``mlflow.source.name`` / ``.type`` /
  ``.git.commit``) plus the package version and the container image (``AMNET_IMAGE``).
* :func:`dataset_of`: the dataset a split was cut from (name, digest, source URI, row counts), read from
  the split's ``split.json``; :func:`log_dataset` records it as an MLflow dataset input of a run, which
  fills the experiment page's Dataset column. The digest is the fingerprint stage's ``dataset_digest``
  when the split has one; otherwise a content digest of the dataset's ``manifest.parquet`` and
  ``attributes.json`` (when readable), else of ``split.json`` itself.
* :func:`write_marker` / :func:`read_marker`: ``mlflow_run.json`` inside a stage's output artifact names
  the MLflow run (and logged model) that produced it, so a later task can point at that run even
  when KFP served the artifact from its cache.

No credentials: the tracking URI (which may embed a password) is never written anywhere.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from amnet import __version__, storage
from amnet.names import SPLIT_JSON

MARKER = "mlflow_run.json"  # in a stage's output artifact: the MLflow run (and model) that produced it
TAG_DATASET_DIGEST = "amnet.dataset_digest"
TAG_UPSTREAM_RUN = "amnet.upstream_run_id"  # on a link run: the run that produced the upstream artifact
IMAGE_ENV = "AMNET_IMAGE"
COMMIT_ENV = "AMNET_GIT_COMMIT"
DIGEST_CHARS = 12  # shown in the Dataset column (MLflow keeps at most 36); the full digest is a run tag


# ---------------------------------------------------------------------------------------------- source


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit this code runs from: ``$AMNET_GIT_COMMIT`` (set in images), else ``git rev-parse HEAD``
    of the source checkout of an editable install; "" when unknown."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV].strip()
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else ""


def source_tags(name: str) -> dict[str, str]:
    """MLflow source tags of a run started by ``name`` (e.g. ``amnet step train``), plus the package
    version and, when ``AMNET_IMAGE`` is set, the container image."""
    tags = {"mlflow.source.name": name, "mlflow.source.type": "JOB", "amnet.version": __version__}
    if git_commit():
        tags["mlflow.source.git.commit"] = git_commit()
    if os.environ.get(IMAGE_ENV):
        tags["amnet.image"] = os.environ[IMAGE_ENV]
    return tags


# --------------------------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset version as MLflow shows it: ``name``, ``digest``, ``source`` URI and a profile of counts."""

    name: str
    digest: str
    source: str
    profile: dict[str, Any] = field(default_factory=dict)

    @property
    def short_digest(self) -> str:
        return self.digest.split(":")[-1][:DIGEST_CHARS]


def _content_digest(dataset: str) -> str:
    """sha256 over the dataset's manifest and vocabulary ("" when they cannot be read from here)."""
    digest = hashlib.sha256()
    try:
        for name in ("manifest.parquet", "attributes.json"):
            digest.update(storage.read_bytes(storage.join(dataset, name)))
            digest.update(f"|{name}|".encode())
    except Exception:  # a moved or unreadable dataset: fall back to the split's identity
        return ""
    return digest.hexdigest()


def dataset_of(split: str) -> DatasetInfo | None:
    """The dataset ``split`` was cut from, from its ``split.json``; None when ``split`` is not a split."""
    uri = storage.join(split, SPLIT_JSON)
    try:
        text = storage.read_text(uri)
    except Exception:  # not a split, or unreadable: lineage is best effort, never fatal
        return None
    summary = json.loads(text)
    source = str(summary.get("dataset") or split)
    digest = str(summary.get("dataset_digest") or "") or _content_digest(source) \
        or hashlib.sha256(text.encode()).hexdigest()
    counts = ("rows_in", "kept", "quarantined", "attr_train", "gallery", "queries", "triplet_pool")
    profile = {k: summary[k] for k in counts if isinstance(summary.get(k), int)}
    name = os.path.basename(source.rstrip("/")) or source
    return DatasetInfo(name=name, digest=digest, source=source, profile=profile)


def dataset_entity(info: DatasetInfo):
    """``info`` as an ``mlflow.entities.Dataset`` (source type ``s3`` or ``local``, source ``{"uri": ...}``)."""
    from mlflow.entities import Dataset

    return Dataset(name=info.name[:500], digest=info.short_digest,
                   source_type="s3" if storage.is_s3(info.source) else "local",
                   source=json.dumps({"uri": info.source}), schema=None,
                   profile=json.dumps({"num_rows": info.profile.get("rows_in"), **info.profile}))


def log_dataset(client: Any, run_id: str, info: DatasetInfo | None, context: str) -> None:
    """Record ``info`` as a dataset input of ``run_id`` (``mlflow.data.context`` = ``context``) and
    its full digest and row count as tags. A no-op for ``None``."""
    if info is None:
        return
    from mlflow.entities import DatasetInput, InputTag

    client.log_inputs(run_id, datasets=[DatasetInput(dataset_entity(info), [InputTag("mlflow.data.context", context)])])
    client.set_tag(run_id, TAG_DATASET_DIGEST, info.digest)
    if "rows_in" in info.profile:
        client.set_tag(run_id, "amnet.dataset_rows", str(info.profile["rows_in"]))


# ---------------------------------------------------------------------------------------------- marker


def write_marker(out: str, stage: str, run_id: str, **extra: str) -> None:
    """``out/mlflow_run.json``: the run (and e.g. ``model_id``) that produced the artifact ``out``."""
    payload = {"stage": stage, "run_id": run_id, **{k: v for k, v in extra.items() if v}}
    storage.write_text(storage.join(out, MARKER), json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_marker(artifact: str) -> dict[str, str]:
    """What :func:`write_marker` left in ``artifact`` ({} when the artifact was produced untracked)."""
    uri = storage.join(artifact, MARKER)
    try:
        return json.loads(storage.read_text(uri)) if storage.exists(uri) else {}
    except (ValueError, OSError):
        return {}


# ------------------------------------------------------------------------------------ stage runs

CONTEXTS = {"split": "source", "pretrain": "training", "prototypes": "training", "train": "training",
            "featurize": "gallery", "evaluate": "evaluation"}


def _context(stage: str) -> str:
    return CONTEXTS.get(stage.split("-")[0], "input")


def record_input(run: Any, stage: str, io: dict[str, Any] | None) -> None:
    """Before a stage runs: the dataset behind its ``split`` input as a dataset input of ``run``."""
    if io and io.get("split") and getattr(run, "client", None) is not None:
        log_dataset(run.client, run.run_id, dataset_of(str(io["split"])), _context(stage))


def record_output(run: Any, stage: str, io: dict[str, Any] | None, extra: dict[str, str] | None = None) -> None:
    """After a stage ran: the split stage's dataset (known only now) and ``mlflow_run.json`` in its output."""
    if not io or not io.get("out") or getattr(run, "client", None) is None:
        return
    if "dataset" in io:
        log_dataset(run.client, run.run_id, dataset_of(str(io["out"])), _context(stage))
    write_marker(str(io["out"]), stage, run.run_id, **(extra or {}))


def mark_output(io: dict[str, Any] | None, stage: str, run_id: str) -> None:
    """A rerun that logged nothing new: its output still names the run that holds its record."""
    if io and io.get("out") and not read_marker(str(io["out"])):
        write_marker(str(io["out"]), stage, run_id)
