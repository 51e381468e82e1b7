"""Interactive search (§4, Fig. 1): "this image, but with these attributes" over a featurized gallery.

A :class:`Searcher` holds one trained AMNet model, its gallery's features in an exact faiss index, the
gallery's labels and, when given, the gallery's encoded images (for thumbnails and for queries by
gallery id). A search represents the query image, rewrites r with the prototypes of the requested
attribute values (Eq. 1 + Eq. 3) and ranks the gallery by Euclidean distance in the model's retrieval
space (r' vs r, or the attribute branches' outputs on them: ``train.retrieval``), exactly as
``amnet step evaluate`` does for its query sets.

Sources: local / ``s3://`` paths of a model artifact, its feature artifact and the split (or its
``gallery/`` shards). Without features, the gallery is featurized in memory at load time. An MLflow
model URI (``models:/amnet@champion``, ``models:/amnet/3``, ``runs:/<run_id>``) is resolved to such paths
above this package (:func:`amnet.ops.registry.model_uri.open_searcher`, which ``amnet search`` and
``amnet serve`` use): this package never talks to MLflow. Query images are untrusted: they pass
:func:`amnet.data.images.check_image` (pixel limit, full decode) before the model sees them, and
nothing is written to disk.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from amnet import storage
from amnet.config import FeaturizeConfig
from amnet.data import shards
from amnet.data.images import MAX_PIXELS, check_image, decode_rgb
from amnet.data.schema import Vocabulary
from amnet.data.tensors import to_input
from amnet.errors import AmnetError
from amnet.model_store import LoadedModel, load_model
from amnet.models.memory import make_indicator
from amnet.names import FEATURES_JSON, MISSING, MODEL_URI_SCHEMES
from amnet.retrieval.feature_index import has_index, load_feature_index
from amnet.retrieval.featurize import decode_features, featurize_frame, load_features
from amnet.retrieval.index import Index, build_index
from amnet.runtime import inference_setup

Query = str | os.PathLike | bytes | Image.Image  # gallery id, image path / URI, encoded bytes, PIL image
Changes = Mapping[str, str]
# (model, features=, gallery=, max_pixels=) -> Searcher: Searcher.load, or a loader that also resolves MLflow URIs
Loader = Callable[..., "Searcher"]


@dataclass(frozen=True)
class Result:
    """One ranked gallery image: its id, Euclidean distance to the manipulated query, its labels
    (``"?"`` = missing) and whether it has every requested attribute value."""

    rank: int
    image_id: str
    distance: float
    attributes: dict[str, str]
    matches: bool

    def to_dict(self) -> dict:
        return asdict(self)


def gallery_prefix(gallery: str) -> str:
    """The gallery shard prefix of ``gallery``: a split folder (``SPLIT/gallery``) or the shards themselves."""
    inner = storage.join(gallery, "gallery")
    return inner if storage.list_files(inner, ".parquet") else gallery


def _features_meta(features: str) -> dict:
    uri = storage.join(features, FEATURES_JSON)
    if not storage.exists(uri):
        raise AmnetError(f"{features}: no {FEATURES_JSON}; pass the output of `amnet step featurize`")
    return json.loads(storage.read_text(uri))


def _check_pair(loaded: LoadedModel, meta: dict, features: str) -> None:
    """The features must come from this model's kind and variant, at its dimension."""
    if meta.get("kind") != loaded.kind or meta.get("variant", loaded.variant) != loaded.variant:
        raise AmnetError(f"{features}: features of a {meta.get('variant') or meta.get('kind')} model, but the "
                         f"model is {loaded.variant}; pass the features written with this model")
    dim = loaded.retrieval_dim
    if int(meta.get("dim", -1)) != dim:
        raise AmnetError(f"{features}: features have dimension {meta.get('dim')}, the model {dim}; "
                         "pass the features written by `amnet step featurize` with this model")


def _require_amnet(loaded: LoadedModel, source: str) -> None:
    if loaded.kind != "amnet":
        raise AmnetError(f"{source or 'model'}: is an attribute CNN (kind {loaded.kind!r}); search with "
                         "attribute manipulation needs an AMNet model (the output of `amnet step train`)")


def _labels_matrix(column: pd.Series, num_attributes: int) -> np.ndarray:
    """Shard ``labels`` column -> (N, M) int16 matrix."""
    if len(column) == 0:
        return np.zeros((0, num_attributes), np.int16)
    return np.stack([np.asarray(v, dtype=np.int16) for v in column])


def _encode_pil(image: Image.Image) -> bytes:
    """A PIL image as uncompressed PNG bytes, so it takes the same checked path as an upload."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=0)
    return buf.getvalue()


class Searcher:
    """One AMNet model + one gallery: ``search(query, changes, k)`` -> ranked :class:`Result` list."""

    def __init__(self, loaded: LoadedModel, ids: list[str], labels: np.ndarray, features: np.ndarray,
                 images: dict[str, bytes] | None = None, source: str = "", max_pixels: int = MAX_PIXELS,
                 device: torch.device | str = "cpu", index: str | Index = "auto", precision: str = "fp32") -> None:
        _require_amnet(loaded, source)
        if len(ids) == 0:
            raise AmnetError(f"{source or 'gallery'}: the gallery is empty")
        self.loaded = loaded
        self.ids = list(ids)
        self.labels = labels  # (N, M) int16, -1 = missing
        self.features = features  # (N, Q) float32
        self.images = images or {}
        self.source = source
        self.max_pixels = max_pixels
        self.device = torch.device(device)
        # queries at the gallery features' precision (features.json "precision"): both sides must match
        self.mode = inference_setup(loaded.model, self.device, precision)
        self.row = {image_id: i for i, image_id in enumerate(self.ids)}
        # exact while one exact query stays cheap (50k, more in small dimensions), PQ fast-scan + exact
        # re-ranking above (amnet.retrieval.index), or
        # the index the pipeline's build-index stage stored with the features; self.index.kind says
        if not isinstance(index, str) and index.ntotal != len(self.ids):
            raise AmnetError(f"{source or 'gallery'}: the stored index holds {index.ntotal} vectors, the gallery "
                             f"{len(self.ids)}; rebuild it with `amnet step index`")
        self.index: Index = build_index(features, index) if isinstance(index, str) else index

    # ------------------------------------------------------------------------------------ loading

    @classmethod
    def load(cls, source: str | None = None, *, model: str | None = None, features: str | None = None,
             gallery: str | None = None, device: torch.device | str = "cpu", max_pixels: int = MAX_PIXELS,
             label: str | None = None) -> Searcher:
        """A searcher from a model artifact path (local or ``s3://``), passed as ``source`` or ``model``.

        ``features`` is a feature artifact, ``gallery`` a split (or its ``gallery/`` shards). Without
        features the gallery images are featurized now; without gallery images, thumbnails are
        unavailable and a query by gallery id uses the stored feature. ``label`` names the model in
        :meth:`info` (default: its path). An MLflow model URI is refused here: it is resolved to
        local files above this package (:func:`amnet.ops.registry.model_uri.open_searcher`).
        """
        source = source or model
        if not source:
            raise AmnetError("no model given: pass an MLflow model URI (models:/amnet@champion) or a model folder")
        if source.startswith(MODEL_URI_SCHEMES):
            raise AmnetError(f"{source}: an MLflow model URI; Searcher.load takes model files, so resolve it first "
                             "with amnet.ops.registry.model_uri.open_searcher (as `amnet search` does)")
        return cls._load(load_model(source, device), label or source, features, gallery, device, max_pixels)

    @classmethod
    def _load(cls, loaded: LoadedModel, label: str, features: str | None, gallery: str | None,
              device: torch.device | str, max_pixels: int) -> Searcher:
        """A searcher of ``loaded`` over ``features`` and / or ``gallery`` (read into memory here)."""
        source = label
        index: str | Index = "auto"
        _require_amnet(loaded, label)
        loaded.model.to(device).eval()
        if not features and not gallery:
            raise AmnetError(f"{source}: no gallery to search; pass --features (output of `amnet step featurize`) "
                             "and/or --gallery (the split)")
        frame = shards.read_shards(gallery_prefix(gallery), ["image_id", "image_bytes", "labels"]) if gallery else None
        if features:
            meta = _features_meta(features)
            _check_pair(loaded, meta, features)
            precision = str(meta.get("precision") or "fp32")
            df, matrix = load_features(features)
            if has_index(features):  # built once by the pipeline's build-index stage: not rebuilt here
                index = load_feature_index(features)[0]
        else:
            assert frame is not None
            precision = FeaturizeConfig().precision  # featurized now, at the default precision
            feats = featurize_frame(loaded, frame, batch_size=256, device=device)
            df = feats.drop(columns=["feature"])
            matrix = decode_features(feats["feature"], loaded.retrieval_dim)
        images = None
        if frame is not None:
            images = dict(zip(frame["image_id"].astype(str), frame["image_bytes"], strict=True))
            if len(df) and not any(i in images for i in df["image_id"].astype(str)):
                raise AmnetError(f"{gallery}: none of its images is in the features' gallery; pass the split "
                                 "the features were computed from")
        labels = _labels_matrix(df["labels"], loaded.vocab.num_attributes)
        return cls(loaded, list(df["image_id"].astype(str)), labels, matrix, images, label, max_pixels, device,
                   index=index, precision=precision)

    # ---------------------------------------------------------------------------------- accessors

    @property
    def vocab(self) -> Vocabulary:
        return self.loaded.vocab

    @property
    def size(self) -> int:
        return len(self.ids)

    @property
    def has_images(self) -> bool:
        return bool(self.images)

    def image_bytes(self, image_id: str) -> bytes | None:
        """The stored encoded image of a gallery id, or None when unknown or not loaded."""
        return self.images.get(image_id)

    def attributes(self, image_id: str) -> dict[str, str]:
        """The labelled attributes of a gallery image (``"?"`` = missing)."""
        return self.vocab.describe(self.labels[self._row(image_id)])

    def sample(self, n: int, seed: int | None = None) -> list[str]:
        """``n`` random gallery ids (only ids with a stored image when images are loaded)."""
        pool = [i for i in self.ids if i in self.images] if self.images else self.ids
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(pool), size=min(max(n, 0), len(pool)), replace=False)
        return [pool[int(i)] for i in picks]

    def info(self) -> dict:
        """What the page and ``--json`` show about the loaded model and gallery."""
        return {"model": self.source, "variant": self.loaded.variant, "gallery_size": self.size,
                "feature_dim": self.loaded.retrieval_dim, "has_images": self.has_images,
                "attributes": [{"name": a.name, "values": list(a.values)} for a in self.vocab.attributes]}

    def _row(self, image_id: str) -> int:
        try:
            return self.row[image_id]
        except KeyError:
            raise AmnetError(f"unknown gallery id {image_id!r} ({self.size} gallery images; "
                             f"e.g. {', '.join(self.ids[:3])})") from None

    # ------------------------------------------------------------------------------------ search

    def parse_changes(self, changes: Changes | None) -> list[tuple[int, int]]:
        """{attribute: value} -> (attribute index, value index) pairs; unknown names list the valid ones."""
        if changes is not None and not isinstance(changes, Mapping):
            raise AmnetError(f"changes: expected {{attribute: value}}, got {type(changes).__name__}")
        pairs = []
        for name, value in (changes or {}).items():
            if value is None:
                continue
            a = self.vocab.attribute_index(str(name))
            pairs.append((a, self.vocab.value_index(a, str(value))))
        return pairs

    def _query_bytes(self, query: Query) -> tuple[bytes | None, str | None]:
        """(encoded image, gallery id or None) of a query; a gallery id without a stored image gives (None, id)."""
        if isinstance(query, Image.Image):
            return _encode_pil(query), None
        if isinstance(query, (bytes, bytearray, memoryview)):
            return bytes(query), None
        text = os.fspath(query)
        if not isinstance(query, Path) and text in self.row:
            return self.images.get(text), text
        if storage.is_s3(text) or os.path.isfile(text):
            return storage.read_bytes(text), None
        raise AmnetError(f"{text!r} is neither a gallery id nor an image file")

    @torch.no_grad()
    def represent(self, data: bytes, trusted: bool = False) -> torch.Tensor:
        """Encoded image bytes -> r (1, Q). Untrusted bytes are checked (type, pixels, full decode) first."""
        if not trusted:
            reason = check_image(data, self.max_pixels)
            if reason:
                raise AmnetError(f"query image rejected: {reason}")
        size = self.loaded.model_config.image_size
        pixels = np.asarray(decode_rgb(data, size), dtype=np.uint8).transpose(2, 0, 1)  # (3, S, S)
        x = to_input(torch.from_numpy(np.ascontiguousarray(pixels))[None], self.device)  # (1, 3, S, S)
        with self.mode.autocast():
            return self.loaded.model.represent(self.mode.input(x)).float()

    @torch.no_grad()
    def query_vector(self, query: Query, changes: Changes | None = None) -> tuple[np.ndarray, str | None]:
        """The manipulated query's search vector (1, D) float32 (Eq. 1 + Eq. 3, in the model's retrieval
        space; without changes the image's own vector, as the gallery's) and the query's gallery id, if any."""
        pairs = self.parse_changes(changes)
        data, gallery_id = self._query_bytes(query)
        if data is not None:
            r = self.represent(data, trusted=gallery_id is not None)
        elif self.loaded.model.retrieval != "representation":  # stored vectors are not r: cannot manipulate
            raise AmnetError(f"gallery id {gallery_id!r}: its image is not loaded and this model searches in the "
                             f"{self.loaded.model.retrieval} space, where the stored vector is not r; "
                             "load the gallery split beside the features")
        else:  # a gallery id whose image is not loaded: its stored feature is the same r (fp16)
            r = torch.from_numpy(self.features[self._row(str(gallery_id))][None]).to(self.device)
        model, vocab = self.loaded.model, self.vocab
        with self.mode.autocast():
            if not pairs:  # no change: visual search, the image's own r compared as the gallery's are
                q = model.embed(r)
            else:
                h = make_indicator([pairs], vocab.offsets, vocab.total_values).to(self.device)  # (1, C)
                q = model.embed(model.manipulate(r, h))  # in the model's retrieval space, as in evaluation
        return q.float().cpu().numpy(), gallery_id

    def search(self, query: Query, changes: Changes | None = None, k: int = 20,
               exclude_query: bool = True) -> list[Result]:
        """The ``k`` gallery images nearest to the query manipulated by ``changes``, nearest first.

        ``query`` is a gallery id, an image path / ``s3://`` URI, encoded bytes or a PIL image. With
        ``exclude_query`` a gallery-id query never returns itself. A change to the query's current
        value is allowed (it still adds that value's prototype); no changes = visual search: the image's own
        vector, computed as the gallery's are.
        """
        if int(k) < 1:
            raise AmnetError(f"k must be >= 1 (got {k})")
        pairs = self.parse_changes(changes)
        q, gallery_id = self.query_vector(query, changes)
        skip = self.row.get(gallery_id) if (exclude_query and gallery_id is not None) else None
        distances, rows = self.index.search(q, min(int(k) + (skip is not None), self.size))
        results: list[Result] = []
        for dist, row in zip(distances[0], rows[0], strict=True):
            if row < 0 or row == skip or len(results) == k:
                continue
            labels = self.labels[row]
            matches = all(int(labels[a]) == v and v != MISSING for a, v in pairs)
            results.append(Result(len(results) + 1, self.ids[row], float(dist), self.vocab.describe(labels),
                                  matches))
        return results
