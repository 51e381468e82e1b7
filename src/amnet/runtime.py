"""Where and how a stage runs: device, CPU threads, seeding and inference precision.

Training and inference both use these, so they live below both (``train/`` and ``retrieval/`` import
this module, never each other). Only torch and numpy.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

LogFn = Callable[[dict[str, float], int], None]  # (metrics, step): the loops' logging callback


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def use_bf16(precision: str, device: torch.device) -> bool:
    """``precision`` "auto" -> bf16 autocast on CUDA (tensor cores), fp32 on the CPU; or forced."""
    if precision == "auto":
        return device.type == "cuda"
    return precision == "bf16"


@dataclass(frozen=True)
class InferenceMode:
    """How a model runs for featurization and queries: bf16 autocast (``precision`` auto|fp32|bf16;
    auto = bf16 on CUDA) and channels-last inputs (on CUDA, or whenever bf16). Gallery features and
    query manipulation must run in the same mode (features.json records it as "precision")."""

    device: torch.device
    bf16: bool
    channels_last: bool

    @classmethod
    def choose(cls, device: torch.device | str, precision: str) -> InferenceMode:
        device = torch.device(device)
        bf16 = use_bf16(precision, device)
        return cls(device, bf16, device.type == "cuda" or bf16)

    @property
    def precision(self) -> str:
        """What features.json records: "bf16" or "fp32"."""
        return "bf16" if self.bf16 else "fp32"

    def input(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)


def inference_setup(model: torch.nn.Module, device: torch.device | str, precision: str) -> InferenceMode:
    """The :class:`InferenceMode` for ``precision`` on ``device``, with ``model`` put in channels-last
    memory format when its inputs will be."""
    mode = InferenceMode.choose(device, precision)
    if mode.channels_last:
        model.to(memory_format=torch.channels_last)
    return mode


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
