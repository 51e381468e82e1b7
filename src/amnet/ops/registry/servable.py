"""The servable model: the whole searcher (backbone, memory, manipulator, attribute vocabulary and, once
featurized, the gallery features) as one MLflow pyfunc model.

The training stage logs it into its own run (:func:`log_searcher`); the featurization stage attaches
the gallery features to that same logged model (:func:`attach_gallery`); the register stage registers
that logged model, so a registered version's source run is the training run. ``mlflow models serve -m
models:/amnet@champion`` then answers manipulation queries, and ``amnet search`` / ``amnet serve`` load
the very same files (:func:`load_searcher`).

Layout of the model's pyfunc artifact ``amnet/``::

    model.pt          the AMNet model (amnet.model_store format: tensors only)
    attributes.json   the attribute vocabulary (also inside model.pt)
    gallery/          the feature artifact of `amnet step featurize` (features.json + shards), and
    gallery/gallery.json   {"split": the split it was computed from, "variant": ...}

A query is one row: ``image`` (base64 of an encoded image) or ``gallery_id``, ``changes``
({attribute: value}) and ``k``; the answer is one row per result:
``query`` (the row number), ``rank``, ``image_id``, ``distance``, ``matches``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from amnet import __version__, storage
from amnet.errors import AmnetError
from amnet.names import ATTRIBUTES_JSON, FEATURES_JSON, MODEL_FILE
from amnet.ops.tracking.lineage import MARKER

log = logging.getLogger(__name__)

ARTIFACT = "amnet"  # the pyfunc artifact key (and folder) holding model.pt and gallery/
GALLERY_DIR = "gallery"
GALLERY_JSON = "gallery.json"
MODEL_NAME = "searcher"  # the logged model's name in its run
DEFAULT_K = 20
OUTPUT_COLUMNS = ("query", "rank", "image_id", "distance", "matches")


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
    """False for None, NaN and blank strings (absent optional columns of a DataFrame row)."""
    if value is None:
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
            for r in self.searcher.search(_query(query), _changes(query.get("changes")), _k(query.get("k"))):
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
        except ValueError:
            raise AmnetError(f"changes: expected {{attribute: value}} or its JSON, got {value[:80]!r}") from None
    if not isinstance(value, dict):
        raise AmnetError(f"changes: expected {{attribute: value}}, got {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items() if _present(v)}


def _k(value: Any) -> int:
    return int(value) if _present(value) else DEFAULT_K


# ---------------------------------------------------------------------------------------- logging


def log_searcher(run_id: str, model_dir: str) -> tuple[str, str]:
    """Log the trained AMNet model in ``model_dir`` as the pyfunc searcher into run ``run_id``;
    returns (logged model id, model URI)."""
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
        with mlflow.start_run(run_id=run_id, nested=True, log_system_metrics=False), warnings.catch_warnings():
            # no input example on purpose: it would run a search at logging time, before a gallery is attached
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME, python_model=os.path.join(os.path.dirname(__file__), "servable_entry.py"),
                artifacts={ARTIFACT: root}, signature=signature(),
                pip_requirements=[f"amnet=={__version__}", f"mlflow=={mlflow.__version__}"],
                metadata={"amnet.variant": loaded.variant, "amnet.attributes": loaded.vocab.names},
                tags={"amnet.variant": loaded.variant})
    return info.model_id, info.model_uri


def _copy(uri: str, target: str) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as fh:
        fh.write(storage.read_bytes(uri))


def _artifact_path(model_uri: str) -> str:
    """Where the ``amnet`` folder sits inside the logged model (``artifacts/amnet``)."""
    from mlflow.models import get_model_info

    artifacts = get_model_info(model_uri).flavors["python_function"].get("artifacts", {})
    return artifacts.get(ARTIFACT, {}).get("path", f"artifacts/{ARTIFACT}")


def attach_gallery(model_id: str, features: str, split: str) -> None:
    """Upload the feature artifact ``features`` (computed from ``split``) into the logged model
    ``model_id``, as ``artifacts/amnet/gallery/``."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory(prefix="amnet-gallery-") as tmp:
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
        MlflowClient().log_model_artifacts(model_id, local, f"{_artifact_path(f'models:/{model_id}')}/{GALLERY_DIR}")
