"""The memory block (§3.4): a trainable C x Q matrix of prototype attribute representations.

Row ``offsets[m] + v`` holds the prototype of value v of attribute m (``Vocabulary.memory_row``).
The controller reads it with a normalized manipulation indicator (Eq. 1); autograd gives the update
of Eq. 2, which touches only the addressed rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from amnet.names import MEMORY_READS


class MemoryBlock(nn.Module):
    """Prototype memory M (C, Q) and its read operation t = h' M (Eq. 1)."""

    def __init__(self, num_values: int, dim: int, init: torch.Tensor | None = None, read: str = "mean"):
        super().__init__()
        if read not in MEMORY_READS:
            raise ValueError(f"unknown memory read {read!r}; choose one of {', '.join(MEMORY_READS)}")
        self.read = read  # mean: Eq. 1 as written (h' = h / sum h); sum: h itself, one full prototype per change
        if init is None:
            # No prototypes given (tests, ablations): small random rows; normally the prototypes
            # artifact (mean attribute-CNN features per value, §3.4) is passed as ``init``.
            init = torch.randn(num_values, dim) * 0.01
        if tuple(init.shape) != (num_values, dim):
            raise ValueError(f"memory init has shape {tuple(init.shape)}, expected ({num_values}, {dim})")
        self.memory = nn.Parameter(init.detach().clone().float())  # (C, Q)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, C) binary indicator -> prototype t (B, Q); an all-zero row of h gives t = 0."""
        h = h.to(self.memory.dtype)
        if self.read == "sum":  # not the paper: t = sum_i h(i) M(i, :), so two changes are not halved
            return h @ self.memory  # (B, Q)
        total = h.sum(dim=1, keepdim=True)  # (B, 1)
        h_norm = h / torch.where(total > 0, total, torch.ones_like(total))  # (B, C) h' = h / sum(h)
        # Eq. 1: t = sum_i h'(i) M(i, :). Its gradient is dM = h'^T dt (Eq. 2), zero on unaddressed rows.
        return h_norm @ self.memory  # (B, Q)


def make_indicator(
    changes: Sequence[Sequence[tuple[int, int]]], offsets: Sequence[int], num_values: int
) -> torch.Tensor:
    """Manipulation indicators h (B, C): h[b, offsets[a] + v] = 1 for every desired (a, v) of sample b."""
    h = torch.zeros(len(changes), num_values)
    for b, pairs in enumerate(changes):
        for attr, value in pairs:
            h[b, offsets[attr] + value] = 1.0
    return h


def indicator_from_targets(
    target: torch.Tensor, changed: torch.Tensor, offsets: Sequence[int], num_values: int
) -> torch.Tensor:
    """Vectorised :func:`make_indicator` from shard columns.

    ``target`` (B, M) desired value per attribute, ``changed`` (B, M) nonzero where the attribute is
    manipulated -> h (B, C) with a 1 at the desired value of every changed attribute.
    """
    target = target.long()
    mask = (changed != 0) & (target >= 0)  # (B, M)
    rows = torch.as_tensor(list(offsets), device=target.device) + target.clamp_min(0)  # (B, M)
    h = torch.zeros(target.shape[0], num_values, device=target.device)
    h.scatter_(1, rows, mask.float())  # each (b, row) is written once: rows differ across attributes
    return h
