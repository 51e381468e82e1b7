"""Lineage of whole pipeline runs through ``kfp.local`` (cache on) against the real local stack.

Two pipeline runs on the same data with different λ: the second serves split, pretraining, prototypes
and the attribute baseline from kfp.local's cache, and still shows them under its MLflow parent run
(link runs pointing at the runs that produced the cached artifacts). Both parent runs hold every
pipeline parameter and the dataset input; the registered version's source run is the training run.
"""

import json
from pathlib import Path

import pytest

from tests.helpers import tiny_dataset

pytestmark = pytest.mark.slow

EXPERIMENT = "lineage-pipeline"
MODEL_NAME = "amnet-lineage-pipeline"
TINY = {"split_config": {"per_value": 10, "gallery_size": 300, "num_queries": 40},
        "pretrain_config": {"epochs": 1}, "train_config": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8},
        "register_config": {"model_name": MODEL_NAME}}
UPSTREAM = {"split": "split-dataset", "pretrain": "pretrain-attribute-cnn", "prototypes": "compute-prototypes",
            "featurize-attribute_based": "featurize-gallery", "evaluate-attribute_based": "evaluate-retrieval"}


@pytest.fixture(scope="module")
def two_runs(mlflow_server, tmp_path_factory) -> dict:
    """Two cached pipeline runs, λ = 0.2 (the default) then 0.5; their folders, times and MLflow client."""
    from mlflow import MlflowClient

    from amnet_pipeline.local_run import run_pipeline

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
        second_params = {**params, "train_config": {**params["train_config"], "lam": 0.5}}
        second_times: dict[str, str] = {}
        second = run_pipeline(second_params, root / "work", cache=True, times=second_times)
    return {"first": first, "second": second, "times": (first_times, second_times),
            "client": MlflowClient(tracking_uri=mlflow_server.tracking_uri), "tracking_uri": mlflow_server.tracking_uri}


def parents(client) -> list:
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], "tags.`amnet.role` = 'pipeline'",
                              order_by=["attributes.start_time ASC"])
    assert len(runs) == 2, [r.info.run_name for r in runs]
    return runs


def children(client, parent) -> list:
    return client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")


def test_the_rerun_is_served_from_the_cache(two_runs):
    first, second = two_runs["times"]
    assert all(first[t].endswith(" s") for t in ("split-dataset", "pretrain-attribute-cnn", "compute-prototypes"))
    assert all(second[t] == "cached" for t in ("split-dataset", "pretrain-attribute-cnn", "compute-prototypes"))
    assert second["train-amnet"].endswith(" s")  # λ changed: training reran


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
        assert [d.dataset.digest for d in parent.inputs.dataset_inputs] == [digest[:12]]
        assert parent.data.tags["mlflow.source.type"] == "JOB" and parent.data.tags["amnet.version"]
        assert "| amnet |" in parent.data.tags["mlflow.note.content"]  # the results table as its description
        assert "amnet_top20" in parent.data.metrics and "attribute_based_top20" in parent.data.metrics
        trains = [r for r in children(client, parent) if r.data.tags.get("amnet.stage") == "train-amnet"]
        assert len(trains) == 1 and trains[0].inputs.dataset_inputs[0].dataset.digest == digest[:12]
    assert lams == ["0.2", "0.5"]


def test_cached_upstream_stages_sit_under_both_pipeline_runs(two_runs):
    client = two_runs["client"]
    first_parent, second_parent = parents(client)
    linked = []
    for parent in (first_parent, second_parent):
        links = {r.data.tags["amnet.stage"]: r for r in children(client, parent)
                 if r.data.tags.get("amnet.role") == "link"}
        assert set(links) == set(UPSTREAM), sorted(links)
        linked.append({stage: link.data.tags["amnet.upstream_run_id"] for stage, link in links.items()})
        for stage, link in links.items():
            upstream = client.get_run(link.data.tags["amnet.upstream_run_id"])
            assert upstream.data.tags["amnet.stage"] == stage and "mlflow.parentRunId" not in upstream.data.tags
            assert link.data.params == upstream.data.params
            expected_cached = "true" if parent is second_parent else "false"
            assert link.data.tags["amnet.cached"] == expected_cached, (stage, parent.info.run_name)
    assert linked[0] == linked[1]  # the second run's cached artifacts point at the first run's stage runs


def test_the_registered_version_traces_to_its_training_run(two_runs):
    client = two_runs["client"]
    version = client.get_model_version_by_alias(MODEL_NAME, "challenger")
    train = client.get_run(version.run_id)
    assert train.data.tags["amnet.stage"] == "train-amnet" and train.data.params["lam"] == "0.5"
    assert train.data.tags["mlflow.parentRunId"] == parents(client)[1].info.run_id
    assert version.source.startswith("models:/m-")
    (model,) = Path(two_runs["second"]).glob("**/train-amnet/model")
    assert json.loads((model / "mlflow_run.json").read_text())["run_id"] == train.info.run_id
