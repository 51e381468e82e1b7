"""Rebuild a trained model (attribute CNN or AMNet variant) from its artifact folder."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from amnet import config as cfgmod
from amnet.config import ModelConfig
from amnet.data.schema import Vocabulary
from amnet.errors import AmnetError
from amnet.models.amnet import AMNet
from amnet.models.attribute_cnn import AttributeCNN
from amnet.models.backbones import build_backbone
from amnet.train.checkpoint import load_model_payload


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


def build_model(kind: str, variant: str, model_cfg: ModelConfig, vocab: Vocabulary,
                memory_init: torch.Tensor | None = None) -> torch.nn.Module:
    backbone = build_backbone(model_cfg)
    if kind == "attribute_cnn":
        return AttributeCNN(backbone, model_cfg.feature_dim, vocab.sizes)
    if kind == "amnet":
        return AMNet(backbone, model_cfg.feature_dim, vocab.sizes, memory_init, variant)
    raise AmnetError(f"unknown model kind {kind!r} in checkpoint")


def load_model(model_dir: str, device: torch.device | str = "cpu") -> LoadedModel:
    payload = load_model_payload(model_dir)
    model_cfg = cfgmod.from_dict(ModelConfig, payload["model_config"])
    vocab = Vocabulary.from_json(payload["vocab"], source=model_dir)
    kind, variant = payload["kind"], payload.get("variant", payload["kind"])
    state = payload["state_dict"]
    memory_init = state.get("memory.memory") if kind == "amnet" else None
    with torch.device("meta"):  # no random initialisation of weights the checkpoint replaces (2 s for AlexNet)
        model = build_model(kind, variant, model_cfg, vocab, memory_init)
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:
        raise AmnetError(f"{model_dir}: checkpoint does not fit its own architecture ({str(exc)[:200]})") from exc
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise AmnetError(f"{model_dir}: checkpoint lacks {', '.join(left[:5])}; it was not written by this version")
    model.to(device).eval()
    return LoadedModel(kind, variant, model, model_cfg, vocab, payload.get("extra", {}))
