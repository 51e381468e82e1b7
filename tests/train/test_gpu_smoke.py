"""GPU smoke tests (marker ``gpu``): training, featurization and two NCCL ranks on CUDA.

Skipped, with the reason, where ``torch.cuda.is_available()`` is false (every CPU machine and CI; under
``AMNET_REQUIRE_ALL=1`` only ``gpu`` tests may skip); the two-rank test also needs two GPUs. Run them on a
GPU node with ``pytest -m gpu tests/train/test_gpu_smoke.py``.

A bare GPU node has neither kfp nor mlflow: this module imports only torch, numpy and the training and
retrieval layers, and the stages run with tracking off (``MLFLOW_TRACKING_URI`` unset), as the session's
``trained_chain`` (tests/conftest.py) is built. ``test_this_module_imports_without_kfp_or_mlflow`` (not
marked ``gpu``: it runs everywhere) checks that in a fresh interpreter where both are missing.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from amnet.config import FeaturizeConfig
from amnet.data import shards
from amnet.data.split import label_matrix
from amnet.data.tensors import decode_batch
from amnet.data.triplets import TripletSampler
from amnet.model_store import load_model, load_payload
from amnet.retrieval.featurize import featurize_frame
from amnet.train import distributed
from amnet.train.amnet_train import STEP_METRICS, train_step
from amnet.train.loop_utils import sgd, split_decay

CUDA = torch.cuda.is_available()
TRAIN = {"epochs": 2, "steps_per_epoch": 5, "batch_size": 16}


def features(out) -> np.ndarray:
    return np.stack([np.frombuffer(b, np.float16) for b in out["feature"]]).astype(np.float32)


def gallery(chain):
    return shards.read_shards(str(chain.split / "gallery"))


# ------------------------------------------------------------------------------------- one GPU


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA device (torch.cuda.is_available() is false)")
def test_tiny_amnet_trains_on_cuda_for_a_few_steps(trained_chain, tmp_path, monkeypatch):
    """Steps by hand on ``cuda`` (fp32 and bf16): finite losses, every weight on the GPU, the memory
    updated (Eq. 2); then the training stage itself, which picks the GPU, for 2 short epochs."""
    from amnet.steps import train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    device = torch.device("cuda")
    loaded = load_model(str(trained_chain.model), device)
    model, vocab = loaded.model, loaded.vocab
    pool = shards.read_shards(str(trained_chain.split / "triplet_pool"))
    images = decode_batch(list(pool["image_bytes"]), loaded.model_config.image_size).to(device)
    labels = label_matrix(pool["labels"], vocab.num_attributes)
    sampler = TripletSampler(labels, seed=0)
    opt = sgd(*split_decay(model), lr=0.01, momentum=0.9, weight_decay=0.0)
    before = model.memory.memory.detach().clone()
    model.train()
    for step, batch in enumerate(sampler.batches(0, 6, 8)):
        out = train_step(model, opt, images, batch, vocab.offsets, vocab.total_values, 0.5, 1.0, device,
                         bf16=step % 2 == 1, labels=torch.from_numpy(labels.astype(np.int64)))
        assert out.device.type == "cuda" and out.shape == (len(STEP_METRICS),)
        assert torch.isfinite(out).all(), (step, out)
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert all(b.device.type == "cuda" for b in model.buffers())
    assert not torch.equal(before, model.memory.memory)

    torch.cuda.reset_peak_memory_stats()
    result = train.run_step(str(trained_chain.split), str(trained_chain.attr), str(trained_chain.protos),
                            str(tmp_path / "model"), "amnet", TRAIN, progress=False)
    assert torch.cuda.max_memory_allocated() > 0  # the stage ran on the GPU
    history = load_payload(str(tmp_path / "model" / "model.pt"))["extra"]["history"]
    assert len(history) == TRAIN["epochs"] and all(math.isfinite(h["loss"]) for h in history), history
    assert result["loss"] == pytest.approx(history[-1]["loss"])


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="no CUDA device (torch.cuda.is_available() is false)")
def test_featurization_on_cuda_equals_the_cpu_features(trained_chain):
    """The gallery's fp32 features on ``cuda`` match the CPU's within fp16 storage and TF32 convolution
    rounding; bf16 autocast (the CUDA default, ``precision=auto``) stays close in direction."""
    frame = gallery(trained_chain)
    fp32 = FeaturizeConfig(precision="fp32")
    cpu = features(featurize_frame(load_model(str(trained_chain.model)), frame, 64, "cpu", fp32))
    cuda = features(featurize_frame(load_model(str(trained_chain.model)), frame, 64, "cuda", fp32))
    assert cuda.shape == cpu.shape == (len(frame), cpu.shape[1])
    np.testing.assert_allclose(cuda, cpu, rtol=1e-2, atol=1e-2 * float(np.abs(cpu).max()))
    auto = features(featurize_frame(load_model(str(trained_chain.model)), frame, 64, "cuda", FeaturizeConfig()))
    cos = (auto * cpu).sum(1) / (np.linalg.norm(auto, axis=1) * np.linalg.norm(cpu, axis=1))
    assert cos.min() > 0.99, cos.min()


# ------------------------------------------------------------------------------------- two GPUs


def nccl_probe(device_type: str = "cuda") -> dict:
    """One rank of :func:`distributed.launch`: join the group the training does, all-reduce its rank + 1."""
    device = distributed.setup(torch.device(device_type))
    try:
        mean = distributed.mean_over_ranks(torch.tensor([distributed.rank() + 1.0], device=device))
        return {"backend": torch.distributed.get_backend(), "device": str(device), "world": distributed.world_size(),
                "mean": float(mean.item())}
    finally:
        distributed.teardown()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices for two NCCL ranks "
                    f"(found {torch.cuda.device_count()})")
def test_two_ranks_train_over_nccl(trained_chain, tmp_path, monkeypatch):
    """Two ranks through the launcher the stages use: the group is NCCL with one GPU per rank, and the
    training stage with ``processes=2`` follows the one-process loss curve (SyncBatchNorm on GPUs)."""
    from amnet.steps import train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert distributed.launch(nccl_probe, 2) == {"backend": "nccl", "device": "cuda:0", "world": 2, "mean": 1.5}
    args = (str(trained_chain.split), str(trained_chain.attr), str(trained_chain.protos))
    train.run_step(*args, str(tmp_path / "one"), "amnet", TRAIN, progress=False)
    two = train.run_step(*args, str(tmp_path / "two"), "amnet", TRAIN, progress=False, processes=2)
    h1 = load_payload(str(tmp_path / "one" / "model.pt"))["extra"]["history"]
    h2 = load_payload(str(tmp_path / "two" / "model.pt"))["extra"]["history"]
    assert len(h1) == len(h2) == TRAIN["epochs"]
    for a, b in zip(h1, h2, strict=True):
        assert math.isfinite(b["loss"]) and b["loss"] == pytest.approx(a["loss"], rel=0.05), (a, b)
    assert two["loss"] == pytest.approx(h2[-1]["loss"])


# ------------------------------------------------------------------------------------- everywhere


def test_this_module_imports_without_kfp_or_mlflow():
    """What a bare GPU node has: this module collects (imports included) in an interpreter where kfp and
    mlflow cannot be imported, and the probe the two-rank test launches runs its gloo twin on the CPU."""
    root = Path(__file__).resolve().parents[2]
    code = ("import sys\n"
            "for name in ('kfp', 'mlflow', 'kubernetes', 'kubeflow'):\n"
            "    sys.modules[name] = None  # import fails, as where it is not installed\n"
            "import pytest\n"
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '--collect-only', "
            f"{str(Path(__file__).relative_to(root))!r}]))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 tests collected" in done.stdout, done.stdout
    assert distributed.launch(nccl_probe, 2, device_type="cpu") == {"backend": "gloo", "device": "cpu", "world": 2,
                                                                    "mean": 1.5}
