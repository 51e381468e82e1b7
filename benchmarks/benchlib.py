"""Shared helpers of the throughput benchmarks (not a benchmark itself).

Synthetic gallery shards and triplet pools from the built-in generator, random-weight model artifacts
written with the real ``amnet.model_store.save_model``, device selection, timing and memory readings.
Imports only torch, numpy, pandas, pyarrow, PIL and amnet's runtime / model_store / model / data / train
modules (never mlflow, boto3, kfp or faiss), so ``gpu_check.py`` can use it on a machine that has none
of those.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from amnet import config as cfgmod
from amnet.config import ModelConfig
from amnet.data import shards
from amnet.data.synth import VOCAB, render_sample
from amnet.data.tensors import MEAN, STD

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------- environment
def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    return dev


def use_device_in_stages(device: torch.device) -> None:
    """The stage functions pick their device with ``pick_device()`` (cuda when there is one); make
    them use ``device`` instead (only matters for ``--device cpu`` on a CUDA machine)."""
    import amnet.retrieval.featurize
    import amnet.train.amnet_train
    import amnet.train.pretrain
    import amnet.train.prototypes

    for mod in (amnet.retrieval.featurize, amnet.train.prototypes, amnet.train.amnet_train, amnet.train.pretrain):
        mod.pick_device = lambda: device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_env(device: torch.device) -> str:
    load = f", load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (f"device {device}{gpu}; torch {torch.__version__}, {torch.get_num_threads()} torch threads; "
            f"{os.cpu_count()} CPUs{load}")


def load_bench(name: str):
    """Import a sibling benchmark script (``featurize``, ``train``) as a module, by path."""
    spec = importlib.util.spec_from_file_location(f"amnet_bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------ candidate changes
SCALE = 1.0 / (255.0 * STD)  # (x / 255 - mean) / std  ==  x * SCALE + BIAS: one multiply-add, in place
BIAS = -MEAN / STD


def fused_to_input(images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """``amnet.data.tensors.to_input`` as one in-place multiply-add instead of its four passes (the
    candidate change not in src/; results differ by float rounding)."""
    x = images.to(device, non_blocking=True).float()
    return x.mul_(SCALE.to(x.device)).add_(BIAS.to(x.device))


@contextmanager
def swapped(module, name: str, value) -> Iterator[None]:
    """``module.<name>`` replaced by ``value`` inside the block: the product's own function runs with one
    call swapped (a candidate change measured without copying the function)."""
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


# ------------------------------------------------------------------------------------------ synthetic data
def _render(args: tuple[int, int, int]) -> tuple[list[int], bytes]:
    seed, index, size = args
    labels, data = render_sample(seed, index, size)
    return [VOCAB.value_index(m, labels[name]) for m, name in enumerate(VOCAB.names)], data


def render_pool(n: int, size: int = 128, seed: int = 0, workers: int | None = None) -> tuple[np.ndarray, list[bytes]]:
    """(labels (n, M) int16, JPEG blobs) of ``n`` synthetic garments at ``size`` px."""
    workers = workers or max(1, min(os.cpu_count() or 1, 16))
    tasks = [(seed, i, size) for i in range(n)]
    if workers == 1 or n < 200:
        rows = [_render(t) for t in tasks]
    else:
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                          else "spawn")
        with ctx.Pool(workers) as pool:
            rows = pool.map(_render, tasks, chunksize=max(1, min(64, n // (4 * workers))))
    return np.asarray([r[0] for r in rows], dtype=np.int16), [r[1] for r in rows]


def write_gallery(root: str, num_images: int, shard_size: int, labels: np.ndarray, blobs: list[bytes],
                  folder: str = "gallery") -> str:
    """A split-like folder whose ``<folder>/part-*.parquet`` (default ``gallery``) hold ``num_images`` rows
    (the pool's images cycled, each row its own id); shard columns as ``amnet data split`` writes them.
    Returns ``root``."""
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    Path(root, "attributes.json").write_text(VOCAB.to_json())
    for s, start in enumerate(range(0, num_images, shard_size)):
        idx = np.arange(start, min(start + shard_size, num_images))
        src = idx % len(blobs)
        frame = pd.DataFrame({
            "image_id": [f"{folder[0]}{i:07d}" for i in idx],
            "image_bytes": [blobs[j] for j in src],
            "labels": [labels[j].tolist() for j in src],
        })
        shards.write_table(os.path.join(root, folder, shards.shard_name(s)), frame)
    return root


def model_config(backbone: str, image_size: int | None = None, feature_dim: int | None = None) -> ModelConfig:
    """The pipeline's defaults per backbone: small = 64 px, Q 256; alexnet = the paper's 224 px fc7 (4096)."""
    if backbone == "small":
        return ModelConfig(backbone="small", image_size=image_size or 64, feature_dim=feature_dim or 256)
    return ModelConfig(backbone=backbone, image_size=image_size or 224, feature_dim=feature_dim or 4096)


def save_random_model(out: str, cfg: ModelConfig, kind: str = "amnet", seed: int = 0) -> str:
    """An untrained model artifact (random weights; weights do not change the rate) written with the
    real ``save_model``, loadable by ``load_model`` / ``run_featurize``."""
    from amnet.model_store import build_model, save_model

    torch.manual_seed(seed)
    variant = "attribute_cnn" if kind == "attribute_cnn" else "amnet"
    net = build_model(kind, variant, cfg, VOCAB)
    save_model(out, kind, variant, net, cfgmod.to_dict(cfg), VOCAB.to_json())
    return out


# ------------------------------------------------------------------------------------------------ timing
class Timed:
    """Wall and process CPU seconds of a block: ``with Timed() as t: ...; t.wall, t.cpu``."""

    def __enter__(self) -> Timed:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


def timed(fn: Callable[[], object], device: torch.device | None = None) -> Timed:
    with Timed() as t:
        fn()
        if device is not None:
            sync(device)
    return t


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


# ------------------------------------------------------------------------------------------------ memory
def rss_mb() -> float:
    """Current resident set size (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process's own address space: Linux ``VmHWM``.

    Not ``getrusage().ru_maxrss`` on Linux: the kernel carries the parent's peak across fork + exec
    into it, so a fresh child started by a big parent would report the parent's RSS (the same peak at
    every gallery size in the memory check of ``featurize.py``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def dump(result: dict) -> None:
    print("JSON " + json.dumps(result, default=float, sort_keys=True))
