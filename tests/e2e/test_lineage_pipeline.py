"""Lineage of whole pipeline runs through ``kfp.local`` (cache on) against the real local stack.

Three pipeline runs on the same data: λ = 0.5, then λ = 0.3, then λ = 0.3 again. The second serves
split, pretraining, prototypes and the attribute baseline from kfp.local's cache; the third, with
nothing changed, also training, featurization, index and evaluation. Each still shows every stage under
its MLflow parent run (the stage runs it made, moved there, and link runs pointing at the runs that
produced the cached artifacts): no stage run is left a top-level row. Every parent run holds every
pipeline parameter and the dataset input, and links both ways with its kfp.local run (tags naming the
local run folder; the start task's Markdown output linking the parent run's MLflow page); the registered
version's source run is the training run.
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.helpers import chromium_page, tiny_dataset

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

EXPERIMENT = "lineage-pipeline"
MODEL_NAME = "amnet-lineage-pipeline"
TINY = {"split_config": {"per_value": 10, "gallery_size": 300, "num_queries": 40},
        "pretrain_config": {"epochs": 1}, "train_config": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8},
        "register_config": {"model_name": MODEL_NAME}}
UPSTREAM = {"split": "split-dataset", "pretrain": "pretrain-attribute-cnn", "prototypes": "compute-prototypes",
            "featurize-attribute_based": "featurize-gallery", "index-attribute_based": "build-search-index",
            "evaluate-attribute_based": "evaluate-retrieval"}
# the trained variant's stages (one featurization group: a 300-image gallery is one shard)
TRAINED = ("train-amnet", "featurize-amnet", "index-amnet", "evaluate-amnet", "evaluate-image_only")
# tasks that do the work: cache hits when nothing changed
WORK_TASKS = ("split-dataset", "pretrain-attribute-cnn", "compute-prototypes", "plan-featurization",
              "expand-variants", "train-amnet", "featurize-gallery", "build-search-index", "evaluate-retrieval")


@pytest.fixture(scope="module")
def two_runs(mlflow_server, tmp_path_factory) -> dict:
    """Three cached pipeline runs, λ = 0.5 (the default), 0.3, 0.3 again; their folders, times, the pipeline
    root and the MLflow client."""
    from amnet_pipeline.local_run import run_pipeline
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("lineage-pipeline")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "MLFLOW_RUN_ID",
                     "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(name, raising=False)
        for name, value in mlflow_server.env.items():
            mp.setenv(name, value)
        params = {**TINY, "dataset_uri": tiny_dataset(root), "variants": ["amnet"], "attribute_baseline": True,
                  "experiment": EXPERIMENT}
        first_times: dict[str, str] = {}
        first = run_pipeline(params, root / "work", cache=True, times=first_times)
        second_params = {**params, "train_config": {**params["train_config"], "lam": 0.3}}
        second_times: dict[str, str] = {}
        second = run_pipeline(second_params, root / "work", cache=True, times=second_times)
        third_times: dict[str, str] = {}
        third = run_pipeline(second_params, root / "work", cache=True, times=third_times)
    return {"first": first, "second": second, "third": third, "times": (first_times, second_times, third_times),
            "root": root / "work" / "kfp-root", "client": MlflowClient(tracking_uri=mlflow_server.tracking_uri),
            "tracking_uri": mlflow_server.tracking_uri}


def parents(client) -> list:
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], "tags.`amnet.role` = 'pipeline'",
                              order_by=["attributes.start_time ASC"])
    assert len(runs) == 3, [r.info.run_name for r in runs]
    return runs


def children(client, parent) -> list:
    return client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")


def base_task(name: str) -> str:
    """``featurize-gallery-2 #2`` -> ``featurize-gallery`` (KFP numbers a component's uses, ``times`` iterations)."""
    head, _, tail = name.split(" #")[0].rpartition("-")
    return head if tail.isdigit() else name.split(" #")[0]


def test_the_rerun_is_served_from_the_cache(two_runs):
    first, second, third = two_runs["times"]
    assert all(first[t].endswith(" s") for t in ("split-dataset", "pretrain-attribute-cnn", "compute-prototypes"))
    assert all(second[t] == "cached" for t in ("split-dataset", "pretrain-attribute-cnn", "compute-prototypes"))
    assert second["train-amnet"].endswith(" s")  # λ changed: training reran
    # nothing changed: every task that does work is a cache hit, the trained variant's included
    work = {name: value for name, value in third.items() if base_task(name) in WORK_TASKS}
    assert {base_task(n) for n in work} == set(WORK_TASKS), sorted(third)
    assert all(value == "cached" for value in work.values()), third
    # the bookkeeping runs every time: the parent run, the data's fingerprint, the links, registry, report
    ran = {base_task(n) for n, value in third.items() if value != "cached"}
    assert ran == {"start-parent-run", "fingerprint-dataset", "link-upstream-runs", "reevaluate-champion",
                   "register-model", "build-report", "finish-parent-run"}, third


def test_both_parent_runs_hold_their_parameters_and_dataset(two_runs):
    client = two_runs["client"]
    (split_json,) = two_runs["first"].glob("**/split-dataset/split/split.json")
    digest = json.loads(split_json.read_text())["dataset_digest"]
    lams = []
    for parent in parents(client):
        params = parent.data.params
        lams.append(params["train.lam"])
        assert params["variants"] == "amnet" and params["split.gallery_size"] == "300"
        assert params["attribute_baseline"] == "True" and params["register.model_name"] == MODEL_NAME
        assert params["image_baseline"] == "True"
        assert [d.dataset.digest for d in parent.inputs.dataset_inputs] == [digest[:12]]
        assert parent.info.status == "FINISHED"
        assert parent.data.tags["mlflow.source.type"] == "JOB" and parent.data.tags["amnet.version"]
        assert "| amnet |" in parent.data.tags["mlflow.note.content"]  # the results table as its description
        assert "amnet_top20" in parent.data.metrics and "attribute_based_top20" in parent.data.metrics
        assert "image_only_top20" in parent.data.metrics and "amnet_minus_image_only_top20" in parent.data.metrics
        # the third run's is a link run to the second's (training was a cache hit): it carries the dataset too
        trains = [r for r in children(client, parent) if r.data.tags.get("amnet.stage") == "train-amnet"]
        assert len(trains) == 1 and trains[0].inputs.dataset_inputs[0].dataset.digest == digest[:12]
    assert lams == ["0.5", "0.3", "0.3"]


def test_upstream_stages_sit_under_both_pipeline_runs(two_runs):
    """First run: the upstream stage runs themselves (the attribute baseline's featurization included)
    move under it. Second run (cache hits): link runs under it point at those same runs."""
    client = two_runs["client"]
    first_parent, second_parent, _ = parents(client)
    own = {r.data.tags["amnet.stage"]: r for r in children(client, first_parent)
           if r.data.tags["amnet.stage"] in UPSTREAM}
    assert set(own) == set(UPSTREAM), sorted(own)
    assert not [r for r in children(client, first_parent) if r.data.tags.get("amnet.role") == "link"]
    links = {r.data.tags["amnet.stage"]: r for r in children(client, second_parent)
             if r.data.tags.get("amnet.role") == "link"}
    assert set(links) == set(UPSTREAM), sorted(links)
    for stage, link in links.items():
        assert link.data.tags["amnet.upstream_run_id"] == own[stage].info.run_id
        assert link.data.tags["amnet.cached"] == "true" and link.info.run_name == f"{stage} (upstream)"
        assert link.data.params == own[stage].data.params
        assert link.inputs.dataset_inputs[0].dataset.digest == own[stage].inputs.dataset_inputs[0].dataset.digest


def test_every_stage_run_sits_under_its_pipeline_run(two_runs):
    """No stage run is a top-level row of the experiment: every run is a pipeline (parent) run or nested
    under one. The second run made its own trained-variant runs (λ changed) and they moved under it; the
    third (nothing changed, all cache hits) shows link runs to exactly those."""
    client = two_runs["client"]
    tops = parents(client)
    ids = {p.info.run_id for p in tops}
    everything = client.search_runs([tops[0].info.experiment_id])
    top_level = [r.info.run_name for r in everything
                 if r.info.run_id not in ids and not r.data.tags.get("mlflow.parentRunId")]
    assert top_level == [], top_level
    assert all(r.data.tags["mlflow.parentRunId"] in ids for r in everything if r.info.run_id not in ids)
    _, second, third = tops
    own = {r.data.tags["amnet.stage"]: r for r in children(client, second) if r.data.tags.get("amnet.role") != "link"}
    assert set(TRAINED) <= set(own), sorted(own)
    links = {r.data.tags["amnet.stage"]: r for r in children(client, third) if r.data.tags.get("amnet.role") == "link"}
    assert set(links) == set(TRAINED) | set(UPSTREAM), sorted(links)
    assert not [r for r in children(client, third) if r.data.tags.get("amnet.stage") in TRAINED
                and r.data.tags.get("amnet.role") != "link"]  # nothing retrained, re-featurized, re-evaluated
    for stage in TRAINED:
        assert links[stage].data.tags["amnet.upstream_run_id"] == own[stage].info.run_id, stage
        assert links[stage].data.tags["amnet.cached"] == "true", stage


def test_each_parent_run_and_its_kfp_local_run_link_to_each_other(two_runs):
    """The parent run names its kfp.local run (backend, pipeline root, run folder); the run's start task
    wrote a Markdown output linking the parent run's MLflow UI page (what the KFP UI shows)."""
    from amnet_pipeline.local_run import parent_run_link

    client = two_runs["client"]
    for parent, run_dir in zip(parents(client), (two_runs[k] for k in ("first", "second", "third")), strict=True):
        tags = parent.data.tags
        assert tags["amnet.kfp_backend"] == "local" and "amnet.kfp_run_url" not in tags
        assert tags["amnet.kfp_pipeline_root"] == str(two_runs["root"])
        assert Path(tags["amnet.kfp_run_dir"]) == run_dir and tags["kfp.pipeline_run_name"] == run_dir.name
        url = (f"{two_runs['tracking_uri'].rstrip('/')}/#/experiments/{parent.info.experiment_id}/runs/"
               f"{parent.info.run_id}")
        markdown = (run_dir / "start-parent-run" / "mlflow_run").read_text()
        assert f"[{parent.info.run_name}]({url})" in markdown, markdown
        assert parent_run_link(run_dir) == url


def test_the_registered_version_traces_to_its_training_run(two_runs):
    client = two_runs["client"]
    version = client.get_model_version_by_alias(MODEL_NAME, "challenger")
    train = client.get_run(version.run_id)
    assert train.data.tags["amnet.stage"] == "train-amnet" and train.data.params["lam"] == "0.3"
    assert train.data.tags["mlflow.parentRunId"] == parents(client)[1].info.run_id
    assert version.source.startswith("models:/m-")
    (model,) = Path(two_runs["second"]).glob("**/train-amnet/model")
    assert json.loads((model / "mlflow_run.json").read_text())["run_id"] == train.info.run_id


def test_the_mlflow_ui_shows_both_runs_with_dataset_and_lambda(two_runs, tmp_path):
    """The real MLflow UI in headless Chromium (Debian's, through Playwright): the experiment's runs table
    lists both pipeline runs with their dataset and source, each run page shows its λ, and the model
    version page names its source run, a training run."""
    errors: list[str] = []
    with chromium_page({"width": 1600, "height": 1000}) as (sync_api, page):  # skips before any setup
        client, uri = two_runs["client"], two_runs["tracking_uri"]
        runs = parents(client)[:2]  # λ 0.5 and 0.3 (the third is the second again)
        experiment = runs[0].info.experiment_id
        dataset = runs[0].inputs.dataset_inputs[0].dataset
        version = client.get_model_version_by_alias(MODEL_NAME, "challenger")

        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{uri}/#/experiments/{experiment}/runs")
        for run in runs:
            sync_api.expect(page.get_by_text(run.info.run_name, exact=True)).to_be_visible(timeout=60_000)
        sync_api.expect(page.get_by_text(f"{dataset.name} ({dataset.digest})").first).to_be_visible()
        sync_api.expect(page.get_by_text("amnet pipeline").first).to_be_visible()  # the Source column
        page.screenshot(path=str(tmp_path / "mlflow-runs.png"), full_page=True)

        for run, lam in zip(runs, ("0.5", "0.3"), strict=True):
            page.goto(f"{uri}/#/experiments/{experiment}/runs/{run.info.run_id}")
            sync_api.expect(page.get_by_text("train.lam", exact=True)).to_be_visible(timeout=60_000)
            assert re.search(rf"train\.lam\s+{re.escape(lam)}\s", page.inner_text("body")), run.info.run_name

        # the compare view tells the two pipeline runs apart by λ
        ids = json.dumps([run.info.run_id for run in runs])
        page.goto(f"{uri}/#/compare-runs?runs={ids}&experiments={json.dumps([experiment])}")
        sync_api.expect(page.get_by_text("train.lam", exact=True).first).to_be_visible(timeout=60_000)
        assert re.search(r"train\.lam\s+0\.5\s+0\.3\s", page.inner_text("body"))
        page.get_by_text("Show diff only").first.click()
        sync_api.expect(page.get_by_text("train.epochs", exact=True)).to_have_count(0)  # equal: hidden
        page.screenshot(path=str(tmp_path / "mlflow-compare.png"), full_page=True)

        page.goto(f"{uri}/#/models/{MODEL_NAME}/versions/{version.version}")
        sync_api.expect(page.get_by_text("Source Run", exact=False).first).to_be_visible(timeout=60_000)
        sync_api.expect(page.get_by_role("link", name="train-amnet")).to_be_visible()
        page.screenshot(path=str(tmp_path / "mlflow-version.png"), full_page=True)
    assert client.get_run(version.run_id).info.run_name == "train-amnet"
    if os.environ.get("AMNET_TEST_ARTIFACTS"):
        dest = Path(os.environ["AMNET_TEST_ARTIFACTS"])
        dest.mkdir(parents=True, exist_ok=True)
        for shot in tmp_path.glob("mlflow-*.png"):
            shutil.copy(shot, dest / shot.name)
