"""The MLflow parent run that groups one pipeline run's stage runs: started first, ended by the exit handler.

It holds every pipeline parameter as an MLflow parameter (flattened run-file keys: ``dataset``, ``variants``,
``attribute_baseline``, ``image_baseline``, ``train.lam``, ``split.gallery_size``, ...; each stage section
resolved with its defaults, so two runs compare key by key), the dataset as a dataset input, the headline
metrics and the results table (the report stage), and where the pipeline run is (:func:`kfp_run_tags`:
the KFP UI's run page, or the kfp.local run folder). The start task also writes a Markdown link to this
run for the KFP UI (:func:`write_run_link`).

The stages whose work KFP may serve from its cache (split, pretraining, prototypes, training,
featurization, index, evaluation; the attribute baseline's too) get no parent run id: it changes every
run and would make every task a cache miss. Their runs start top-level in the experiment;
:func:`link_upstream` (an uncached task of every pipeline run) nests them under the parent: the run
itself when it was made in this pipeline run, else a short link run pointing at the run that made the
cached artifact.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from amnet import config as cfgmod
from amnet import storage
from amnet.names import NOT_EVALUATED_JSON
from amnet.ops.tracking import runs

log = logging.getLogger(__name__)

FIXED_KEYS = {"train": "variant", "evaluate": "variant"}  # set by the pipeline's variant loop, not the file
TAG_KFP_RUN_URL = "amnet.kfp_run_url"  # the run's page in the Kubeflow Pipelines UI
TAG_KFP_BACKEND = "amnet.kfp_backend"  # "kubeflow" or "local" (kfp.local)
TAG_KFP_PIPELINE_ROOT = "amnet.kfp_pipeline_root"  # where the run's artifacts are
TAG_KFP_RUN_DIR = "amnet.kfp_run_dir"  # kfp.local: the run's own folder under the pipeline root
# the KFP UI (or API) address as the start task sees it (kfp's own variables; the UI's wins)
KFP_ENDPOINT_ENVS = ("KF_PIPELINES_UI_ENDPOINT", "KF_PIPELINES_ENDPOINT")


def pipeline_params(dataset_uri: str, variants: list[str], attribute_baseline: bool, experiment: str,
                    sections: Mapping[str, Mapping[str, Any] | None], seeds: int = 1,
                    image_baseline: bool = True) -> dict[str, Any]:
    """Every pipeline parameter as flat MLflow params: the run-level keys and each stage section resolved
    with its dataclass defaults (``train.lam``, ``pretrain.model.backbone``, ...)."""
    params: dict[str, Any] = {"dataset": dataset_uri, "variants": ",".join(map(str, variants)),
                              "attribute_baseline": bool(attribute_baseline), "image_baseline": bool(image_baseline),
                              "experiment": experiment, "seeds": int(seeds)}
    for cls, section in cfgmod.SECTION_OF.items():
        values = dict(sections.get(section) or {})
        fixed = FIXED_KEYS.get(section)
        resolved = cfgmod.flatten(cfgmod.from_dict(cls, values))
        if fixed:
            resolved.pop(fixed, None)
        params.update({f"{section}.{key}": value for key, value in resolved.items()})
    return params


# ------------------------------------------------------------------------------------- links both ways


def is_local_root(pipeline_root: str) -> bool:
    """A kfp.local pipeline root (a folder on this machine); a cluster's is a URI (``minio://``, ``s3://``)."""
    return bool(pipeline_root) and "://" not in pipeline_root


def kfp_run_url(kfp_run_id: str, env: Mapping[str, str] | None = None) -> str:
    """The run's page in the Kubeflow Pipelines UI, ``{endpoint}/#/runs/details/{run_id}`` (kfp's pattern),
    from ``$KF_PIPELINES_UI_ENDPOINT`` else ``$KF_PIPELINES_ENDPOINT``; "" when neither is set."""
    env = os.environ if env is None else env
    base = next((env[name].strip() for name in KFP_ENDPOINT_ENVS if (env.get(name) or "").strip()), "")
    if not base or not kfp_run_id:
        return ""
    base = base.rstrip("/")
    if not base.startswith(("http://", "https://")):
        base = "https://" + base  # as kfp.Client does for a host without a scheme
    return f"{_without_credentials(base)}/#/runs/details/{kfp_run_id}"


def kfp_run_tags(kfp_run_id: str, kfp_run_name: str, pipeline_root: str = "",
                 env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Where the pipeline run is, as parent-run tags: its KFP run id and name; for kfp.local (a local
    ``pipeline_root``) the backend ``local``, the pipeline root and the run's folder in it; on Kubeflow
    the backend, the pipeline root and, when the KFP endpoint is known, the run page's URL."""
    tags = {"kfp.pipeline_run_id": kfp_run_id, "kfp.pipeline_run_name": kfp_run_name}
    if is_local_root(pipeline_root):
        tags[TAG_KFP_BACKEND] = "local"
        tags[TAG_KFP_PIPELINE_ROOT] = pipeline_root
        if kfp_run_name:
            tags[TAG_KFP_RUN_DIR] = os.path.join(pipeline_root, kfp_run_name)  # kfp.local: <root>/<run name>/<task>
        return tags
    tags[TAG_KFP_BACKEND] = "kubeflow"
    if pipeline_root:
        tags[TAG_KFP_PIPELINE_ROOT] = pipeline_root
    url = kfp_run_url(kfp_run_id, env)
    if url:
        tags[TAG_KFP_RUN_URL] = url
    return tags


def _without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part (a tracking URI may embed one)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))


def mlflow_run_url(run_id: str, experiment_id: str, tracking_uri: str | None = None) -> str:
    """The MLflow UI page of a run: ``$MLFLOW_TRACKING_URI/#/experiments/<id>/runs/<run_id>``, without
    credentials; "" when the tracking URI is not an HTTP server (a ``file:`` or database store)."""
    uri = (tracking_uri if tracking_uri is not None else os.environ.get("MLFLOW_TRACKING_URI", "")).strip()
    if not run_id or not uri.startswith(("http://", "https://")):
        return ""
    return f"{_without_credentials(uri).rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def run_link_markdown(parent_run_id: str) -> str:
    """Markdown for the KFP UI: a link to the MLflow parent run (with its experiment and KFP run tags),
    or a line saying why there is none."""
    if not parent_run_id or not runs.tracking_enabled():
        return "# MLflow\n\nTracking is off for this pipeline run (no `MLFLOW_TRACKING_URI`): no MLflow run.\n"
    client = runs.Tracker().client
    run = client.get_run(parent_run_id)
    experiment = client.get_experiment(run.info.experiment_id).name
    url = mlflow_run_url(parent_run_id, run.info.experiment_id)
    name = run.info.run_name or parent_run_id
    lines = ["# MLflow", "",
             f"Parent run: [{name}]({url})" if url else f"Parent run: `{name}` (`{parent_run_id}`)", "",
             f"- experiment: `{experiment}` (`{run.info.experiment_id}`)", f"- run id: `{parent_run_id}`",
             "- every stage of this pipeline run (or a link to the cached run that made its output) is nested "
             "under it"]
    return "\n".join(lines) + "\n"


def write_run_link(path: str, parent_run_id: str) -> str:
    """Write :func:`run_link_markdown` to ``path`` (the start task's Markdown output); returns the text."""
    text = run_link_markdown(parent_run_id)
    storage.write_text(path, text)
    log.info("MLflow parent run: %s", text.splitlines()[2] if len(text.splitlines()) > 2 else text.strip())
    return text


# -------------------------------------------------------------------------------------- parent run


def start(experiment: str, kfp_run_id: str, kfp_run_name: str, params: Mapping[str, Any] | None = None,
          pipeline_root: str = "") -> str:
    """Start the parent run tagged with the KFP run (:func:`kfp_run_tags`), with the pipeline's parameters;
    returns its id ("" when tracking is off)."""
    return runs.start_parent(experiment, kfp_run_name, kfp_run_tags(kfp_run_id, kfp_run_name, pipeline_root),
                             params)


def finish(parent_run_id: str, succeeded: bool) -> None:
    """Mark the parent run FINISHED when every stage succeeded, FAILED otherwise."""
    runs.finish_parent(parent_run_id, "FINISHED" if succeeded else "FAILED")


# ---------------------------------------------------------------------------------------- stage links


def link_upstream(parent_run_id: str, artifacts: Mapping[str, str | None], split: str | None = None) -> list[str]:
    """Put the stage run behind every artifact (``{label: artifact folder}``) under ``parent_run_id``.

    The run that produced an artifact is named by the artifact's ``mlflow_run.json``. When it was made
    during this pipeline run (a cache miss), that top-level run itself is nested under the parent
    (tag ``mlflow.parentRunId``). When it predates this pipeline run (KFP served the artifact from its
    cache), a short *link run* is nested instead: named ``<stage> (upstream)``, with that run's params,
    final metrics and dataset input, pointing at it (tag ``amnet.upstream_run_id``, ``amnet.cached`` =
    true). An output left empty on purpose (``not_evaluated.json``, no run) is skipped. With ``split``,
    the dataset also becomes a dataset input of the parent run. Idempotent (a retried task finds what it
    did, tag ``amnet.link_key``: the parent and the producing run). Returns the nested run ids; [] with
    tracking off or without a parent.
    """
    if not parent_run_id or not runs.tracking_enabled():
        return []
    from amnet.ops.tracking import lineage

    runs.check_tracking_server()
    client = runs.Tracker().client
    parent = client.get_run(parent_run_id)
    if split:
        info = lineage.dataset_of(split)
        if not any(d.dataset.digest == (info.short_digest if info else "") for d in parent.inputs.dataset_inputs):
            lineage.log_dataset(client, parent_run_id, info, "training")
    links = []
    for label, artifact in artifacts.items():
        if artifact and not left_empty(artifact):
            links.append(_link(client, parent, label, artifact))
    return links


def left_empty(artifact: str) -> bool:
    """An output a task left empty on purpose: ``not_evaluated.json`` and no ``mlflow_run.json`` (the
    image-only output of an evaluate task that did not score it)."""
    from amnet.ops.tracking import lineage

    return not lineage.read_marker(artifact) and storage.exists(storage.join(artifact, NOT_EVALUATED_JSON))


def same_experiment(run: Any, other: Any) -> bool:
    return run.info.experiment_id == other.info.experiment_id


def link_key(parent_run_id: str, label: str, upstream_id: str, artifact: str) -> str:
    """What makes one link unique under a parent: the producing run (one link per run, however many
    artifacts name it), else the artifact itself (an untracked one)."""
    if upstream_id:
        return f"{parent_run_id}:{upstream_id}"
    return f"{parent_run_id}:{label}:{hashlib.sha256(artifact.encode()).hexdigest()[:16]}"


def _link(client: Any, parent: Any, label: str, artifact: str) -> str:
    from mlflow.entities import RunTag

    from amnet.ops.tracking import lineage

    marker = lineage.read_marker(artifact)
    upstream_id = marker.get("run_id", "")
    stage = marker.get("stage") or label
    key = link_key(parent.info.run_id, label, upstream_id, artifact)
    found = client.search_runs([parent.info.experiment_id], f"tags.`amnet.link_key` = '{key}'", max_results=1)
    if found:
        return found[0].info.run_id
    upstream = None
    if upstream_id:
        try:
            upstream = client.get_run(upstream_id)
        except Exception:  # a run on another server or deleted: the link still names it
            upstream = None
    cached = upstream is not None and upstream.info.start_time < parent.info.start_time
    if upstream is not None and not cached and same_experiment(upstream, parent) \
            and not upstream.data.tags.get("mlflow.parentRunId"):
        # made in this pipeline run (a cache miss): the stage run itself moves under the pipeline run,
        # both tags in one request, so a retry finds it by its key or sees it already nested
        client.log_batch(upstream_id, tags=[RunTag("mlflow.parentRunId", parent.info.run_id),
                                            RunTag("amnet.link_key", key)])
        return upstream_id
    if upstream is not None and not cached:
        log.warning("stage run %s (%s) is in another experiment than the pipeline run %s; linked, not moved",
                    upstream_id, stage, parent.info.run_id)
    note = (f"Upstream artifact `{label}`, produced by MLflow run `{upstream_id}`"
            f"{' (served from the KFP cache or an earlier run)' if cached else ''}."
            if upstream_id else f"Upstream artifact `{label}`, produced without MLflow tracking.")
    tags = {"mlflow.parentRunId": parent.info.run_id, "amnet.stage": stage, "amnet.role": "link",
            "amnet.link_key": key, lineage.TAG_UPSTREAM_RUN: upstream_id, "amnet.cached": str(cached).lower(),
            "mlflow.note.content": note, **lineage.source_tags("amnet pipeline (upstream link)")}
    for name in ("amnet.variant", lineage.TAG_DATASET_DIGEST):
        if upstream is not None and name in upstream.data.tags:
            tags[name] = upstream.data.tags[name]
    run = client.create_run(parent.info.experiment_id, run_name=f"{stage} (upstream)", tags=tags)
    logger = runs.MlflowRun(client, run.info.run_id)
    try:
        if upstream is not None:
            logger.log_params(upstream.data.params)
            logger.log_metrics(upstream.data.metrics, 0)
            for entry in upstream.inputs.dataset_inputs:
                client.log_inputs(run.info.run_id, datasets=[entry])
        client.set_terminated(run.info.run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    return run.info.run_id
