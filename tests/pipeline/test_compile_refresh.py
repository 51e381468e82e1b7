"""The compiled refresh pipeline: its two tasks, secrets by reference only, pinned images, no caching,
and its command-line arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import amnet
from amnet.errors import AmnetError, ConfigError
from tests.pipeline.test_compile import FAKE_ENV, REGISTRY, compile_cli


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> str:
    return compile_cli(tmp_path_factory.mktemp("compile-refresh") / "refresh.yaml", "--refresh")


def test_refresh_pipeline_compiles_without_credentials_and_with_pinned_images(compiled: str, tmp_path: Path):
    for value in FAKE_ENV.values():
        assert value not in compiled
    assert "fake-password" not in compiled and "AKIA" not in compiled
    spec, platform = yaml.safe_load_all(compiled)
    assert spec["pipelineInfo"]["name"] == "amnet-refresh"
    assert set(spec["root"]["dag"]["tasks"]) == {"fingerprint-dataset", "refresh-gallery"}
    assert spec["root"]["dag"]["tasks"]["refresh-gallery"]["inputs"]["parameters"]["catalogue_digest"][
        "taskOutputParameter"] == {"producerTask": "fingerprint-dataset", "outputParameterKey": "digest"}
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"catalogue_uri", "model_uri", "refresh_config",
                                                                   "featurize_config"}
    executors = spec["deploymentSpec"]["executors"]
    version = amnet.__version__
    refresh = executors["exec-refresh-gallery"]["container"]
    assert refresh["image"] == f"{REGISTRY}/amnet:{version}-cuda"
    assert refresh["resources"]["accelerator"]["resourceCount"] == "1"
    assert executors["exec-fingerprint-dataset"]["container"]["image"] == f"{REGISTRY}/amnet:{version}"
    for name, config in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].items():
        secrets = {entry["secretName"] for entry in config["secretAsEnv"]}
        assert {"amnet-s3", "amnet-mlflow"} <= secrets, name
    for task in spec["root"]["dag"]["tasks"].values():
        assert task.get("cachingOptions", {}).get("enableCache") is not True
    assert compile_cli(tmp_path / "again.yaml", "--refresh") == compiled  # deterministic


def test_no_gpu_refresh_runs_in_the_cpu_image(tmp_path: Path):
    spec, _ = yaml.safe_load_all(compile_cli(tmp_path / "cpu.yaml", "--refresh", "--no-gpu"))
    container = spec["deploymentSpec"]["executors"]["exec-refresh-gallery"]["container"]
    assert container["image"] == f"{REGISTRY}/amnet:{amnet.__version__}" and "accelerator" not in container.get(
        "resources", {})


def test_refresh_arguments_take_the_catalogue_model_and_config_keys():
    from amnet_pipeline.refresh_pipeline import refresh_arguments

    args = refresh_arguments(["dataset=s3://b/catalogue", "refresh.min_recall=0.9", "featurize.batch_size=64"])
    assert args == {"catalogue_uri": "s3://b/catalogue", "model_uri": "models:/amnet@champion",
                    "refresh_config": {"min_recall": 0.9}, "featurize_config": {"batch_size": 64}}
    with pytest.raises(AmnetError, match="no catalogue"):
        refresh_arguments([])
    with pytest.raises(ConfigError, match="min_recall"):
        refresh_arguments(["catalogue_uri=x", "refresh.min_recall=2"])
    with pytest.raises(AmnetError, match="takes catalogue_uri"):
        refresh_arguments(["catalogue_uri=x", "epochs=3"])
