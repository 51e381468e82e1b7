"""The parent run's links both ways, and how cacheable stages' runs get under it (``amnet.steps.parent``).

Unit checks (no server): the KFP run page and MLflow run page URLs (never with credentials), the
parent's KFP tags for Kubeflow and kfp.local. Against the real MLflow server (``stack_env``): the tags
on a started parent run, the Markdown link the start task writes for the KFP UI, and ``link_upstream``
nesting a top-level stage run made during the pipeline run, linking one made before it, skipping an
output left empty on purpose, and doing nothing new when retried.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amnet.ops.tracking import lineage
from amnet.steps import parent

EXPERIMENT = "parent-links"


def test_kfp_run_url_prefers_the_ui_endpoint_and_never_carries_credentials():
    env = {"KF_PIPELINES_ENDPOINT": "https://kfp.example.com/"}
    assert parent.kfp_run_url("run-1", env) == "https://kfp.example.com/#/runs/details/run-1"
    env["KF_PIPELINES_UI_ENDPOINT"] = "https://user:pw@kubeflow.example.com/pipeline"
    assert parent.kfp_run_url("run-1", env) == "https://kubeflow.example.com/pipeline/#/runs/details/run-1"
    assert parent.kfp_run_url("run-1", {"KF_PIPELINES_ENDPOINT": "kfp.internal:8888"}) == \
        "https://kfp.internal:8888/#/runs/details/run-1"  # no scheme: https, as kfp.Client does
    assert parent.kfp_run_url("run-1", {}) == "" and parent.kfp_run_url("", env) == ""


def test_kfp_run_tags_tell_kubeflow_from_kfp_local(tmp_path: Path):
    root = str(tmp_path / "kfp-root")
    local = parent.kfp_run_tags("uuid-1", "amnet-2025-01-01-00-00-00-000000", root,
                                env={"KF_PIPELINES_ENDPOINT": "https://kfp.example.com"})
    assert local == {"kfp.pipeline_run_id": "uuid-1", "kfp.pipeline_run_name": "amnet-2025-01-01-00-00-00-000000",
                     parent.TAG_KFP_BACKEND: "local", parent.TAG_KFP_PIPELINE_ROOT: root,
                     parent.TAG_KFP_RUN_DIR: f"{root}/amnet-2025-01-01-00-00-00-000000"}
    cluster = parent.kfp_run_tags("uuid-2", "amnet-x", "minio://mlpipeline/v2/artifacts",
                                  env={"KF_PIPELINES_ENDPOINT": "https://kfp.example.com"})
    assert cluster[parent.TAG_KFP_BACKEND] == "kubeflow"
    assert cluster[parent.TAG_KFP_RUN_URL] == "https://kfp.example.com/#/runs/details/uuid-2"
    assert cluster[parent.TAG_KFP_PIPELINE_ROOT] == "minio://mlpipeline/v2/artifacts"
    assert parent.TAG_KFP_RUN_URL not in parent.kfp_run_tags("uuid-3", "amnet-y", "s3://b/root", env={})


def test_mlflow_run_url_is_the_ui_page_without_credentials():
    assert parent.mlflow_run_url("abc", "7", "http://127.0.0.1:5000/") == "http://127.0.0.1:5000/#/experiments/7/runs/abc"
    assert parent.mlflow_run_url("abc", "7", "https://ci:secret@mlflow.example.com") == \
        "https://mlflow.example.com/#/experiments/7/runs/abc"
    assert parent.mlflow_run_url("abc", "7", "file:///tmp/mlruns") == ""  # no UI to point at
    assert parent.mlflow_run_url("", "7", "http://127.0.0.1:5000") == ""


def test_without_tracking_the_kfp_markdown_says_so(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "mlflow_run"
    text = parent.write_run_link(str(out), "")
    assert out.read_text() == text and "Tracking is off" in text and "http" not in text


@pytest.mark.slow
def test_parent_tags_markdown_link_and_nesting_against_the_server(stack_env, mlflow_server, tmp_path: Path,
                                                                  monkeypatch):
    """One parent run: KFP tags and the Markdown link; then a stage run from before it (a KFP cache hit)
    gets a link run, one made during it moves under it, and an output left empty gets nothing."""
    from amnet.ops.tracking import runs

    client = stack_env
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    monkeypatch.setenv("KF_PIPELINES_UI_ENDPOINT", "https://kubeflow.example.com/pipeline")

    def stage(name: str, out: Path) -> str:
        """A top-level stage run (no parent: as a cacheable task logs it) named by ``out/mlflow_run.json``."""
        with runs.stage_run(name, None, {"lam": 0.3}, {"amnet.variant": "amnet"}) as run:
            run.log_metrics({"top20": 0.5})
        lineage.write_marker(str(out), name, run.run_id)
        return run.run_id

    earlier = stage("train-amnet", tmp_path / "cached-model")  # a cache hit: made before the pipeline run
    parent_id = parent.start(EXPERIMENT, "uuid-1", "amnet-run-1", {"train.lam": 0.3},
                             pipeline_root="minio://mlpipeline/v2/artifacts")
    tags = client.get_run(parent_id).data.tags
    assert tags["kfp.pipeline_run_id"] == "uuid-1" and tags[parent.TAG_KFP_BACKEND] == "kubeflow"
    assert tags[parent.TAG_KFP_RUN_URL] == "https://kubeflow.example.com/pipeline/#/runs/details/uuid-1"

    markdown = parent.write_run_link(str(tmp_path / "mlflow_run.md"), parent_id)
    experiment_id = client.get_run(parent_id).info.experiment_id
    url = f"{mlflow_server.tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{parent_id}"
    assert f"[amnet-run-1]({url})" in markdown and EXPERIMENT in markdown

    made = stage("evaluate-amnet", tmp_path / "evaluation")  # a cache miss: made during the pipeline run
    (tmp_path / "index").mkdir()
    lineage.write_marker(str(tmp_path / "index"), "evaluate-amnet", made)  # a second artifact of the same run
    empty = tmp_path / "image_evaluation"
    empty.mkdir()
    (empty / "not_evaluated.json").write_text(json.dumps({"variant": "image_only", "evaluated": False}))
    artifacts = {"train": str(tmp_path / "cached-model"), "evaluate": str(tmp_path / "evaluation"),
                 "index": str(tmp_path / "index"), "evaluate-image_only": str(empty)}
    linked = parent.link_upstream(parent_id, artifacts)
    assert len(linked) == 3 and linked[1] == linked[2] == made, linked  # one per producing run
    moved = client.get_run(made)
    assert moved.data.tags["mlflow.parentRunId"] == parent_id and "amnet.role" not in moved.data.tags
    link = client.get_run(linked[0])
    assert link.data.tags["mlflow.parentRunId"] == parent_id and link.data.tags["amnet.role"] == "link"
    assert link.data.tags["amnet.upstream_run_id"] == earlier and link.data.tags["amnet.cached"] == "true"
    assert link.info.run_name == "train-amnet (upstream)" and link.data.params == {"lam": "0.3"}
    assert "mlflow.parentRunId" not in client.get_run(earlier).data.tags  # the cached run stays where it was

    assert parent.link_upstream(parent_id, artifacts) == linked  # a retried link task adds nothing
    children = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(r.info.run_id for r in children) == sorted({*linked})
