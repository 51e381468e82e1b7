"""Many processes, one training run: ``torch.distributed`` from the torchrun environment, and a launcher.

A training loop runs inside :func:`session` (:func:`setup` first, :func:`teardown` last). With ``WORLD_SIZE`` unset or 1
nothing happens and every helper answers as for one process (rank 0 of 1), so the single-process path
is unchanged. Under torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``) the
process group uses NCCL on GPUs (one GPU per local rank) and gloo on CPUs.

:func:`launch` starts ``nproc`` copies of a function on this machine through torchrun's own launcher
API (``torch.distributed.launcher.elastic_launch``): what a pod with N GPUs runs inside one component.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def world_size() -> int:
    """Processes in the job (the ``WORLD_SIZE`` torchrun sets; 1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0) if world_size() > 1 else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0) if world_size() > 1 else 0


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes checkpoints, models and MLflow."""
    return rank() == 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def setup(device: torch.device) -> torch.device:
    """Join the process group when ``WORLD_SIZE`` > 1 (NCCL on CUDA, gloo on the CPU); returns the device
    this rank trains on (``cuda:LOCAL_RANK`` on GPUs). Idempotent; a no-op for one process."""
    if world_size() <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not active():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank(), world_size=world_size())
    return device


def teardown() -> None:
    if active():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """``with session(pick_device()) as device:`` a training loop's process group: :func:`setup` on
    entry (the device this rank trains on), :func:`teardown` on exit, also after an error."""
    device = setup(device)
    try:
        yield device
    finally:
        teardown()


def barrier() -> None:
    if active():
        dist.barrier()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` inside DistributedDataParallel when the group is up (gradients, the memory's included,
    all-reduced and averaged every step), else ``model`` itself."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":  # batch statistics over the global batch, as one process computes them
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # same parameters, converted in place
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)  # gloo: SyncBatchNorm is GPU-only, so each rank normalises its part


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a :func:`wrap` (DistributedDataParallel's ``.module``), or ``model`` itself: its own
    attributes (``heads``, ``embed``) and its state dict without the ``module.`` prefix
    (torchvision's references call it ``model_without_ddp``)."""
    return getattr(model, "module", model)


def shard(n: int) -> slice:
    """This rank's contiguous part of ``n`` items (``np.array_split`` bounds): disjoint over ranks,
    together all ``n``, in order."""
    counts = [len(p) for p in np.array_split(np.arange(n), world_size())]
    start = int(sum(counts[: rank()]))
    return slice(start, start + counts[rank()])


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over ranks (itself for one process); every rank gets it."""
    if not active():
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / world_size()


# -------------------------------------------------------------------------------------------- launch


def _call(fn: Callable[..., Any], kwargs: dict[str, Any], level: int = logging.INFO) -> Any:
    """A rank's entry (a fresh spawned interpreter): amnet's logging as in the launching process, then ``fn``."""
    from amnet import logs

    logs.setup(level)
    return fn(**kwargs)


def launch(fn: Callable[..., Any], nproc: int, max_restarts: int = 0, **kwargs: Any) -> Any:
    """Run ``fn(**kwargs)`` in ``nproc`` processes on this machine with the torchrun environment set
    (``torch.distributed.launcher.elastic_launch``, rendezvous on localhost); returns rank 0's result.
    ``max_restarts``: times the whole group is restarted after a worker fails (each restart resumes
    from the last checkpoint). ``fn`` must be importable (a module-level function)."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    saved = os.environ.get("OMP_NUM_THREADS")
    if not (saved or "").strip():  # as torchrun does: the CPUs shared out, not one thread per core per worker
        from amnet.runtime import available_cpus

        os.environ["OMP_NUM_THREADS"] = str(max(1, available_cpus() // nproc))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"amnet-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=max_restarts,
                          monitor_interval=0.5)
    log.info("starting %d ranks on this machine (torchrun launcher, run id %s, OMP_NUM_THREADS=%s)", nproc,
             config.run_id, os.environ["OMP_NUM_THREADS"])
    try:
        results = elastic_launch(config, _call)(fn, kwargs, logging.getLogger("amnet").getEffectiveLevel())
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    return results[0]
