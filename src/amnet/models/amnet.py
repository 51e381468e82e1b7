"""AMNet (§3, Fig. 3): shared representation learner + memory block + manipulator + attribute branches.

Variants (§5.1):

- ``amnet``: the full model, trained with Eq. 6.
- ``no_ranking``: the same network, trained with the classification loss only (lam = 1 in Eq. 6;
  the loss, not the architecture, differs).
- ``no_memory``: baseline 2, no memory block; the indicator h itself is concatenated to r and the
  manipulator is Linear(Q + C -> Q).

Gallery images are never manipulated: they are represented with :meth:`AMNet.represent` only.

Retrieval space (``retrieval``): ``representation`` searches with r' against r (§4, the paper);
``attributes`` (not the paper) searches with the attribute branches' softmax outputs on r' and r,
concatenated per attribute: the same network and losses, compared where Eq. 4 trains it to be exact.
``combined`` (not the paper) concatenates both, scaled so that the squared Euclidean distance is
``w * |p' - p|^2 / M + (1 - w) * |r'/|r'| - r/|r||^2`` (``retrieval_weight`` = w, M attributes): the
attribute term finds the target labels, the representation term keeps the query item's look among them;
one vector, so every index kind serves it unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from amnet.models.manipulator import Manipulator
from amnet.models.memory import MemoryBlock
from amnet.names import RETRIEVAL_SPACES, TRAINED_VARIANTS

AMNET_VARIANTS = TRAINED_VARIANTS  # the variants this module builds


class AMNet(nn.Module):
    """ref/pos/neg images + indicator h -> manipulated r', pos/neg representations, attribute logits.

    Parameter names: ``backbone.*`` and ``heads.*`` (same as AttributeCNN, so its state dict
    initialises these), ``memory.memory`` (C, Q) when the variant has a memory, ``manipulator.fc.*``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        sizes: list[int],
        memory_init: torch.Tensor | None = None,
        variant: str = "amnet",
        identity_init: bool = True,
        memory_read: str = "mean",
        activation: str = "none",
        retrieval: str = "representation",
        retrieval_weight: float = 0.5,
    ):
        super().__init__()
        if variant not in AMNET_VARIANTS:
            raise ValueError(f"unknown AMNet variant {variant!r}; choose one of {', '.join(AMNET_VARIANTS)}")
        if retrieval not in RETRIEVAL_SPACES:
            raise ValueError(f"unknown retrieval space {retrieval!r}; choose one of {', '.join(RETRIEVAL_SPACES)}")
        self.variant = variant
        self.retrieval = retrieval
        if not 0.0 <= retrieval_weight <= 1.0:
            raise ValueError(f"retrieval_weight must be within [0, 1] (got {retrieval_weight})")
        self.retrieval_weight = float(retrieval_weight)
        self.feature_dim = feature_dim
        self.sizes = list(sizes)
        self.num_values = sum(self.sizes)  # C
        self.backbone = backbone  # one set of weights for ref, pos and neg (the "dual path", §3.3)
        if variant == "no_memory":
            self.memory = None
            self.manipulator = Manipulator(feature_dim, self.num_values, identity_init,
                                           activation=activation)  # [r, h] -> r'
        else:
            self.memory = MemoryBlock(self.num_values, feature_dim, memory_init, memory_read)
            self.manipulator = Manipulator(feature_dim, feature_dim, identity_init,
                                           activation=activation)  # [r, t] -> r'
        self.heads = nn.ModuleList(nn.Linear(feature_dim, c) for c in self.sizes)

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, S, S) -> r (B, Q); the gallery representation."""
        return self.backbone(x)

    def manipulate(self, r: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """r (B, Q), indicator h (B, C) -> r' (B, Q)."""
        t = h if self.memory is None else self.memory(h)  # (B, C) or Eq. 1: (B, Q)
        return self.manipulator(r, t)  # Eq. 3

    def classify(self, r: torch.Tensor) -> list[torch.Tensor]:
        """r' (B, Q) -> M x (B, C_m) logits; trained against the desired attributes (Eq. 4)."""
        return [head(r) for head in self.heads]

    @property
    def retrieval_dim(self) -> int:
        """Length of the vectors :meth:`gallery_vector` and :meth:`query_vector` return."""
        return {"attributes": self.num_values, "representation": self.feature_dim,
                "combined": self.num_values + self.feature_dim}[self.retrieval]

    def embed(self, r: torch.Tensor) -> torch.Tensor:
        """r or r' (B, Q) -> the vector retrieval compares: itself, its per-attribute softmax (B, C), or
        both, weighted (B, C + Q; ``combined``, see the module docstring)."""
        if self.retrieval == "representation":
            return r
        probs = torch.cat([logits.float().softmax(dim=1) for logits in self.classify(r)], dim=1)
        if self.retrieval == "attributes":
            return probs.to(r.dtype)
        w = self.retrieval_weight
        unit = F.normalize(r.float(), dim=1)
        return torch.cat([probs * math.sqrt(w / len(self.sizes)), unit * math.sqrt(1.0 - w)], dim=1).to(r.dtype)

    def gallery_vector(self, x: torch.Tensor) -> torch.Tensor:
        """Gallery images (B, 3, S, S) -> search vectors; never manipulated (§4)."""
        return self.embed(self.represent(x))

    def query_vector(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Query images + indicator h (B, C) -> the manipulated search vector (Eq. 1 + Eq. 3, §4)."""
        return self.embed(self.manipulate(self.represent(x), h))

    def forward(
        self, ref: torch.Tensor, h: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        b = ref.shape[0]
        feats = self.backbone(torch.cat([ref, pos, neg], dim=0))  # one pass: (3B, Q)
        r, p, n = feats.split([b, pos.shape[0], neg.shape[0]], dim=0)  # (B, Q) each
        r_manip = self.manipulate(r, h)  # (B, Q)
        return {"r_manip": r_manip, "ref": r, "pos": p, "neg": n, "logits": self.classify(r_manip)}
