"""The compiled pipeline: golden YAML, GPU requests, secrets by reference only, determinism.

The golden file pins the whole compiled pipeline. After an intended change to the pipeline or a
component, regenerate it with the same registry and image tag the tests use (``tests/pipeline/conftest.py``:
the package version) and review the diff::

    AMNET_IMAGE_REGISTRY=registry.test/amnet-ci \\
    AMNET_IMAGE_TAG=$(.venv/bin/python -c 'import amnet; print(amnet.__version__)') \\
        .venv/bin/python -m amnet_pipeline.cli compile --out tests/pipeline/golden/amnet_pipeline.yaml
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import amnet
from amnet.errors import AmnetError

GOLDEN = Path(__file__).parent / "golden" / "amnet_pipeline.yaml"
REGISTRY = "registry.test/amnet-ci"
# Credentials present in the compiling environment: none may reach the YAML.
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIA" + "TESTONLYNOTREAL1",  # planted fake, split so scanners skip it
    "AWS_SECRET_ACCESS_KEY": "fake-secret-value-must-not-leak",
    "MLFLOW_TRACKING_URI": "http://ci-user:fake-password-must-not-leak@mlflow.test",
    "KF_PIPELINES_TOKEN": "fake-kfp-token-must-not-leak",
}
GPU_TASKS = ("train-amnet", "featurize-gallery", "pretrain-attribute-cnn", "reevaluate-champion")
UNCACHED_TASKS = ("start-parent-run", "finish-parent-run", "register-model", "fingerprint-dataset",
                  "reevaluate-champion", "link-upstream-runs", "build-report")
# values that change every pipeline run: in a cacheable task's inputs they would make it miss every time
PER_RUN = ("pipelinechannel--parent_run_id", "{{$.pipeline_job_uuid}}", "{{$.pipeline_job_name}}",
           "{{$.pipeline_root}}", "start-parent-run")


def compile_cli(out: Path, *flags: str) -> str:
    env = {**os.environ, **FAKE_ENV, "AMNET_IMAGE_REGISTRY": REGISTRY}
    subprocess.run([sys.executable, "-m", "amnet_pipeline.cli", "compile", "--out", str(out), *flags],
                   check=True, env=env, capture_output=True, text=True)
    return out.read_text()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> str:
    return compile_cli(tmp_path_factory.mktemp("compile") / "amnet_pipeline.yaml")


@pytest.fixture(scope="module")
def docs(compiled: str) -> tuple[dict, dict]:
    spec, platform = yaml.safe_load_all(compiled)
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def all_tasks(spec: dict) -> dict[str, dict]:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def base_name(name: str) -> str:
    """``train-amnet-2`` -> ``train-amnet`` (KFP numbers repeated uses of a component)."""
    head, _, tail = name.rpartition("-")
    return head if tail.isdigit() else name


def test_matches_golden(compiled: str):
    assert GOLDEN.exists(), f"missing {GOLDEN}; create it with the command in this module's docstring"
    assert compiled == GOLDEN.read_text(), (
        "the compiled pipeline differs from tests/pipeline/golden/amnet_pipeline.yaml; if the change is intended, "
        "regenerate it with the command in this module's docstring and review the diff")


def test_compile_is_deterministic(compiled: str, tmp_path: Path):
    assert compile_cli(tmp_path / "again.yaml") == compiled


def test_no_credential_reaches_the_yaml(compiled: str):
    for value in FAKE_ENV.values():
        assert value not in compiled
    assert "fake-password" not in compiled
    assert "AKIA" not in compiled


def test_gpu_tasks_request_one_gpu_in_the_cuda_image(docs):
    spec, _ = docs
    executors = spec["deploymentSpec"]["executors"]
    version = amnet.__version__
    seen = set()
    for name, executor in executors.items():
        container = executor["container"]
        task = base_name(name.removeprefix("exec-"))
        accelerator = container.get("resources", {}).get("accelerator")
        if task in GPU_TASKS:
            seen.add(task)
            assert accelerator["resourceType"] == "nvidia.com/gpu", name
            assert accelerator["resourceCount"] == "1", name
            assert container["image"] == f"{REGISTRY}/amnet:{version}-cuda", name
        else:
            assert accelerator is None, name
            assert container["image"] == f"{REGISTRY}/amnet:{version}", name
    assert seen == set(GPU_TASKS)


def test_every_task_gets_secrets_by_reference(docs):
    spec, platform = docs
    assert set(platform) == set(spec["deploymentSpec"]["executors"])
    for name, config in platform.items():
        secrets = {entry["secretName"]: entry for entry in config["secretAsEnv"]}
        assert {"amnet-s3", "amnet-mlflow"} <= set(secrets), name
        env = {m["envVar"] for entry in config["secretAsEnv"] for m in entry["keyToEnv"]}
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_URI"} <= env, name
        if base_name(name.removeprefix("exec-")) in GPU_TASKS:
            assert {"mountPath": "/dev/shm", "medium": "Memory", "volumeName": "dshm", "sizeLimit": "8Gi"} in \
                config["emptyDirMounts"], name
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in config["tolerations"]


def test_caching_retries_and_exit_handler(docs):
    spec, _ = docs
    for name, task in all_tasks(spec).items():
        if "componentRef" not in task or task["componentRef"]["name"].startswith(("comp-for-loop", "comp-condition",
                                                                                  "comp-exit-handler")):
            continue
        cached = task.get("cachingOptions", {}).get("enableCache", False)
        assert cached == (base_name(name) not in UNCACHED_TASKS), name
        retries = task.get("retryPolicy", {}).get("maxRetryCount")
        assert retries == (3 if base_name(name) in GPU_TASKS else None), name
    finish = all_tasks(spec)["finish-parent-run"]
    assert finish["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert "taskFinalStatus" in finish["inputs"]["parameters"]["status"]


def test_every_task_requests_and_is_limited_in_cpu_and_memory(docs, tmp_path: Path):
    spec, _ = docs
    expected = {False: {"resourceCpuRequest": "1", "resourceCpuLimit": "2", "resourceMemoryRequest": "2Gi",
                        "resourceMemoryLimit": "8Gi"},
                True: {"resourceCpuRequest": "4", "resourceCpuLimit": "8", "resourceMemoryRequest": "16Gi",
                       "resourceMemoryLimit": "32Gi"}}
    for name, executor in spec["deploymentSpec"]["executors"].items():
        resources = executor["container"]["resources"]
        gpu_task = base_name(name.removeprefix("exec-")) in GPU_TASKS
        assert {k: resources.get(k) for k in expected[gpu_task]} == expected[gpu_task], name
    # compile flags set them; a request above its limit or a bad quantity is one clear error
    custom, _ = yaml.safe_load_all(compile_cli(tmp_path / "r.yaml", "--cpu-request", "500m", "--memory-limit",
                                               "12Gi", "--gpu-task-memory-request", "40Gi",
                                               "--gpu-task-memory-limit", "64Gi"))
    executors = custom["deploymentSpec"]["executors"]
    assert executors["exec-split-dataset"]["container"]["resources"]["resourceCpuRequest"] == "500m"
    assert executors["exec-split-dataset"]["container"]["resources"]["resourceMemoryLimit"] == "12Gi"
    assert executors["exec-train-amnet"]["container"]["resources"]["resourceMemoryRequest"] == "40Gi"
    from amnet.cli import main

    assert main(["pipeline", "compile", "--out", str(tmp_path / "x.yaml"), "--cpu-request", "4"]) == 3
    assert main(["pipeline", "compile", "--out", str(tmp_path / "x.yaml"), "--memory-limit", "8GB"]) == 3
    assert main(["pipeline", "compile", "--out", str(tmp_path / "x.yaml"), "--checkpoint-root", "gs://b/c"]) == 3
    assert not (tmp_path / "x.yaml").exists()


def test_data_version_and_checkpoint_wiring(docs):
    """The fingerprint's digest is a parameter of the split (KFP's cache key holds parameter values);
    the cacheable training and featurization tasks get no run id (their resumable state is keyed by
    inputs and config); register reads the GPU task's re-scored champion."""
    spec, _ = docs
    tasks = all_tasks(spec)
    split = tasks["split-dataset"]["inputs"]["parameters"]
    assert split["dataset_digest"]["taskOutputParameter"] == {"producerTask": "fingerprint-dataset",
                                                              "outputParameterKey": "digest"}
    assert split["dataset_rows"]["taskOutputParameter"]["producerTask"] == "fingerprint-dataset"
    for name in ("train-amnet", "train-amnet-2", "featurize-gallery", "featurize-gallery-2", "featurize-gallery-3"):
        assert tasks[name]["inputs"]["parameters"]["run_id"] == {"runtimeValue": {"constant": ""}}, name
    assert "run_id" not in tasks["pretrain-attribute-cnn"]["inputs"]["parameters"]
    assert tasks["register-model"]["inputs"]["artifacts"]["champion"]["taskOutputArtifact"]["producerTask"] == \
        "reevaluate-champion"


def test_parent_run_is_tagged_with_the_kfp_run_and_linked_from_the_kfp_ui(docs):
    """start-parent-run gets the KFP run's id, name and pipeline root (the parent run's tags: the run's
    KFP UI page, or the kfp.local run folder) and the KFP UI address from optional keys of the MLflow
    secret; it writes a Markdown output (the link to the MLflow parent run) besides the parent's id."""
    spec, platform = docs
    start = spec["root"]["dag"]["tasks"]["start-parent-run"]
    inputs = start["inputs"]["parameters"]
    assert inputs["kfp_run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert inputs["kfp_run_name"]["runtimeValue"]["constant"] == "{{$.pipeline_job_name}}"
    assert inputs["pipeline_root"]["runtimeValue"]["constant"] == "{{$.pipeline_root}}"
    outputs = spec["components"][start["componentRef"]["name"]]["outputDefinitions"]
    assert outputs["artifacts"]["mlflow_run"]["artifactType"]["schemaTitle"] == "system.Markdown"
    assert outputs["parameters"]["Output"]["parameterType"] == "STRING"
    stages = spec["root"]["dag"]["tasks"]["amnet-stages"]["inputs"]["parameters"]["parent_run_id"]
    assert stages["taskOutputParameter"] == {"producerTask": "start-parent-run", "outputParameterKey": "Output"}
    secrets = platform["exec-start-parent-run"]["secretAsEnv"]
    ui = [s for s in secrets if any(k["envVar"] == "KF_PIPELINES_UI_ENDPOINT" for k in s["keyToEnv"])]
    assert len(ui) == 1 and ui[0]["secretName"] == "amnet-mlflow" and ui[0]["optional"] is True
    assert {k["envVar"] for k in ui[0]["keyToEnv"]} == {"KF_PIPELINES_UI_ENDPOINT", "KF_PIPELINES_ENDPOINT"}
    others = [name for name, config in platform.items() if name != "exec-start-parent-run"
              for s in config["secretAsEnv"] for k in s["keyToEnv"] if k["envVar"].startswith("KF_PIPELINES")]
    assert others == []  # only the start task reads them


def test_cacheable_tasks_take_no_per_run_value(docs):
    """Every cached task's inputs are free of the parent run id, the KFP run's id, name and root: a rerun
    on unchanged data and settings is a cache hit for training, featurization, index and evaluation too."""
    spec, _ = docs
    cached = set()
    for name, task in all_tasks(spec).items():
        if "componentRef" not in task or "dag" in spec["components"][task["componentRef"]["name"]]:
            continue  # loops, conditions, the exit handler, the nested amnet-stages pipeline: no container
        if not task.get("cachingOptions", {}).get("enableCache", False):
            continue
        cached.add(base_name(name))
        inputs = json.dumps(task.get("inputs", {}))
        assert not [v for v in PER_RUN if v in inputs], (name, inputs)
    assert {"split-dataset", "pretrain-attribute-cnn", "compute-prototypes", "train-amnet", "featurize-gallery",
            "build-search-index", "evaluate-retrieval"} <= cached, sorted(cached)


def test_every_cacheable_stage_run_is_linked_under_the_parent(docs):
    """An uncached link-upstream-runs task nests the stage runs of the upstream stages, of the attribute
    baseline (its featurization groups collected) and, inside the variant loop, of each item (model, the
    collected groups, index, evaluation and image-only evaluation) under the parent run."""
    spec, _ = docs
    tasks = all_tasks(spec)
    links = {n: t for n, t in tasks.items() if base_name(n) == "link-upstream-runs"}
    # the upstream stages, the baseline (its branch), the variant loops (both branches)
    assert len(links) == 4, sorted(links)
    shapes = sorted(tuple(sorted(t["inputs"]["artifacts"])) for t in links.values())
    assert shapes == [("attr_model", "prototypes", "split"),
                      ("evaluation", "features", "image_evaluation", "index", "model"),
                      ("evaluation", "features", "image_evaluation", "index", "model"),
                      ("evaluation", "features", "index")], shapes
    for name, task in links.items():
        assert task["inputs"]["parameters"]["parent_run_id"] == {
            "componentInputParameter": "pipelinechannel--parent_run_id"}, name
        features = task["inputs"]["artifacts"].get("features")
        if features:  # dsl.Collected over the featurization loop
            assert features["taskOutputArtifact"]["producerTask"].startswith("for-loop"), (name, features)
        if "model" in task["inputs"]["artifacts"]:  # inside the variant loop: one per variant x seed
            owner = next(c for c in spec["components"].values() if name in c.get("dag", {}).get("tasks", {}))
            assert any(base_name(t) == "train-amnet" for t in owner["dag"]["tasks"]), name


def test_pipeline_parameters_and_defaults(docs):
    spec, _ = docs
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert "defaultValue" not in params["dataset_uri"]
    assert params["variants"]["defaultValue"] == ["amnet", "no_memory", "no_ranking"]
    assert params["attribute_baseline"]["defaultValue"] is True
    assert params["image_baseline"]["defaultValue"] is True
    assert params["seeds"]["defaultValue"] == 1 and params["seeds"]["parameterType"] == "NUMBER_INTEGER"
    # one mapping per stage, empty by default: the stage config dataclasses hold every default
    for stage in ("split", "pretrain", "prototypes", "train", "featurize", "evaluate", "register"):
        assert params[f"{stage}_config"]["parameterType"] == "STRUCT", stage
        assert params[f"{stage}_config"]["defaultValue"] == {}, stage
    assert set(params) == {"dataset_uri", "variants", "seeds", "attribute_baseline", "image_baseline", "experiment",
                           *(f"{s}_config" for s in ("split", "pretrain", "prototypes", "train", "featurize",
                                                     "evaluate", "register"))}


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[2].glob("configs/*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_run_file_validates_and_compiles_into_pipeline_arguments(path: Path):
    from amnet_pipeline import run_config
    from amnet_pipeline.amnet_pipeline import amnet_pipeline

    rc = run_config.load(str(path))
    args = rc.pipeline_arguments()
    inputs = amnet_pipeline.component_spec.inputs
    assert set(args) - {"dataset_uri"} <= set(inputs)
    for stage in run_config.SECTIONS:
        rc.stage(stage)  # every section resolves to a valid stage config
    json.dumps(args)  # plain JSON values only: what KFP sends as the run's parameters


def test_paper_run_file_is_the_papers_setting():
    from amnet_pipeline import run_config

    rc = run_config.load(str(Path(__file__).resolve().parents[2] / "configs" / "paper-alexnet.yaml"))
    model = rc.stage("pretrain").model
    assert (model.backbone, model.feature_dim, model.image_size) == ("alexnet", 4096, 224)
    train = rc.stage("train")
    assert (train.lam, train.margin) == (0.2, 0.5)  # §4: λ = 0.2, m = 0.5


def test_compile_options_no_gpu_and_placement(tmp_path: Path):
    no_gpu = compile_cli(tmp_path / "cpu.yaml", "--no-gpu")
    assert "nvidia.com/gpu" not in no_gpu and "-cuda" not in no_gpu
    placed = compile_cli(tmp_path / "placed.yaml", "--gpu-node-selector", "pool=h100",
                         "--gpu-toleration", "key=dedicated,operator=Equal,value=gpu,effect=NoSchedule")
    _, platform = yaml.safe_load_all(placed)
    train = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-amnet"]
    assert train["nodeSelector"] == {"labels": {"pool": "h100"}}
    assert train["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]


def test_train_gpus_requests_that_many_gpus_and_ranks_on_the_training_tasks(tmp_path: Path):
    """``--train-gpus 8``: the pretraining and training pods ask for 8 GPUs and their steps start 8 ranks
    (``processes``); featurization keeps one GPU."""
    spec, _ = yaml.safe_load_all(compile_cli(tmp_path / "eight.yaml", "--train-gpus", "8"))
    executors = spec["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        accelerator = executor["container"].get("resources", {}).get("accelerator")
        task = base_name(name.removeprefix("exec-"))
        if task in ("train-amnet", "pretrain-attribute-cnn"):
            assert accelerator["resourceCount"] == "8", name
        elif task in GPU_TASKS:
            assert accelerator["resourceCount"] == "1", name
    tasks = all_tasks(spec)
    for task in ("train-amnet", "pretrain-attribute-cnn"):
        processes = tasks[task]["inputs"]["parameters"]["processes"]["runtimeValue"]["constant"]
        assert processes == 8, task
    no_gpu, _ = yaml.safe_load_all(compile_cli(tmp_path / "cpu.yaml", "--train-gpus", "8", "--no-gpu"))
    assert all_tasks(no_gpu)["train-amnet"]["inputs"]["parameters"]["processes"]["runtimeValue"]["constant"] == 1


def test_train_nodes_makes_training_a_trainjob_submitter(tmp_path: Path):
    """``--train-nodes 2 --train-gpus 8``: each variant's training is the TrainJob component (a CPU pod that
    submits a Kubeflow Trainer TrainJob) instead of the in-pod training; its ``cluster`` parameter holds
    the CUDA image, 2 nodes of 8 GPUs and the secrets by name and key; pretraining stays in one pod."""
    text = compile_cli(tmp_path / "nodes.yaml", "--train-nodes", "2", "--train-gpus", "8")
    for value in FAKE_ENV.values():
        assert value not in text
    spec, platform = yaml.safe_load_all(text)
    tasks = all_tasks(spec)
    names = {base_name(t) for t in tasks}
    assert "train-amnet-trainjob" in names and "train-amnet" not in names
    executors = spec["deploymentSpec"]["executors"]
    submitters = [n for n in executors if base_name(n.removeprefix("exec-")) == "train-amnet-trainjob"]
    assert submitters
    for name in submitters:
        container = executors[name]["container"]
        assert "accelerator" not in container.get("resources", {}), name  # the GPUs are the TrainJob's
        assert container["image"] == f"{REGISTRY}/amnet:{amnet.__version__}", name
        secrets = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][name]["secretAsEnv"]
        assert {"amnet-s3", "amnet-mlflow"} <= {s["secretName"] for s in secrets}, name
    trainjob_tasks = [t for n, t in tasks.items() if base_name(n) == "train-amnet-trainjob"]
    for task in trainjob_tasks:
        cluster = task["inputs"]["parameters"]["cluster"]["runtimeValue"]["constant"]
        assert cluster["image"] == f"{REGISTRY}/amnet:{amnet.__version__}-cuda"
        assert (cluster["num_nodes"], cluster["gpus_per_node"]) == (2, 8)
        assert {"env": "AWS_SECRET_ACCESS_KEY", "secret": "amnet-s3", "key": "AWS_SECRET_ACCESS_KEY",
                "optional": False} in cluster["secret_env"]
        assert all(set(s) == {"env", "secret", "key", "optional"} for s in cluster["secret_env"])
        assert task["retryPolicy"]["maxRetryCount"] == 3
    pretrain = [e for n, e in executors.items() if base_name(n.removeprefix("exec-")) == "pretrain-attribute-cnn"]
    assert pretrain[0]["container"]["resources"]["accelerator"]["resourceCount"] == "8"


def test_the_schedule_file_takes_train_gpus(tmp_path: Path):
    from amnet_pipeline.schedule_file import load_recurring_run

    source = Path(__file__).resolve().parents[2] / "manifests" / "schedule" / "recurring-run.yaml"
    raw = yaml.safe_load(source.read_text())
    raw["compile"]["train_gpus"] = 8
    good = tmp_path / "eight.yaml"
    good.write_text(yaml.safe_dump(raw))
    assert load_recurring_run(good).cli_defaults()["train_gpus"] == 8
    raw["compile"]["train_nodes"] = 4
    good.write_text(yaml.safe_dump(raw))
    assert load_recurring_run(good).cli_defaults()["train_nodes"] == 4
    raw["compile"]["train_nodes"] = 1
    raw["compile"]["train_gpus"] = 0
    bad = tmp_path / "zero.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(AmnetError, match="train_gpus must be an integer >= 1"):
        load_recurring_run(bad)


def test_compile_reports_bad_options_in_one_line(tmp_path: Path, capsys):
    from amnet.cli import main

    rc = main(["pipeline", "compile", "--out", str(tmp_path / "x.yaml"), "--gpu-toleration", "key=a,operator=Maybe"])
    err = capsys.readouterr().err
    assert rc == 3
    assert err.startswith("amnet pipeline compile: error: --gpu-toleration") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize("image_baseline", [True, False])
def test_image_only_is_scored_by_the_trained_evaluate_tasks_and_never_reaches_the_registry(tmp_path: Path,
                                                                                           image_baseline: bool):
    """The run file's ``image_baseline`` (strict true / false) becomes the pipeline parameter; it compiles
    either way. Inside the variant loop each evaluate task gets it as ``image_only`` (the amnet variant's
    task then scores image_only with its own features and index) and always has an ``image_evaluation``
    output; both reports collect those outputs; register-model reads only the ``evaluation`` ones."""
    from amnet_pipeline import run_config
    from amnet_pipeline.amnet_pipeline import amnet_pipeline
    from kfp import compiler

    args = run_config.load(None, [f"image_baseline={str(image_baseline).lower()}"]).pipeline_arguments()
    assert args["image_baseline"] is image_baseline
    for bad in ("maybe", "1", "'true'"):  # YAML: a word, a number, a quoted string
        with pytest.raises(AmnetError, match="image_baseline must be true or false"):
            run_config.load(None, [f"image_baseline={bad}"])
    out = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(amnet_pipeline, str(out), pipeline_parameters={"image_baseline": image_baseline})
    spec, _ = yaml.safe_load_all(out.read_text())
    assert spec["root"]["inputDefinitions"]["parameters"]["image_baseline"]["defaultValue"] is image_baseline
    tasks = all_tasks(spec)
    evaluates = {n: t for n, t in tasks.items() if base_name(n) == "evaluate-retrieval"}
    wired = {n: t["inputs"]["parameters"]["image_only"] for n, t in evaluates.items()
             if "image_only" in t["inputs"]["parameters"]}
    # the trained variants' loop in both branches of the attribute-baseline condition; not the attribute CNN's
    assert len(evaluates) == 3 and len(wired) == 2, sorted(evaluates)
    assert all(w["componentInputParameter"] == "pipelinechannel--image_baseline" for w in wired.values()), wired
    for name, task in tasks.items():
        if base_name(name) == "build-report":
            source = task["inputs"]["artifacts"]["image_evaluations"]["taskOutputArtifact"]
            assert source["producerTask"].startswith("for-loop"), source
            assert base_name(source["outputArtifactKey"].removesuffix("-image_evaluation").removeprefix(
                "pipelinechannel--")) == "evaluate-retrieval", source
        if base_name(name) == "register-model":
            inputs = json.dumps(task["inputs"])
            assert "image_evaluation" not in inputs and "image_baseline" not in inputs, name
    reports = [n for n in tasks if base_name(n) == "build-report"]
    registers = [n for n in tasks if base_name(n) == "register-model"]
    assert len(reports) == 2 and len(registers) == 2


def test_featurization_fans_out_over_the_planned_groups_into_one_index(docs):
    """Each model's featurization is a ParallelFor over plan-featurization's groups (one GPU task each);
    one build-search-index task collects them, and evaluation and the registry gate read its output."""
    spec, _ = docs
    tasks = all_tasks(spec)
    loops = {name: c for name, c in spec["components"].items()
             if any(base_name(t) == "featurize-gallery" for t in c.get("dag", {}).get("tasks", {}))}
    # the attribute baseline's, and the trained variants' in both branches of the baseline condition
    assert len(loops) == 3, sorted(loops)
    for name in loops:
        owner = next(t for t in tasks.values() if t.get("componentRef", {}).get("name") == name)
        assert owner["parameterIterator"]["items"]["inputParameter"].endswith("plan-featurization-Output"), owner
    indexes = {n: t for n, t in tasks.items() if base_name(n) == "build-search-index"}
    assert len(indexes) == 3
    for task in indexes.values():
        assert task["inputs"]["artifacts"]["features"]["taskOutputArtifact"]["producerTask"].startswith("for-loop")
    for name, task in tasks.items():
        if base_name(name) == "evaluate-retrieval":
            features = task["inputs"]["artifacts"]["features"]["taskOutputArtifact"]
            assert base_name(features["producerTask"]) == "build-search-index", (name, features)
