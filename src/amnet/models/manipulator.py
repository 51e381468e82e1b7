"""The attribute manipulator (§3.5): one fully-connected layer fusing r and t, r' = W (r, t) + b (Eq. 3)."""

from __future__ import annotations

import torch
import torch.nn as nn

from amnet.names import ACTIVATIONS


class Manipulator(nn.Module):
    """(r (B, Q_r), t (B, Q_t)) -> r' (B, Q_r).

    ``identity_init`` (default) starts with W = [I, small], b = 0, so r' ~ r: a fresh AMNet retrieves
    like the attribute CNN and training only has to learn the change. The paper does not say how W is
    initialised; this choice is ours and it shortens CPU training. With ``identity_init=False`` the
    layer keeps PyTorch's default init.
    """

    def __init__(self, dim_r: int, dim_t: int, identity_init: bool = True, t_scale: float = 0.01,
                 activation: str = "none"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown manipulator activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        # none: Eq. 3 as written; relu (not the paper): r' is non-negative like every gallery representation
        self.activation = activation
        self.fc = nn.Linear(dim_r + dim_t, dim_r)
        if identity_init:
            with torch.no_grad():
                self.fc.weight.zero_()
                self.fc.weight[:, :dim_r].copy_(torch.eye(dim_r))  # r block: identity
                self.fc.weight[:, dim_r:].normal_(0.0, t_scale)  # t block: small, nonzero so M gets gradient
                self.fc.bias.zero_()

    def forward(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.fc(torch.cat([r, t.to(r.dtype)], dim=1))  # Eq. 3: (B, Q_r + Q_t) -> (B, Q_r)
        return torch.relu(out) if self.activation == "relu" else out
