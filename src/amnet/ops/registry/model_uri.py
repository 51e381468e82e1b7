"""MLflow model URIs (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN_ID``) -> a local
``model.pt`` and the gallery the registry recorded for it (version tags), and the searcher over them
(:func:`open_searcher`: what ``amnet search`` and ``amnet serve`` load; :mod:`amnet.search` itself takes
only model files)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amnet import storage
from amnet.errors import AmnetError
from amnet.names import MODEL_FILE, MODEL_URI_SCHEMES
from amnet.ops.tracking import runs

if TYPE_CHECKING:
    from amnet.search.searcher import Searcher


@dataclass(frozen=True)
class MlflowRef:
    """What an MLflow model URI points at: the downloaded ``model.pt`` and the registry's gallery tags."""

    model_file: str
    label: str
    features: str | None
    gallery: str | None


def _parse_mlflow_uri(uri: str) -> tuple[str, str, str]:
    """``models:/NAME@ALIAS`` -> ("alias", NAME, ALIAS); ``models:/NAME/V`` -> ("version", NAME, V);
    ``runs:/RUN_ID[/PATH]`` -> ("run", RUN_ID, PATH or model.pt)."""
    forms = "models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID"
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/"):].strip("/").partition("/")
        if not run_id:
            raise AmnetError(f"{uri}: no run id; expected {forms}")
        return "run", run_id, path or MODEL_FILE
    rest = uri[len("models:/"):].strip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if name and alias:
            return "alias", name, alias
    name, _, version = rest.rpartition("/")
    if name and version.isdigit():
        return "version", name, version
    raise AmnetError(f"{uri}: not a model URI amnet understands; expected {forms}")


def resolve_mlflow(uri: str, dst: str) -> MlflowRef:
    """Resolve a registered version (or a run) to its ``model.pt``, downloaded into the folder ``dst``,
    and its gallery: version tags ``amnet.run_id`` (the run holding ``model.pt``), ``amnet.features_uri``
    and ``amnet.gallery_uri``. For ``runs:/`` the tags of a version registered from that run are used
    when there is one."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException


    form, name, ref = _parse_mlflow_uri(uri)
    runs.check_tracking_server()
    client = MlflowClient()
    version = None
    try:
        if form == "alias":
            version = client.get_model_version_by_alias(name, ref)
        elif form == "version":
            version = client.get_model_version(name, ref)
        else:
            found = client.search_model_versions(f"tag.`amnet.run_id` = '{name}'")
            version = found[0] if found else None
    except MlflowException as exc:
        raise AmnetError(f"{uri}: not in the MLflow model registry ({exc.message.splitlines()[0][:200]})") from exc
    tags = dict(version.tags) if version is not None else {}
    if version is not None and str(version.source or "").startswith("models:/"):
        servable = _servable(version, uri, dst)  # the registered pyfunc searcher: the files `mlflow models serve` loads
        if servable is not None:
            return servable
    run_id = name if form == "run" else (tags.get("amnet.run_id") or version.run_id)
    path = ref if form == "run" else MODEL_FILE
    try:
        model_file = download_artifacts(run_id=run_id, artifact_path=path,
                                        dst_path=dst)
    except (MlflowException, OSError) as exc:
        raise AmnetError(f"{uri}: run {run_id} has no {path} artifact to download ({str(exc)[:200]})") from exc
    label = uri if version is None else f"{uri} ({version.name} v{version.version})"
    return MlflowRef(model_file, label, storage.artifact_uri(tags.get("amnet.features_uri")),
                     storage.artifact_uri(tags.get("amnet.gallery_uri")))


def _servable(version, uri: str, dst: str) -> MlflowRef | None:
    """A version registered from amnet's servable pyfunc model: the whole model downloaded into ``dst``,
    its model.pt and attached gallery features, and the split they came from (when readable here;
    else the version's ``amnet.gallery_uri`` tag). None when the version is another kind of model."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from amnet.ops.registry import servable

    try:
        local = download_artifacts(artifact_uri=f"models:/{version.name}/{version.version}", dst_path=dst)
    except (MlflowException, OSError) as exc:
        raise AmnetError(f"{uri}: model files of {version.name} v{version.version} could not be downloaded "
                         f"({str(exc)[:200]})") from exc
    root = servable.servable_root(local)
    if root is None:
        return None
    tags = dict(version.tags)
    return MlflowRef(os.path.join(root, MODEL_FILE), f"{uri} ({version.name} v{version.version})",
                     servable.attached_features(root) or storage.artifact_uri(tags.get("amnet.features_uri")),
                     servable.recorded_gallery(root) or storage.artifact_uri(tags.get("amnet.gallery_uri")))


def is_model_uri(source: str | None) -> bool:
    """True for an MLflow model URI (``models:/...``, ``runs:/...``), False for a path."""
    return bool(source) and str(source).startswith(MODEL_URI_SCHEMES)


def open_searcher(source: str | None = None, *, model: str | None = None, features: str | None = None,
                  gallery: str | None = None, **options: Any) -> Searcher:
    """:meth:`Searcher.load <amnet.search.searcher.Searcher.load>` that also takes an MLflow model URI
    (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN_ID``) as ``source`` or ``model``.

    A URI is resolved with :func:`resolve_mlflow` into a temporary folder that lives only while the
    searcher loads; ``features`` (a feature artifact) and ``gallery`` (a split) override what the
    registry names (tags ``amnet.features_uri`` / ``amnet.gallery_uri``). ``options``: the rest of
    ``Searcher.load``'s keywords (``device``, ``max_pixels``)."""
    from amnet.search.searcher import Searcher

    source = source or model
    if not is_model_uri(source):
        return Searcher.load(source, features=features, gallery=gallery, **options)
    assert source is not None
    # the downloaded files (model.pt, attached gallery features) live only while loading
    with tempfile.TemporaryDirectory(prefix="amnet-search-") as tmp:
        ref = resolve_mlflow(source, tmp)
        return Searcher.load(ref.model_file, features=features or ref.features, gallery=gallery or ref.gallery,
                             label=ref.label, **options)
