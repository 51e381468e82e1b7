"""Lineage and the servable champion, against the real MLflow server (SeaweedFS artifacts).

One tracked chain per module: split -> pretrain -> prototypes (standalone runs, as the cacheable upstream
stages log them) and train -> featurize -> evaluate under a pipeline parent run, then the registry.
Checked: source tags and the dataset input on every stage run, system metrics on training and
featurization, the training run's pyfunc searcher (with the gallery attached by featurization) as the
registered version, the pyfunc round trip equal to `amnet search`, the parent's parameters, the link
runs of upstream artifacts, KFP's injected ``MLFLOW_RUN_ID``, and ``mlflow models serve`` over HTTP.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import TINY_MODEL

pytestmark = pytest.mark.slow

EXPERIMENT = "lineage-tests"
MODEL_NAME = "amnet-lineage"
IMAGE = "registry.test/amnet:0.1.0"


@pytest.fixture(scope="module")
def client(mlflow_server):
    """Tracking on for this module (env restored afterwards), pointed at the session's stack."""
    from mlflow import MlflowClient

    with pytest.MonkeyPatch.context() as mp:
        for name, value in mlflow_server.env.items():
            mp.setenv(name, value)
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mp.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        mp.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
        mp.setenv("AMNET_IMAGE", IMAGE)
        yield MlflowClient(tracking_uri=mlflow_server.tracking_uri)


@pytest.fixture(scope="module")
def chain(client, trained_chain, tmp_path_factory) -> dict:
    """The tracked chain's folders, run ids and registry decision."""
    from amnet.ops.registry.gate import register_and_gate
    from amnet.steps import evaluate, featurize, parent, pretrain, prototypes, split, train

    root = tmp_path_factory.mktemp("lineage")
    out = {name: str(root / name) for name in ("split", "attr", "protos", "model", "feats", "eval", "decision")}
    split.run_step(str(trained_chain.dataset), out["split"], {"per_value": 8, "gallery_size": 200, "num_queries": 20,
                                                              "shard_size": 64}, progress=False)
    pretrain.run_step(out["split"], out["attr"], {"model": TINY_MODEL, "epochs": 1, "batch_size": 32}, progress=False)
    prototypes.run_step(out["split"], out["attr"], out["protos"], progress=False)
    params = parent.pipeline_params(str(trained_chain.dataset), ["amnet"], False, EXPERIMENT,
                                    {"train": {"lam": 0.3, "epochs": 1}})
    parent_id = parent.start(EXPERIMENT, "kfp-run-1", "lineage-run", params)
    train.run_step(out["split"], out["attr"], out["protos"], out["model"], "amnet",
                   {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8, "lam": 0.3}, parent_id, progress=False)
    featurize.run_step(out["split"], out["model"], out["feats"], parent_run_id=parent_id, progress=False)
    evaluate.run_step(out["split"], out["model"], out["feats"], out["eval"], parent_run_id=parent_id, progress=False)
    decision = register_and_gate(out["model"], out["eval"], out["feats"], out["split"], out["decision"],
                                 model_name=MODEL_NAME, parent_run_id=parent_id)
    links = parent.link_upstream(parent_id, {"split": out["split"], "pretrain": out["attr"],
                                             "prototypes": out["protos"]}, out["split"])
    parent.finish(parent_id, True)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = {r.data.tags.get("amnet.stage"): r for r in client.search_runs([exp.experiment_id])
            if r.data.tags.get("amnet.role") != "link"}
    return {"out": out, "parent": parent_id, "decision": decision, "links": links, "runs": runs,
            "digest": json.loads(Path(out["split"], "split.json").read_text())["dataset_digest"]}


def test_every_stage_run_has_source_tags_and_the_dataset_input(client, chain):
    from amnet.ops.tracking import lineage

    stages = {"split", "pretrain", "prototypes", "train-amnet", "featurize-amnet", "evaluate-amnet"}
    assert stages <= set(chain["runs"]), sorted(chain["runs"])
    for stage in stages:
        run = client.get_run(chain["runs"][stage].info.run_id)
        tags = run.data.tags
        assert tags["mlflow.source.type"] == "JOB" and tags["mlflow.source.name"].startswith("amnet step"), stage
        assert tags["amnet.version"] and tags["amnet.image"] == IMAGE, stage
        assert tags.get("mlflow.source.git.commit", "") == lineage.git_commit(), stage  # "" outside a checkout
        (entry,) = run.inputs.dataset_inputs
        assert entry.dataset.digest == chain["digest"][:12], stage
        assert json.loads(entry.dataset.source)["uri"].endswith("synth-700-0-64"), stage
        assert json.loads(entry.dataset.profile)["rows_in"] == 700, stage
        assert tags["amnet.dataset_digest"] == chain["digest"], stage
    context = {t.key: t.value for t in client.get_run(chain["runs"]["evaluate-amnet"].info.run_id)
               .inputs.dataset_inputs[0].tags}
    assert context["mlflow.data.context"] == "evaluation"


def test_training_and_featurization_record_system_metrics(client, chain):
    for stage in ("train-amnet", "featurize-amnet"):
        metrics = client.get_run(chain["runs"][stage].info.run_id).data.metrics
        assert any(k.startswith("system/cpu_utilization") for k in metrics), (stage, sorted(metrics))
        assert any(k.startswith("system/system_memory_usage") for k in metrics), (stage, sorted(metrics))
    assert not any(k.startswith("system/") for k in client.get_run(chain["runs"]["evaluate-amnet"].info.run_id)
                   .data.metrics)


def test_the_registered_version_is_the_training_runs_own_model(client, chain):
    import mlflow

    train_run = chain["runs"]["train-amnet"]
    marker = json.loads(Path(chain["out"]["model"], "mlflow_run.json").read_text())
    assert marker["run_id"] == train_run.info.run_id and marker["model_id"].startswith("m-")
    version = client.get_model_version(MODEL_NAME, chain["decision"].version)
    # version -> training run -> params -> dataset digest, one step each
    assert version.run_id == train_run.info.run_id and version.source == f"models:/{marker['model_id']}"
    run = client.get_run(version.run_id)
    assert run.data.params["lam"] == "0.3" and run.data.tags["amnet.dataset_digest"] == chain["digest"]
    assert run.data.tags["mlflow.parentRunId"] == chain["parent"]
    assert "eval/top20" in run.data.metrics  # the gate's scores on the version's source run
    info = mlflow.models.get_model_info(f"models:/{MODEL_NAME}@champion")
    assert "python_function" in info.flavors
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["image", "gallery_id", "changes", "k"]
    # no register run: nothing was logged a second time
    assert "register" not in chain["runs"]


def test_the_pyfunc_model_answers_like_amnet_search(client, chain, capsys):
    import mlflow
    import pandas as pd

    from amnet.cli import main
    from amnet.search.searcher import Searcher

    local = Searcher.load(model=chain["out"]["model"], features=chain["out"]["feats"], gallery=chain["out"]["split"])
    query, changes = local.ids[7], {"color": "blue", "collar": "plush"}
    expected = [r.image_id for r in local.search(query, changes, k=10)]

    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    answer = model.predict(pd.DataFrame([{"gallery_id": query, "changes": changes, "k": 10},
                                         {"image": base64.b64encode(local.image_bytes(query)).decode(),
                                          "changes": changes, "k": 3}]))
    assert list(answer[answer["query"] == 0]["image_id"]) == expected
    assert list(answer[answer["query"] == 0]["rank"]) == list(range(1, 11))
    by_image = [r.image_id for r in local.search(local.image_bytes(query), changes, k=3)]
    assert list(answer[answer["query"] == 1]["image_id"]) == by_image

    assert main(["search", "--model", f"models:/{MODEL_NAME}@champion", "--gallery-id", query, "--set", "color=blue",
                 "--set", "collar=plush", "-k", "10", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["image_id"] for r in printed["results"]] == expected


def test_the_parent_run_holds_params_dataset_note_and_links_to_upstream_runs(client, chain):
    from amnet.steps import parent

    run = client.get_run(chain["parent"])
    assert run.info.status == "FINISHED" and run.data.tags["amnet.role"] == "pipeline"
    params = run.data.params
    assert params["train.lam"] == "0.3" and params["train.epochs"] == "1" and params["variants"] == "amnet"
    assert params["split.gallery_size"] == "2000" and params["pretrain.model.backbone"] == "small"
    assert "train.variant" not in params
    assert run.data.tags["mlflow.source.name"] == "amnet pipeline"
    assert [d.dataset.digest for d in run.inputs.dataset_inputs] == [chain["digest"][:12]]

    links = {client.get_run(i).data.tags["amnet.stage"]: client.get_run(i) for i in chain["links"]}
    assert set(links) == {"split", "pretrain", "prototypes"}
    for stage, link in links.items():
        assert link.data.tags["mlflow.parentRunId"] == chain["parent"]
        assert link.data.tags["amnet.upstream_run_id"] == chain["runs"][stage].info.run_id
        assert link.data.tags["amnet.cached"] == "true"  # produced before this pipeline run started
        assert link.data.params == chain["runs"][stage].data.params
        assert link.inputs.dataset_inputs[0].dataset.digest == chain["digest"][:12]
    again = parent.link_upstream(chain["parent"], {"split": chain["out"]["split"]})
    assert again == [links["split"].info.run_id]  # a retried task reuses its link run


def test_kfp_injected_run_id_becomes_the_parent_and_stays_kfps(client, chain, monkeypatch):
    from amnet.steps import parent

    exp = client.get_experiment_by_name(EXPERIMENT).experiment_id
    kfp_run = client.create_run(exp, run_name="kfp-pipeline-run")
    task_run = client.create_run(exp, run_name="start-parent-run",
                                 tags={"mlflow.parentRunId": kfp_run.info.run_id})
    monkeypatch.setenv("MLFLOW_RUN_ID", task_run.info.run_id)
    got = parent.start(EXPERIMENT, "kfp-run-2", "kfp-run-2", {"train.lam": 0.2})
    assert got == kfp_run.info.run_id
    parent.finish(got, True)
    run = client.get_run(got)
    assert run.info.status == "RUNNING"  # KFP ends its own run
    assert run.data.params["train.lam"] == "0.2" and run.data.tags["amnet.role"] == "pipeline"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mlflow_models_serve_answers_like_amnet_search(client, chain, tmp_path):
    """The real MLflow scoring server on loopback, loading models:/NAME@champion."""
    from amnet.ops.registry.model_uri import open_searcher

    searcher = open_searcher(f"models:/{MODEL_NAME}@champion")
    query, changes = searcher.ids[3], {"color": "red"}
    expected = [r.image_id for r in searcher.search(query, changes, k=8)]
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([str(mlflow_bin), "models", "serve", "-m", f"models:/{MODEL_NAME}@champion",
                             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT,  # it starts uvicorn from PATH: this venv's
                            env={**os.environ, "PATH": f"{mlflow_bin.parent}{os.pathsep}{os.environ['PATH']}"})
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        body = json.dumps({"dataframe_records": [{"gallery_id": query, "changes": changes, "k": 8}]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            predictions = json.loads(resp.read())["predictions"]
        assert [p["image_id"] for p in predictions] == expected
        assert [p["rank"] for p in predictions] == list(range(1, 9))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
