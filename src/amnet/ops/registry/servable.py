"""The servable model: the whole searcher (backbone, memory, manipulator, attribute vocabulary and, once
featurized, the gallery features) as one MLflow pyfunc model.

The training stage logs it into its own run (:func:`log_searcher`); the featurization stage attaches
the gallery features to that same logged model (:func:`attach_gallery`); the register stage registers
that logged model, so a registered version's source run is the training run. ``mlflow models serve -m
models:/amnet@champion`` then answers manipulation queries, and ``amnet search`` / ``amnet serve`` load
the very same files (:func:`load_searcher`).

The model carries its own code: the ``amnet`` package is logged as the model's ``code/amnet`` (MLflow
puts ``code/`` first on ``sys.path`` when it loads the model), and its pip requirements are exact pins
of the public packages the search path imports (:func:`pip_requirements`), never ``amnet`` itself,
a name that is not published on PyPI. So any environment MLflow builds from the model's own files
(``mlflow models serve`` with its default environment manager, ``mlflow models build-docker``) can
load it.

Layout of the model's pyfunc artifact ``amnet/``::

    model.pt          the AMNet model (amnet.model_store format: tensors only)
    attributes.json   the attribute vocabulary (also inside model.pt)
    gallery/          the feature artifact of `amnet step featurize` (features.json + shards), and
    gallery/gallery.json   {"split": the split it was computed from, "variant": ...}

Beside it, at the model's root: ``code/amnet`` (the package) and, once a gallery is attached, the input
example (``input_example.json``, ``serving_input_example.json``): a query by the gallery's first id.

A query is one row: ``image`` (base64 of an encoded image) or ``gallery_id``, ``changes``
({attribute: value}) and ``k``; the answer is one row per result:
``query`` (the row number), ``rank``, ``image_id``, ``distance``, ``matches``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import numbers
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

import amnet
from amnet import storage
from amnet.errors import AmnetError
from amnet.names import ATTRIBUTES_JSON, FEATURES_JSON, MODEL_FILE
from amnet.ops.tracking.lineage import MARKER

log = logging.getLogger(__name__)

ARTIFACT = "amnet"  # the pyfunc artifact key (and folder) holding model.pt and gallery/
GALLERY_DIR = "gallery"
GALLERY_JSON = "gallery.json"
MODEL_NAME = "searcher"  # the logged model's name in its run
DEFAULT_K = 20
EXAMPLE_K = 5  # the input example's k
OUTPUT_COLUMNS = ("query", "rank", "image_id", "distance", "matches")
# The public distributions the search path imports (amnet.ops.registry.servable, amnet.search and what
# they import, amnet.storage's boto3 for s3:// galleries); pinned to this environment's versions.
SERVING_PACKAGES = ("mlflow", "torch", "torchvision", "numpy", "pandas", "pyarrow", "pillow", "faiss-cpu",
                    "boto3", "pyyaml", "tqdm")


def signature():
    """{image (base64) | gallery_id, changes, k} -> ranked rows."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Map

    inputs = Schema([ColSpec(DataType.string, "image", required=False),
                     ColSpec(DataType.string, "gallery_id", required=False),
                     ColSpec(Map(DataType.string), "changes", required=False),
                     ColSpec(DataType.long, "k", required=False)])
    outputs = Schema([ColSpec(DataType.long, "query"), ColSpec(DataType.long, "rank"),
                      ColSpec(DataType.string, "image_id"), ColSpec(DataType.double, "distance"),
                      ColSpec(DataType.boolean, "matches")])
    return ModelSignature(inputs=inputs, outputs=outputs)


# ---------------------------------------------------------------------------------------- loading


def _present(value: Any) -> bool:
    """False for None, NaN, pandas' NA and blank strings (absent optional columns of a DataFrame row)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return False
    if isinstance(value, float) and value != value:
        return False
    return not (isinstance(value, str) and not value.strip())


def load_searcher(root: str, gallery: str | None = None, device: str = "cpu"):
    """The :class:`~amnet.search.searcher.Searcher` of a servable model folder ``root`` (its ``amnet/``
    artifact): model.pt + the attached gallery features; gallery images from ``gallery`` (a split) or,
    when readable from here, the split recorded at featurization (for thumbnails and queries by id)."""
    from amnet.search.searcher import Searcher

    features = attached_features(root)
    if features is None:
        raise AmnetError(f"{root}: this model has no gallery attached yet; run `amnet step featurize` on it "
                         "with MLFLOW_TRACKING_URI set (the pipeline does), or pass --features")
    return Searcher.load(model=os.path.join(root, MODEL_FILE), features=features,
                         gallery=gallery or recorded_gallery(root), device=device)


def attached_features(root: str) -> str | None:
    """The gallery feature folder attached to a servable model folder ``root``, if any."""
    features = os.path.join(root, GALLERY_DIR)
    return features if os.path.exists(os.path.join(features, FEATURES_JSON)) else None


def recorded_gallery(root: str) -> str | None:
    """The split the attached features were computed from (a KFP pod's ``/s3/...`` mount path read as
    ``s3://...``), when its gallery images are readable from here."""
    meta_file = os.path.join(root, GALLERY_DIR, GALLERY_JSON)
    recorded = json.loads(Path(meta_file).read_text()).get("split", "") if os.path.exists(meta_file) else ""
    recorded = storage.artifact_uri(recorded) or ""
    return recorded if recorded and _readable_split(recorded) else None


def servable_root(downloaded: str) -> str | None:
    """The ``amnet`` artifact folder inside a downloaded model folder, when it is amnet's searcher model."""
    root = os.path.join(downloaded, "artifacts", ARTIFACT)
    return root if os.path.exists(os.path.join(root, MODEL_FILE)) else None


def _readable_split(split: str) -> bool:
    try:
        return storage.exists(storage.join(split, ATTRIBUTES_JSON))
    except Exception:  # another cluster's bucket, no credentials here: search without gallery images
        log.info("gallery images at %s are not readable from here; queries by id use the stored features", split)
        return False


class SearchModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper of :class:`~amnet.search.searcher.Searcher` (see the module docstring)."""

    def load_context(self, context) -> None:
        self.searcher = load_searcher(context.artifacts[ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input if isinstance(model_input, list) else [model_input])
        rows: list[dict[str, Any]] = []
        for number, query in enumerate(model_input.to_dict("records")):
            source = _query(query)
            if isinstance(source, str) and source not in self.searcher.row:  # an id, never a path on this server
                raise AmnetError(f"gallery_id: no gallery image {_brief(source)} ({self.searcher.size} gallery images)")
            for r in self.searcher.search(source, _changes(query.get("changes")), _k(query.get("k"))):
                rows.append({"query": number, "rank": r.rank, "image_id": r.image_id, "distance": r.distance,
                             "matches": r.matches})
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def _query(row: dict[str, Any]) -> str | bytes:
    image, gallery_id = row.get("image"), row.get("gallery_id")
    if _present(image):
        try:
            return base64.b64decode(str(image), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise AmnetError(f"image: not base64 ({exc})") from None
    if _present(gallery_id):
        return str(gallery_id)
    raise AmnetError("each query needs `image` (base64 of an encoded image) or `gallery_id`")


def _changes(value: Any) -> dict[str, str]:
    if not _present(value):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            raise AmnetError(f"changes: expected {{attribute: value}} or its JSON, got {value[:80]!r}") from None
    if not isinstance(value, dict):
        raise AmnetError(f"changes: expected {{attribute: value}}, got {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items() if _present(v)}


def _k(value: Any) -> int:
    """A query row's ``k``: an integer >= 1 (a whole float too: pandas stores an integer column with a gap
    as floats; digits as text too), :data:`DEFAULT_K` when absent. Anything else is an AmnetError naming k."""
    if not _present(value):
        return DEFAULT_K
    text = value.strip() if isinstance(value, str) else ""
    whole = ((isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)))
             or (isinstance(value, float) and value.is_integer())
             or (text.isascii() and text.isdigit() and len(text) < 19))
    k = int(value) if whole else None
    if k is None or k < 1:
        raise AmnetError(f"k: expected an integer >= 1, got {_brief(value)}")
    return k


def _brief(value: Any) -> str:
    """``value`` for a message: its repr, cut to 80 characters (an integer too long to print, by its size)."""
    try:
        text = repr(value)
    except ValueError:
        return f"an integer of {value.bit_length()} bits"
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------------------- logging


def pip_requirements() -> list[str]:
    """Exact pins of :data:`SERVING_PACKAGES` at this environment's versions, public part only (a local
    label such as ``+cpu`` names no PyPI release). ``amnet`` is not among them: its code travels in the model."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    pins = []
    for name in SERVING_PACKAGES:
        try:
            pins.append(f"{name}=={Version(version(name)).public}")
        except PackageNotFoundError:
            raise AmnetError(f"{name} is not installed here; the servable model needs it") from None
    return pins


def package_dir() -> str:
    """The installed ``amnet`` package folder, logged as the model's ``code/amnet``."""
    return os.path.dirname(os.path.abspath(amnet.__file__))


def log_searcher(run_id: str, model_dir: str) -> tuple[str, str]:
    """Log the trained AMNet model in ``model_dir`` as the pyfunc searcher into run ``run_id``, with the
    ``amnet`` package as its code; returns (logged model id, model URI).

    No input example here: MLflow runs a logged example through the model (a search) to validate it, and
    before featurization there is no gallery to search nor a gallery id to name; :func:`attach_gallery`
    writes it."""
    from amnet.model_store import load_model

    loaded = load_model(model_dir)
    if loaded.kind != "amnet":
        raise AmnetError(f"{model_dir}: only AMNet models are servable (this is {loaded.kind})")
    with tempfile.TemporaryDirectory(prefix="amnet-servable-") as tmp:
        root = os.path.join(tmp, ARTIFACT)
        os.makedirs(os.path.join(root, GALLERY_DIR))
        _copy(storage.join(model_dir, MODEL_FILE), os.path.join(root, MODEL_FILE))
        with open(os.path.join(root, ATTRIBUTES_JSON), "w") as fh:
            fh.write(loaded.vocab.to_json())
        with open(os.path.join(root, GALLERY_DIR, "README"), "w") as fh:
            fh.write("The gallery features are attached here by `amnet step featurize`.\n")
        code = shutil.copytree(package_dir(), os.path.join(tmp, "code", "amnet"),
                               ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        requirements = pip_requirements()
        with mlflow.start_run(run_id=run_id, nested=True, log_system_metrics=False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")  # see above
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME, python_model=os.path.join(os.path.dirname(__file__), "servable_entry.py"),
                artifacts={ARTIFACT: root}, code_paths=[code], signature=signature(),
                pip_requirements=requirements,
                metadata={"amnet.variant": loaded.variant, "amnet.attributes": loaded.vocab.names,
                          "amnet.version": amnet.__version__},
                tags={"amnet.variant": loaded.variant})
    log.info("logged the servable searcher %s with its code; requirements: %s", info.model_id, " ".join(requirements))
    return info.model_id, info.model_uri


def _copy(uri: str, target: str) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as fh:
        fh.write(storage.read_bytes(uri))


def attach_gallery(model_id: str, features: str, split: str) -> None:
    """Upload the feature artifact ``features`` (computed from ``split``) into the logged model
    ``model_id``, as ``artifacts/amnet/gallery/``, then the model's input example (:func:`_example`)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    with tempfile.TemporaryDirectory(prefix="amnet-gallery-") as tmp:
        mlmodel = _download_mlmodel(client, model_id, os.path.join(tmp, "meta"))
        local = os.path.join(tmp, GALLERY_DIR)
        os.makedirs(local)
        for uri in storage.list_files(features):
            rel = uri[len(features.rstrip("/")) + 1:]
            if os.path.basename(rel) == MARKER:
                continue  # the stage's MLflow marker is not part of the gallery (a stored index is)
            _copy(uri, os.path.join(local, rel))
        if not os.path.exists(os.path.join(local, FEATURES_JSON)):
            raise AmnetError(f"{features}: no {FEATURES_JSON}; not a feature artifact")
        meta = json.loads(Path(local, FEATURES_JSON).read_text())
        with open(os.path.join(local, GALLERY_JSON), "w") as fh:
            json.dump({"split": split, "variant": meta.get("variant", "")}, fh, indent=2)
        artifact_path = mlmodel.flavors["python_function"].get("artifacts", {}).get(ARTIFACT, {}).get(
            "path", f"artifacts/{ARTIFACT}")
        client.log_model_artifacts(model_id, local, f"{artifact_path}/{GALLERY_DIR}")
        vocab_uri = f"{client.get_logged_model(model_id).artifact_location}/{artifact_path}/{ATTRIBUTES_JSON}"
        example = _example(local, mlflow.artifacts.download_artifacts(artifact_uri=vocab_uri, dst_path=tmp))
        if example is not None:
            _log_example(client, model_id, mlmodel, example, os.path.join(tmp, "example"))


def _download_mlmodel(client, model_id: str, dst: str):
    """The logged model's ``MLmodel`` (:class:`mlflow.models.Model`), downloaded into ``dst``."""
    from mlflow.models import Model

    location = client.get_logged_model(model_id).artifact_location
    return Model.load(mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/MLmodel", dst_path=dst))


def _example(gallery: str, vocab_file: str) -> pd.DataFrame | None:
    """The input example, one query row: the first image of the attached gallery ``gallery`` with its
    first known attribute changed to the next value of the vocabulary in ``vocab_file``, ``k`` = 5;
    None for an empty gallery. Written with the gallery, not at logging: only then is there an id to name."""
    from amnet.data import shards
    from amnet.data.schema import Vocabulary

    first = [u for u in storage.list_files(gallery, ".parquet") if os.path.basename(u).startswith("part-")][:1]
    rows = shards.read_table(first[0], ["image_id", "labels"]) if first else pd.DataFrame()
    if rows.empty:
        return None
    vocab = Vocabulary.from_json(Path(vocab_file).read_text())
    labels = [int(v) for v in rows["labels"].iloc[0]]
    changes = {}
    for attr, code in zip(vocab.attributes, labels, strict=False):
        if code >= 0 and len(attr.values) > 1:
            changes = {attr.name: attr.values[(code + 1) % len(attr.values)]}
            break
    return pd.DataFrame([{"gallery_id": str(rows["image_id"].iloc[0]), "changes": changes, "k": EXAMPLE_K}])


def _log_example(client, model_id: str, mlmodel, example: pd.DataFrame, dst: str) -> None:
    """Write ``example`` as the logged model's input example: MLflow's example files plus the ``MLmodel``
    naming them, rewritten and uploaded as :func:`mlflow.models.set_signature` does with a signature."""
    from mlflow.models import validate_schema
    from mlflow.models.utils import _save_example  # MLflow's writer of the example files and their MLmodel entry

    validate_schema(example, mlmodel.signature.inputs)
    files, meta = os.path.join(dst, "files"), os.path.join(dst, "meta")
    os.makedirs(files)
    os.makedirs(meta)
    _save_example(mlmodel, example, files)
    mlmodel.save(os.path.join(meta, "MLmodel"))
    client.log_model_artifacts(model_id, files)
    client.log_model_artifact(model_id, os.path.join(meta, "MLmodel"))  # last: it names the files above
    log.info("input example of %s: %s", model_id, example.to_dict("records")[0])
