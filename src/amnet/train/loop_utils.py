"""Small helpers shared by the training loops: optimiser, parameter groups, throughput."""

from __future__ import annotations

import time

import torch


def sgd(params_with_decay, params_without_decay, lr: float, momentum: float, weight_decay: float):
    """SGD with momentum, as in the paper (§3.6); no weight decay on memory rows and biases."""
    groups = [{"params": list(params_with_decay), "weight_decay": weight_decay}]
    no_decay = list(params_without_decay)
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def split_decay(model: torch.nn.Module, exclude: tuple[str, ...] = ("memory",)):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or any(e in name for e in exclude) else decay).append(p)
    return decay, no_decay


class Throughput:
    """Images per second over a loop, excluding nothing: the honest end-to-end rate."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.images = 0

    def add(self, n: int) -> None:
        self.images += n

    @property
    def rate(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)
