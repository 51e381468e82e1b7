"""The MLflow parent run that groups one pipeline run's stage runs: started first, ended by the exit handler.

It holds every pipeline parameter as an MLflow parameter (flattened run-file keys: ``dataset``, ``variants``,
``attribute_baseline``, ``image_baseline``, ``train.lam``, ``split.gallery_size``, ...; each stage section
resolved with its defaults, so two runs compare key by key), the dataset as a dataset input, the headline
metrics and the results table (the report stage). Upstream stages (split, pretraining, prototypes, the
attribute baseline) get no parent run id, so KFP can serve them from its cache; :func:`link_upstream` (an
uncached task of every pipeline run) nests their runs under the parent: the run itself when it was made in
this pipeline run, else a short link run pointing at the run that made the cached artifact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from amnet import config as cfgmod
from amnet.ops.tracking import runs

FIXED_KEYS = {"train": "variant", "evaluate": "variant"}  # set by the pipeline's variant loop, not the file


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


def start(experiment: str, kfp_run_id: str, kfp_run_name: str, params: Mapping[str, Any] | None = None) -> str:
    """Start the parent run tagged with the KFP run, with the pipeline's parameters; returns its id
    ("" when tracking is off)."""
    tags = {"kfp.pipeline_run_id": kfp_run_id, "kfp.pipeline_run_name": kfp_run_name}
    return runs.start_parent(experiment, kfp_run_name, tags, params)


def finish(parent_run_id: str, succeeded: bool) -> None:
    """Mark the parent run FINISHED when every stage succeeded, FAILED otherwise."""
    runs.finish_parent(parent_run_id, "FINISHED" if succeeded else "FAILED")


def link_upstream(parent_run_id: str, artifacts: Mapping[str, str | None], split: str | None = None) -> list[str]:
    """Put every upstream artifact's stage run (``{label: artifact folder}``) under ``parent_run_id``.

    The run that produced an artifact is named by the artifact's ``mlflow_run.json``. When it was made
    during this pipeline run (a cache miss), that standalone run itself is nested under the parent
    (tag ``mlflow.parentRunId``). When it predates this pipeline run (KFP served the artifact from its
    cache), a short *link run* is nested instead: named ``<stage> (upstream)``, with that run's params,
    final metrics and dataset input, pointing at it (tag ``amnet.upstream_run_id``, ``amnet.cached`` =
    true). With ``split``, the dataset also becomes a dataset input of the parent run. Idempotent (a
    retried task finds what it did, tag ``amnet.link_key``). Returns the nested run ids; [] with
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
        if artifact:
            links.append(_link(client, parent, label, artifact))
    return links


def same_experiment(run: Any, other: Any) -> bool:
    return run.info.experiment_id == other.info.experiment_id


def _link(client: Any, parent: Any, label: str, artifact: str) -> str:
    from amnet.ops.tracking import lineage

    marker = lineage.read_marker(artifact)
    upstream_id = marker.get("run_id", "")
    stage = marker.get("stage") or label
    key = f"{parent.info.run_id}:{label}"
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
        # made in this pipeline run (a cache miss): the stage run itself moves under the pipeline run
        client.set_tag(upstream_id, "mlflow.parentRunId", parent.info.run_id)
        client.set_tag(upstream_id, "amnet.link_key", key)
        return upstream_id
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
