"""The servable searcher carries its own code (``amnet.ops.registry.servable``): the logged model holds the
``amnet`` package as ``code/amnet``, requires only public packages, loads and answers in a Python that cannot
import the installed ``amnet``, and has an input example once its gallery is attached.

Against the real MLflow server (SeaweedFS artifacts), with the session's tiny trained chain.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amnet.ops.registry import servable

EXPERIMENT = "servable-code-tests"

# Run in a fresh interpreter (``-I``: no PYTHONPATH, no user site, no working directory on sys.path). It drops
# every way to the installed amnet (an editable install's finder, a site-packages or src folder holding
# amnet), loads the model, runs its input example and an image query, and prints what it used.
CHILD = r'''
import importlib.metadata as md, importlib.util, json, os, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "amnet"))]
sys.path_importer_cache.clear()
assert importlib.util.find_spec("amnet") is None, "amnet is importable without the model"
model_dir, image_b64 = sys.argv[1], sys.argv[2]
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model(model_dir)
example = model.input_example
by_id = model.predict(example)
by_image = model.predict(pd.DataFrame([{"image": image_b64, "changes": {}, "k": 3}]))
import amnet
owner = {}
for dist in md.distributions():
    for file in dist.files or []:
        if file.suffix in (".py", ".so", ".pyd"):
            owner[os.path.realpath(dist.locate_file(file))] = dist.metadata["Name"]
files = {os.path.realpath(m.__file__) for n, m in list(sys.modules.items())
         if getattr(m, "__file__", None) and not n.startswith("__editable__")}
used = sorted({owner[f] for f in files if f in owner})
print(json.dumps({"amnet_file": amnet.__file__, "example": example.to_dict("records"),
                  "by_id": by_id.to_dict("records"), "by_image": list(by_image["image_id"]), "used": used}))
'''


def test_requirements_are_exact_pins_of_public_packages_never_amnet():
    from packaging.requirements import Requirement

    pins = [Requirement(line) for line in servable.pip_requirements()]
    names = {r.name for r in pins}
    assert "amnet" not in names
    assert {"mlflow", "torch", "torchvision", "faiss-cpu", "pandas", "pillow"} <= names
    for r in pins:
        (spec,) = r.specifier
        assert spec.operator == "==" and "+" not in spec.version, r  # no local label: a PyPI release


@pytest.fixture(scope="module")
def logged(mlflow_server, trained_chain, tmp_path_factory) -> dict:
    """The tiny chain's model logged as the servable searcher, its gallery attached, downloaded."""
    import mlflow

    from amnet.config import FeaturizeConfig
    from amnet.retrieval.featurize import run_featurize

    root = tmp_path_factory.mktemp("servable-code")
    feats = str(root / "feats")
    run_featurize(str(trained_chain.split), str(trained_chain.model), feats, FeaturizeConfig(), False)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in mlflow_server.env.items():
            mp.setenv(name, value)
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name(EXPERIMENT)
        run = client.create_run(experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT))
        model_id, uri = servable.log_searcher(run.info.run_id, str(trained_chain.model))
        before = mlflow.models.get_model_info(uri).saved_input_example_info
        servable.attach_gallery(model_id, feats, str(trained_chain.split))
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(root / "downloaded"))
        yield {"uri": uri, "local": Path(local).resolve(), "feats": feats, "before": before,
               "info": mlflow.models.get_model_info(uri)}

@pytest.mark.slow
def test_the_model_holds_amnet_as_code_and_requires_only_public_packages(logged):
    from packaging.requirements import Requirement

    local = logged["local"]
    conf = logged["info"].flavors["python_function"]
    assert (local / conf["code"] / "amnet" / "ops" / "registry" / "servable.py").is_file()
    assert (local / conf["code"] / "amnet" / "search" / "searcher.py").is_file()
    assert not list(local.rglob("__pycache__"))
    lines = [ln for ln in (local / "requirements.txt").read_text().splitlines() if ln.strip()]
    assert "amnet" not in {Requirement(ln).name for ln in lines}
    assert sorted(lines) == sorted(servable.pip_requirements())
    env = json.dumps([(local / name).read_text() for name in ("conda.yaml", "python_env.yaml", "MLmodel")])
    assert "amnet==" not in env


@pytest.mark.slow
def test_the_input_example_is_a_query_by_a_gallery_id_written_with_the_gallery(logged, trained_chain):
    from amnet.retrieval.featurize import load_features

    assert logged["before"] is None  # not at logging: no gallery yet
    info = logged["info"].saved_input_example_info
    assert info and (logged["local"] / info["artifact_path"]).is_file()
    assert (logged["local"] / info["serving_input_path"]).is_file()
    serving = json.loads((logged["local"] / info["serving_input_path"]).read_text())
    (row,) = serving["dataframe_split"]["data"]
    example = dict(zip(serving["dataframe_split"]["columns"], row, strict=True))
    frame, _ = load_features(logged["feats"])
    assert example["gallery_id"] in set(frame["image_id"]) and example["k"] == servable.EXAMPLE_K
    (attr, value), = example["changes"].items()
    assert attr in logged["info"].metadata["amnet.attributes"] and value


@pytest.mark.slow
def test_the_model_loads_and_answers_without_the_installed_amnet(logged, trained_chain, tmp_path):
    """A fresh interpreter that cannot import the installed amnet loads the downloaded model from its own
    ``code/`` folder, answers its input example and an image query like the local searcher, and imports
    no distribution outside its requirements and theirs."""
    from amnet.search.searcher import Searcher

    local = Searcher.load(model=str(trained_chain.model), features=logged["feats"], gallery=str(trained_chain.split))
    query = local.ids[0]
    image = base64.b64encode(local.image_bytes(query)).decode()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MLFLOW_"))}
    done = subprocess.run([sys.executable, "-I", "-B", "-c", CHILD, str(logged["local"]), image], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    child = json.loads(done.stdout.strip().splitlines()[-1])

    assert Path(child["amnet_file"]).resolve().is_relative_to(logged["local"] / "code")
    (example,) = child["example"]
    expected = [r.image_id for r in local.search(example["gallery_id"], example["changes"], k=example["k"])]
    assert [r["image_id"] for r in child["by_id"]] == expected
    assert child["by_image"] == [r.image_id for r in local.search(local.image_bytes(query), {}, k=3)]
    allowed = _closure([ln for ln in (logged["local"] / "requirements.txt").read_text().splitlines() if ln.strip()])
    assert set(child["used"]) - allowed - OPTIONAL == set(), child["used"]


# imported when present, never required: torch probes for NVML (nvidia-ml-py), MLflow's OpenTelemetry for psutil
OPTIONAL = {"nvidia-ml-py", "psutil"}


def _closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install here (their own requirements, recursively; extras off),
    by their metadata names."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, str] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        if key in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue
        seen[key] = dist.metadata["Name"]
        todo += [Requirement(r) for r in dist.requires or []]
    return set(seen.values())
