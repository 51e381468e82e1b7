"""Optional initial weights from a local path or ``s3://`` (never downloaded from a hub)."""

from __future__ import annotations

import io

import torch

from amnet import storage
from amnet.errors import AmnetError


def load_backbone_weights(backbone: torch.nn.Module, uri: str) -> dict[str, list[str]]:
    """Load a state dict file into ``backbone`` (non-strict); report what did not match."""
    try:
        state = torch.load(io.BytesIO(storage.read_bytes(uri)), map_location="cpu", weights_only=True)
    except AmnetError:
        raise
    except Exception as exc:
        raise AmnetError(f"{uri}: not a readable PyTorch state dict ({type(exc).__name__})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise AmnetError(f"{uri}: no tensor in this file matches the backbone's parameter names and shapes")
    backbone.load_state_dict(usable, strict=False)
    return {"loaded": sorted(usable), "skipped": sorted(set(state) - set(usable))}
