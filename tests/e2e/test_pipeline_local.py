"""The whole pipeline through ``kfp.local`` on a tiny synthetic dataset, against the real local stack.

Same code path as ``amnet run --local`` (``local_run.run_pipeline``): every component runs as a
subprocess of this Python, artifacts go to ``tmp_path``, tracking goes to the session's MLflow server
(``mlflow_server`` fixture, real SeaweedFS + MLflow). A few minutes on a 2-core CPU.

The successful run carries planted fake credentials in its environment (an MLflow password, a KFP
token, a Hugging Face token, a database password) next to the stack's real S3 secret key; afterwards
every byte the run left behind is scanned for them: the tasks' combined stdout / stderr, every file
under the run's ``kfp-root`` and cache, and every MLflow run of the experiment (name, params, tags,
metric names, and each text artifact).
"""

import builtins
import hashlib
import json
from pathlib import Path

import boto3
import pytest

from amnet.errors import AmnetError
from amnet.model_store import load_payload
from amnet.ops.registry.gate import TAG_SOURCE
from tests.helpers import tiny_dataset

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
ORIGINAL_PRINT = builtins.print  # kfp.local swaps it per task; a run must leave it as it found it

TINY = {"split_config": {"per_value": 10, "gallery_size": 300, "num_queries": 40},
        "pretrain_config": {"epochs": 1}, "train_config": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8},
        # a key set in the run config reaches its stage: evaluate records the index it was told to use
        "evaluate_config": {"index": "ivf"}}
# the featurization fan-out: a 300-image gallery in 3 shards, 2 shards per task -> 2 groups per model
FANNED = {**TINY, "split_config": {**TINY["split_config"], "shard_size": 100},
          "featurize_config": {"shards_per_task": 2}}



def parent_runs(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    return client.search_runs([exp.experiment_id], "tags.`amnet.role` = 'pipeline'")


PLANTED = {  # fake values, never needed by the local stack, so they are only ever *carried*
    "MLFLOW_TRACKING_USERNAME": "ci-user",
    "MLFLOW_TRACKING_PASSWORD": "fake-mlflow-password-pipeline-3c9e",
    "KF_PIPELINES_TOKEN": "fake-kfp-token-pipeline-77aa",
    "HF_TOKEN": "hf_fakePipelineTokenMustNotLeak",
    "AMNET_DB_PASSWORD": "fake-db-password-pipeline-b2d4",
}


def secrets_in(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


def scan_run_for_secrets(secrets: dict[str, str], logs: str, folders: list[Path], client, experiment: str,
                         scratch: Path) -> list[str]:
    """Every place a secret could surface after a run -> ``'where: NAME'`` for each one found."""
    found = [f"logs: {name}" for name in secrets_in(logs, secrets)]
    files = [f for folder in folders for f in folder.rglob("*") if f.is_file()]
    assert files, folders
    for path in files:
        found += [f"{path}: {name}" for name in secrets_in(path.read_bytes().decode("latin-1"), secrets)]
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) >= 5, len(runs)
    for run in runs:
        logged = repr([run.info.run_name, run.data.params, run.data.tags, sorted(run.data.metrics)])
        found += [f"mlflow run {run.info.run_id}: {name}" for name in secrets_in(logged, secrets)]
        stack = [a for a in client.list_artifacts(run.info.run_id)]
        while stack:
            item = stack.pop()
            if item.is_dir:
                stack += client.list_artifacts(run.info.run_id, item.path)
            elif item.path.endswith((".yaml", ".json", ".md", ".html", ".txt", "MLmodel")):
                local = Path(client.download_artifacts(run.info.run_id, item.path, str(scratch)))
                text = local.read_text(errors="replace")
                found += [f"mlflow artifact {item.path}: {name}" for name in secrets_in(text, secrets)]
    return found


def test_whole_pipeline_runs_locally_is_tracked_and_leaks_no_credential(tmp_path, stack_env, mlflow_server,
                                                                        monkeypatch, capfd):
    mlflow_env = mlflow_server
    from amnet_pipeline.local_run import results_table, run_pipeline

    for name, value in PLANTED.items():
        monkeypatch.setenv(name, value)

    params = {**FANNED, "dataset_uri": tiny_dataset(tmp_path), "variants": ["amnet", "no_memory"],
              "attribute_baseline": True, "experiment": "pipeline-local-ok"}
    times: dict[str, str] = {}
    run_dir = run_pipeline(params, tmp_path / "work", cache=False, times=times)

    # the breakdown `amnet run --local` prints: every task once, ParallelFor iterations numbered
    assert {"split-dataset", "pretrain-attribute-cnn", "train-amnet", "train-amnet #2", "evaluate-retrieval",
            "evaluate-retrieval-2", "evaluate-retrieval-2 #2", "build-report"} <= set(times), times
    assert all(v.endswith(" s") for v in times.values()), times  # cache=False: everything ran

    assert builtins.print is ORIGINAL_PRINT  # later output (CLIs, other tests) is not indented
    table = results_table(run_dir).splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in table[2:]}
    # image_only (on by default): the amnet model's own query vector, scored beside amnet by its evaluate task
    assert set(rows) == {"amnet", "no_memory", "attribute_based", "image_only"}
    for variant, cells in rows.items():
        assert len(cells) == 8 and all(0.0 <= float(c) <= 1.0 for c in cells), (variant, cells)
    indexes = [json.loads(f.read_text())["timing"]["index"]
               for f in run_dir.glob("**/evaluate-retrieval*/evaluation/metrics.json")]
    # auto would pick exact for a 300-image gallery; the trained variants search the stored index
    assert sorted(i["kind"] for i in indexes) == ["attribute_rule", "ivf", "ivf"], indexes
    assert [i["stored"] for i in indexes if i["kind"] == "ivf"] == [True, True], indexes
    # image_only searched amnet's stored index; no_memory's and the attribute baseline's evaluate tasks left
    # their image output empty (a marker saying why)
    (image,) = [json.loads(f.read_text()) for f in run_dir.glob("**/evaluate-retrieval*/image_evaluation/metrics.json")]
    assert image["variant"] == "image_only" and image["timing"]["index"]["stored"] is True
    skipped = list(run_dir.glob("**/evaluate-retrieval*/image_evaluation/not_evaluated.json"))
    assert len(skipped) == 2, skipped
    # fan-out: 2 featurization groups per model (3 models), each a block of the 3 gallery shards; one
    # build-index per model merges them (all 300 images) and stores the index with its recall
    parts = [json.loads(f.read_text()) for f in run_dir.glob("**/featurize-gallery*/features/features.json")]
    assert sorted((p["group"], p["groups"], p["count"]) for p in parts) == [(0, 2, 200)] * 3 + [(1, 2, 100)] * 3
    built = [json.loads(f.read_text()) for f in run_dir.glob("**/build-search-index*/index/index.json")]
    assert len(built) == 3 and all(b["count"] == 300 for b in built), built
    assert sorted(b["kind"] for b in built) == ["ivf"] * 3 and all(0 < b["recall_at_20"] <= 1 for b in built)
    logs = {p.name for p in (run_dir / "logs").glob("*.log")}
    assert {"split-dataset.log", "train-amnet.log", "train-amnet_2.log", "build-report.log"} <= logs, logs
    # `amnet run --local --json`: the same run as data (it round-trips through JSON)
    from amnet_pipeline.local_run import summary_data

    data = json.loads(json.dumps(summary_data(run_dir, {"MLFLOW_TRACKING_URI": mlflow_env.tracking_uri},
                                              "pipeline-local-ok", 1.0, times)))
    assert {e["variant"] for e in data["evaluations"]} == set(rows)
    assert all(0.0 <= e["metrics"]["top1"] <= 1.0 for e in data["evaluations"])
    assert data["mlflow"]["parent_run_id"] and data["mlflow"]["experiment"] == "pipeline-local-ok"
    assert data["reports"] and data["results"] and data["tasks"] == times
    (report,) = run_dir.glob("build-report*/report")
    assert "amnet" in (report / "report.md").read_text()
    assert (report / "report.html").read_text().startswith("<!doctype html>")

    (parent,) = parent_runs(stack_env, "pipeline-local-ok")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["kfp.pipeline_run_id"] and parent.data.tags["kfp.pipeline_run_name"]
    children = stack_env.search_runs([parent.info.experiment_id],
                                     f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    stages = {run.data.tags.get("amnet.stage") for run in children}
    assert {"train-amnet", "train-no_memory", "featurize-amnet-1of2", "featurize-amnet-2of2", "index-amnet",
            "evaluate-amnet", "evaluate-no_memory", "evaluate-image_only"} <= stages
    # cacheable stages get no parent run id (it would defeat KFP caching); made in this pipeline run
    # (cache=False), link-upstream-runs moves their own runs under the pipeline run: no link runs, and no
    # stage run left a top-level row (the attribute baseline's featurization groups included)
    assert {"split", "pretrain", "prototypes", "featurize-attribute_based-1of2", "featurize-attribute_based-2of2",
            "index-attribute_based", "evaluate-attribute_based"} <= stages
    everything = stack_env.search_runs([parent.info.experiment_id])
    assert [r.info.run_name for r in everything if r.info.run_id != parent.info.run_id
            and r.data.tags.get("mlflow.parentRunId") != parent.info.run_id] == []
    assert not [run for run in children if run.data.tags.get("amnet.role") == "link"]
    (train_run,) = [r for r in children if r.data.tags.get("amnet.stage") == "train-amnet"]
    assert train_run.data.params["lam"] == "0.5" and train_run.data.params["margin"] == "1.0"
    history = stack_env.get_metric_history(train_run.info.run_id, "loss")
    assert [m.step for m in history][:1] == [1]  # per-epoch losses with steps
    logged = {a.path for a in stack_env.list_artifacts(train_run.info.run_id)}
    assert {"config.yaml", "model.pt"} <= logged
    import mlflow  # MLflow 3: logging a model creates a LoggedModel linked to its source run (the pyfunc searcher)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_env.tracking_uri)  # the fluent API, for this test only
    models = mlflow.search_logged_models(experiment_ids=[parent.info.experiment_id], output_format="list",
                                         filter_string=f"source_run_id = '{train_run.info.run_id}'")
    assert len(models) == 1
    assert mlflow.models.get_model_info(models[0].model_uri).signature is not None
    # the artifacts really are in the S3 bucket behind the MLflow server
    s3 = boto3.session.Session().client("s3", endpoint_url=mlflow_env.endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=mlflow_env.bucket, Prefix="mlflow/").get("Contents", [])]
    assert any(k.endswith("/model.pt") for k in keys) and any("report.html" in k for k in keys)

    # no credential anywhere: the planted fakes and the stack's real S3 secret key
    secrets = {k: v for k, v in PLANTED.items() if k != "MLFLOW_TRACKING_USERNAME"}
    secrets["AWS_SECRET_ACCESS_KEY"] = mlflow_env.env["AWS_SECRET_ACCESS_KEY"]
    captured = capfd.readouterr()
    logs = captured.out + captured.err
    assert "Executing task" in logs or "[amnet] stage" in logs  # the tasks' output really was captured
    scratch = tmp_path / "downloaded"
    scratch.mkdir()
    found = scan_run_for_secrets(secrets, logs, [tmp_path / "work"], stack_env, "pipeline-local-ok", scratch)
    assert found == [], found


def test_failed_stage_marks_the_parent_run_failed(tmp_path, stack_env):
    from amnet_pipeline.local_run import run_pipeline

    params = {**TINY, "dataset_uri": str(tmp_path / "no-such-dataset"), "variants": ["amnet"],
              "experiment": "pipeline-local-fail"}
    with pytest.raises(AmnetError, match="fingerprint-dataset"):  # the first stage that reads the data
        run_pipeline(params, tmp_path / "work", cache=False)
    (parent,) = parent_runs(stack_env, "pipeline-local-fail")
    assert parent.info.status == "FAILED"


def test_seeds_train_each_variant_per_seed_and_register_the_lowest(tmp_path, stack_env):
    """``seeds: 2``: the variant loop iterates over expand-variants' {variant, seed} items; each model is
    trained with its seed and says so, evaluations record it, the registry takes the lowest seed's model,
    evaluation and features together, and the report aggregates across seeds."""
    from amnet_pipeline.local_run import run_pipeline

    params = {**TINY, "dataset_uri": tiny_dataset(tmp_path), "variants": ["amnet"], "seeds": 2,
              "attribute_baseline": False, "experiment": "pipeline-local-seeds",
              "train_config": {**TINY["train_config"], "seed": 4}}
    run_dir = run_pipeline(params, tmp_path / "work", cache=False)
    seeds = sorted(json.loads(f.read_text())["seed"]
                   for f in run_dir.glob("**/evaluate-retrieval*/evaluation/metrics.json"))
    assert seeds == [4, 5], seeds
    image_seeds = sorted(json.loads(f.read_text())["seed"]
                         for f in run_dir.glob("**/evaluate-retrieval*/image_evaluation/metrics.json"))
    assert image_seeds == [4, 5], image_seeds  # image_only with each seed's amnet model
    index_seeds = sorted(json.loads(f.read_text())["seed"]
                         for f in run_dir.glob("**/build-search-index*/index/features.json"))
    assert index_seeds == [4, 5], index_seeds
    (decision,) = [json.loads(f.read_text()) for f in run_dir.glob("**/register-model*/**/decision.json")]
    # the registered version is the seed-4 model: its file (the version's source tag is that file's digest)
    # and its training run (the version's amnet.run_id), whose params say seed 4
    models = {load_payload(str(f))["extra"]["train_config"]["seed"]: hashlib.sha256(f.read_bytes()).hexdigest()
              for f in run_dir.glob("**/train-amnet*/model/model.pt")}
    assert sorted(models) == [4, 5] and models[4] != models[5], models
    version = stack_env.get_model_version(decision["model_name"], decision["version"])
    assert version.tags[TAG_SOURCE] == models[4], (version.tags, models)
    assert stack_env.get_run(version.tags["amnet.run_id"]).data.params["seed"] == "4"
    (results,) = [json.loads(f.read_text()) for f in run_dir.glob("**/build-report*/report/results.json")]
    assert "amnet" in json.dumps(results) and "seed" in json.dumps(results).lower()
    (parent,) = parent_runs(stack_env, "pipeline-local-seeds")
    assert parent.info.status == "FINISHED" and parent.data.params["seeds"] == "2"
