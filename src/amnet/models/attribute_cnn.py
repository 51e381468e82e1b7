"""The attribute CNN (§3.4 "Memory Initialization", §4): a backbone + one softmax branch per attribute.

It is trained to classify the M attributes; its representations of the training images, averaged
per attribute value, become the prototypes that initialise AMNet's memory. Its parameter names
(``backbone.*``, ``heads.*``) are the same as AMNet's, so its state dict initialises an AMNet
directly (``amnet.load_state_dict(sd, strict=False)`` or ``load_initial_weights``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from amnet.names import MISSING


class AttributeCNN(nn.Module):
    """Backbone (B, 3, S, S) -> features r (B, Q) -> M fully-connected branches, logits (B, C_m)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, sizes: list[int]):
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.sizes = list(sizes)
        self.heads = nn.ModuleList(nn.Linear(feature_dim, c) for c in self.sizes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        r = self.backbone(x)  # (B, Q)
        return r, [head(r) for head in self.heads]  # (B, Q), M x (B, C_m)


def attribute_loss(logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy summed over the M attributes, each averaged over its labelled samples.

    ``labels`` is (B, M), -1 (= ``MISSING``) where a label is unknown (ignored). An attribute with
    no label in the batch adds 0 (plain ``cross_entropy(ignore_index=-1)`` would give NaN). This is
    Eq. 4 with a mean over the batch instead of the paper's sum over N (a learning-rate scale only).
    """
    labels = labels.long()  # shards store int16
    total = logits[0].new_zeros(())
    for m, logit in enumerate(logits):  # logit (B, C_m)
        target = labels[:, m]  # (B,)
        count = (target != MISSING).sum().clamp_min(1)
        total = total + F.cross_entropy(logit, target, ignore_index=MISSING, reduction="sum") / count
    return total


def predict_labels(logits: list[torch.Tensor]) -> torch.Tensor:
    """Arg-max value of every attribute branch: M x (B, C_m) -> (B, M) int64."""
    return torch.stack([logit.argmax(dim=1) for logit in logits], dim=1)
