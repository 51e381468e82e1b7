"""Optional initial weights from a local path or ``s3://`` (never downloaded from a hub)."""

from __future__ import annotations

import logging

import torch

from amnet import storage
from amnet.errors import AmnetError
from amnet.models.backbones import LoadReport, load_initial_weights

log = logging.getLogger(__name__)


def load_backbone_weights(backbone: torch.nn.Module, uri: str) -> LoadReport:
    """Load a state-dict file (``weights_only``) into ``backbone``; fail when nothing matches."""
    try:
        report = load_initial_weights(backbone, storage.read_bytes(uri))
    except AmnetError:
        raise
    except Exception as exc:  # torch raises several types for a foreign or truncated file
        from amnet.model_store import refused_pickle

        why = f"{type(exc).__name__}{refused_pickle(exc)}"
        raise AmnetError(f"{uri}: not a readable PyTorch state dict ({why})") from exc
    if not report.loaded:
        raise AmnetError(f"{uri}: no tensor in this file matches the backbone's parameter names and shapes")
    log.info("initial weights from %s: %s", uri, report)
    return report
