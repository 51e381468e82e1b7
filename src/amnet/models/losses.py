"""AMNet's losses (§3.6): attribute classification (Eq. 4), triplet ranking (Eq. 5), their mix (Eq. 6)."""

from __future__ import annotations

import torch

from amnet.models.attribute_cnn import attribute_loss
from amnet.names import NEGATIVE_MINING

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


def mined_ranking_loss(anchor: torch.Tensor, pos: torch.Tensor, cands: torch.Tensor, valid: torch.Tensor,
                       margin: float = 0.5, mode: str = "batch_hard") -> torch.Tensor:
    """Eq. 5 with the negative of each anchor mined inside the batch instead of the triplet's own.

    ``anchor`` r' (B, Q), ``pos`` (B, Q), ``cands`` (N, Q) every image of the batch (refs, positives,
    negatives, unmanipulated), ``valid`` (B, N) True where candidate j may be anchor i's negative: it
    differs from the target on an attribute known on both sides (``amnet_train.negative_mask``).
    ``batch_hard``: the closest legal negative; ``semi_hard``: the closest one farther than the positive
    (FaceNet), the closest overall when none is. An anchor with no legal candidate adds 0. Not in the
    paper, which samples one random negative per triplet.
    """
    if mode not in NEGATIVE_MINING[1:]:
        raise ValueError(f"unknown negative mining {mode!r}; choose one of {', '.join(NEGATIVE_MINING[1:])}")
    d_pos = euclidean(anchor, pos)  # (B,)
    d_all = torch.sqrt(((anchor[:, None, :] - cands[None, :, :]) ** 2).sum(-1) + EPS)  # (B, N)
    big = torch.finfo(d_all.dtype).max
    d_valid = torch.where(valid, d_all, torch.full_like(d_all, big))
    hardest = d_valid.min(dim=1).values  # (B,)
    if mode == "semi_hard":
        beyond = valid & (d_all > d_pos.detach()[:, None])
        semi = torch.where(beyond, d_all, torch.full_like(d_all, big)).min(dim=1).values
        hardest = torch.where(beyond.any(dim=1), semi, hardest)
    has = valid.any(dim=1)
    hinge = torch.clamp(d_pos - torch.where(has, hardest, d_pos) + margin, min=0.0) * has  # (B,)
    return hinge.sum() / has.sum().clamp_min(1)
