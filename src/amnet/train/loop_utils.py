"""Small helpers shared by the training loops: device choice, seeding, optimiser, timing."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

LogFn = Callable[[dict[str, float], int], None]


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_bf16(precision: str, device: torch.device) -> bool:
    """``precision`` "auto" -> bf16 autocast on CUDA (tensor cores), fp32 on the CPU; or forced."""
    if precision == "auto":
        return device.type == "cuda"
    return precision == "bf16"


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by the cgroup CPU quota (a Kubernetes
    pod's CPU limit), which ``os.cpu_count()`` ignores."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup CPU quota (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``), or None when there is no quota."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def decode_workers(requested: int = 0, beside_cpu_model: bool = False) -> int:
    """JPEG decode threads: ``requested``, or (0) one per available CPU up to 8 — but only a quarter
    of them (at least 1) when the model itself runs on the CPU at the same time, since torch's
    threads already use every core (2 decode threads + prefetch + 2 torch threads on 2 cores
    measured slower than 1 decode thread: docs/performance.md)."""
    if requested > 0:
        return requested
    cpus = available_cpus()
    return max(1, cpus // 4) if beside_cpu_model else min(8, cpus)


def match_torch_threads() -> int:
    """Use one torch intra-op thread per CPU this process really gets (unless ``OMP_NUM_THREADS`` says
    otherwise): in a pod with a CPU limit torch would otherwise start one per *node* core, and
    oversubscribed threads made a training step ~3x slower on a loaded machine (docs/performance.md)."""
    if not os.environ.get("OMP_NUM_THREADS", "").strip():
        torch.set_num_threads(available_cpus())
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
