"""The ``model.pt`` format: write, read and rebuild a trained model (attribute CNN or AMNet variant).

A model artifact is a folder (or ``s3://`` prefix) holding ``model.pt`` and ``config.yaml``.
``model.pt`` holds only tensors, numbers and strings, so it loads with ``weights_only=True``
(no pickle code execution from an untrusted file). The same safe payload format serves the
training checkpoints of :mod:`amnet.train.checkpoint`.
"""

from __future__ import annotations

import io
import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch

from amnet import config as cfgmod
from amnet import storage
from amnet.config import ModelConfig
from amnet.data.schema import Vocabulary
from amnet.errors import AmnetError
from amnet.models.amnet import AMNet
from amnet.models.attribute_cnn import AttributeCNN
from amnet.models.backbones import build_backbone
from amnet.names import MODEL_FILE

# ------------------------------------------------------------------------------- the safe payload


def _canonical(value: Any) -> Any:
    """``value`` with every string interned, recursively through dicts, lists and tuples.

    Pickle writes a repeated string once and refers back to it only when it is the *same object*, so
    the same payload built from freshly computed values or from values loaded back from a checkpoint
    would serialise to different bytes. Interning makes ``torch.save`` byte-identical for equal
    payloads: a rerun that resumes a finished training rewrites the very same ``model.pt``.
    """
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        kind = OrderedDict if isinstance(value, OrderedDict) else dict
        out = kind((_canonical(k), _canonical(v)) for k, v in value.items())
        if hasattr(value, "_metadata"):  # a state_dict's per-module versions
            out._metadata = value._metadata
        return out
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_canonical(v) for v in value)
    return value


def save_payload(uri: str, payload: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(_canonical(payload), buf)
    storage.write_bytes(uri, buf.getvalue())  # atomic: temp + rename, or one S3 PUT


def load_payload(uri: str) -> dict[str, Any]:
    data = storage.read_bytes(uri)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise AmnetError(
            f"{uri}: not a readable amnet checkpoint ({type(exc).__name__}{refused_pickle(exc)}); delete it and "
            "rerun the stage that writes it"
        ) from exc
    if not isinstance(payload, dict):
        raise AmnetError(f"{uri}: not an amnet checkpoint (expected a dict payload)")
    return payload


def refused_pickle(exc: BaseException) -> str:
    """``": refused ..."`` when ``torch.load(weights_only=True)`` met Python code in the file, else ``""``."""
    text = str(exc)
    if "Weights only load failed" in text and "GLOBAL" in text:
        return ": refused, it holds Python objects that could run code, not only tensors"
    return ""


# ------------------------------------------------------------------------------------- model.pt


def save_model(out: str, kind: str, variant: str, model: torch.nn.Module, model_config: dict,
               vocab_json: str, extra: dict | None = None) -> str:
    """Write ``out/model.pt``; returns its URI."""
    uri = storage.join(out, MODEL_FILE)
    save_payload(uri, {
        "kind": kind,
        "variant": variant,
        "model_config": model_config,
        "vocab": vocab_json,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    })
    return uri


def model_file(model_dir: str) -> str:
    """``model_dir/model.pt`` (or ``model_dir`` itself when it names a ``.pt`` file)."""
    return model_dir if model_dir.endswith(".pt") else storage.join(model_dir, MODEL_FILE)


def load_model_payload(model_dir: str) -> dict[str, Any]:
    uri = model_file(model_dir)
    if not storage.exists(uri):
        raise AmnetError(f"{model_dir}: no {MODEL_FILE}; point at the output of `amnet step pretrain` or `train`")
    payload = load_payload(uri)
    for key in ("kind", "model_config", "vocab", "state_dict"):
        if key not in payload:
            raise AmnetError(f"{uri}: checkpoint lacks {key!r}; it was not written by amnet")
    return payload


def model_variant(model_dir: str) -> str:
    """The variant a model artifact was trained as ("attribute_cnn" for the attribute CNN)."""
    payload = load_model_payload(model_dir)
    return str(payload.get("variant", payload["kind"]))


def training_seed(extra: dict[str, Any]) -> Any:
    """The training seed a model's ``extra`` records (None for the attribute CNN or older models)."""
    return extra.get("train_config", {}).get("seed")


@dataclass
class LoadedModel:
    kind: str  # "attribute_cnn" | "amnet"
    variant: str  # "attribute_cnn" | "amnet" | "no_memory" | "no_ranking"
    model: torch.nn.Module
    model_config: ModelConfig
    vocab: Vocabulary
    extra: dict

    @torch.no_grad()
    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """Gallery representation r (B, Q): never manipulated (§4 Clothing Search)."""
        if self.kind == "attribute_cnn":
            return self.model(x)[0]
        return self.model.represent(x)

    @property
    def retrieval_dim(self) -> int:
        """Length of the gallery and query vectors search compares (AMNet's retrieval space)."""
        return self.model.retrieval_dim if self.kind == "amnet" else self.model_config.feature_dim

    @torch.no_grad()
    def gallery_vector(self, x: torch.Tensor) -> torch.Tensor:
        """The vector a gallery image is searched by: r, or AMNet's attribute outputs on r."""
        return self.model.gallery_vector(x) if self.kind == "amnet" else self.represent(x)


def build_model(kind: str, variant: str, model_cfg: ModelConfig, vocab: Vocabulary,
                memory_init: torch.Tensor | None = None, architecture: dict | None = None) -> torch.nn.Module:
    """The network of a model artifact; ``architecture`` holds AMNet's options beyond the paper
    (``memory_read``, ``activation``, ``retrieval``; saved under ``extra["architecture"]``, absent = the paper's)."""
    backbone = build_backbone(model_cfg)
    if kind == "attribute_cnn":
        return AttributeCNN(backbone, model_cfg.feature_dim, vocab.sizes)
    if kind == "amnet":
        return AMNet(backbone, model_cfg.feature_dim, vocab.sizes, memory_init, variant, **(architecture or {}))
    raise AmnetError(f"unknown model kind {kind!r} in checkpoint")


def load_model(model_dir: str, device: torch.device | str = "cpu") -> LoadedModel:
    payload = load_model_payload(model_dir)
    model_cfg = cfgmod.from_dict(ModelConfig, payload["model_config"])
    vocab = Vocabulary.from_json(payload["vocab"], source=model_dir)
    kind, variant = payload["kind"], payload.get("variant", payload["kind"])
    state = payload["state_dict"]
    memory_init = state.get("memory.memory") if kind == "amnet" else None
    with torch.device("meta"):  # no random initialisation of weights the checkpoint replaces (2 s for AlexNet)
        model = build_model(kind, variant, model_cfg, vocab, memory_init,
                            payload.get("extra", {}).get("architecture"))
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise AmnetError(f"{model_dir}: checkpoint does not fit its own architecture ({str(exc)[:200]})") from exc
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise AmnetError(f"{model_dir}: checkpoint lacks {', '.join(left[:5])}; it was not written by this version")
    model.to(device).eval()
    return LoadedModel(kind, variant, model, model_cfg, vocab, payload.get("extra", {}))
