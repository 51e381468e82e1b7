"""AMNet's losses (§3.6): attribute classification (Eq. 4), triplet ranking (Eq. 5), their mix (Eq. 6)."""

from __future__ import annotations

import torch

from amnet.models.attribute_cnn import attribute_loss

EPS = 1e-12  # inside the sqrt: the gradient of sqrt(x) is infinite at x = 0 (identical features)


def euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Euclidean distance with a safe square root: (B, Q), (B, Q) -> (B,)."""
    return torch.sqrt(((a - b) ** 2).sum(dim=1) + EPS)


def triplet_ranking_loss(
    anchor: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float = 0.5
) -> torch.Tensor:
    """Eq. 5: mean over the batch of max(0, d(r', p) - d(r', n) + m).

    The paper sums over the N triplets; we average so the loss scale does not depend on batch size.
    """
    d_pos = euclidean(anchor, pos)  # (B,)
    d_neg = euclidean(anchor, neg)  # (B,)
    return torch.clamp(d_pos - d_neg + margin, min=0.0).mean()


def classification_loss(logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Eq. 4 on the manipulated representation: targets (B, M) are the DESIRED attribute values
    (the reference's labels with the manipulated ones replaced), -1 = unknown, ignored."""
    return attribute_loss(logits, targets)


def amnet_loss(la: torch.Tensor, lt: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 6: L = lam * La + (1 - lam) * Lt (paper: lam = 0.2; no_ranking uses lam = 1)."""
    return lam * la + (1.0 - lam) * lt
