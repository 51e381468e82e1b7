"""The throughput paths of featurization and training change speed, not results.

Decode prefetching and the decode thread count give bit-identical features; bf16 autocast with
channels-last (the CUDA default, forced here on the CPU) stays close to fp32; a bf16 training step
runs and returns finite losses; the thread helpers respect ``OMP_NUM_THREADS``. Rates themselves
are measured by ``benchmarks/``, never asserted here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from amnet.config import ConfigError, FeaturizeConfig, ModelConfig, TrainConfig, from_dict
from amnet.data.schema import Attribute, Vocabulary
from amnet.data.synth import render_sample
from amnet.data.tensors import decode_batch
from amnet.data.triplets import TripletSampler
from amnet.model_store import LoadedModel, build_model
from amnet.retrieval.featurize import decoded_batches, featurize_frame
from amnet.runtime import available_cpus, decode_workers, match_torch_threads, use_bf16
from amnet.train.amnet_train import STEP_METRICS, train_step
from amnet.train.loop_utils import sgd, split_decay

VOCAB = Vocabulary((Attribute("colour", ("red", "blue", "green")), Attribute("collar", ("round", "v"))))
CFG = ModelConfig(backbone="small", image_size=32, width=8, feature_dim=32)


@pytest.fixture(scope="module")
def blobs() -> list[bytes]:
    return [render_sample(0, i, 48)[1] for i in range(70)]


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    torch.manual_seed(0)
    model = build_model("amnet", "amnet", CFG, VOCAB, torch.randn(VOCAB.total_values, CFG.feature_dim)).eval()
    return LoadedModel(kind="amnet", variant="amnet", model=model, model_config=CFG, vocab=VOCAB, extra={})


def frame(blobs: list[bytes]) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"i{i}" for i in range(len(blobs))], "labels": [[0, 0]] * len(blobs),
                         "image_bytes": blobs})


def features(out: pd.DataFrame) -> np.ndarray:
    return np.stack([np.frombuffer(b, np.float16) for b in out["feature"]]).astype(np.float32)


def test_prefetched_batches_equal_plain_decoding_in_order(blobs):
    plain = list(decoded_batches(blobs, 16, 32, workers=1, prefetch=False))
    ahead = list(decoded_batches(blobs, 16, 32, workers=3, prefetch=True))
    assert [len(b) for b in plain] == [16, 16, 16, 16, 6]
    assert all(torch.equal(a, b) for a, b in zip(plain, ahead, strict=True))
    assert torch.equal(torch.cat(ahead), decode_batch(blobs, 32))
    assert list(decoded_batches([], 16, 32, 1, True)) == []


def test_featurize_options_do_not_change_fp32_features(blobs, loaded):
    base = featurize_frame(loaded, frame(blobs), 16, "cpu", FeaturizeConfig(prefetch=False, decode_workers=1))
    fast = featurize_frame(loaded, frame(blobs), 16, "cpu", FeaturizeConfig(prefetch=True, decode_workers=4))
    np.testing.assert_array_equal(features(base), features(fast))
    assert list(base["image_id"]) == list(fast["image_id"])


def test_bf16_channels_last_features_stay_close_to_fp32(blobs, loaded):
    fp32 = features(featurize_frame(loaded, frame(blobs), 16, "cpu", FeaturizeConfig(precision="fp32")))
    bf16 = features(featurize_frame(loaded, frame(blobs), 16, "cpu", FeaturizeConfig(precision="bf16")))
    assert not np.array_equal(fp32, bf16)  # it really ran in bf16
    cos = (fp32 * bf16).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
    assert cos.min() > 0.99, cos.min()


def test_train_step_returns_finite_detached_metrics_in_fp32_and_bf16(blobs, loaded):
    images = decode_batch(blobs, 32)
    labels = np.array([[i % 3, (i // 3) % 2] for i in range(len(blobs))], dtype=np.int16)
    batch = next(TripletSampler(labels, seed=0).batches(0, 1, 8))
    for bf16 in (False, True):
        torch.manual_seed(0)
        model = build_model("amnet", "amnet", CFG, VOCAB, torch.randn(VOCAB.total_values, CFG.feature_dim))
        opt = sgd(*split_decay(model), lr=0.01, momentum=0.9, weight_decay=0.0)
        before = model.memory.memory.detach().clone()
        out = train_step(model, opt, images, batch, VOCAB.offsets, VOCAB.total_values, 0.2, 0.5,
                         torch.device("cpu"), bf16=bf16)
        assert out.shape == (len(STEP_METRICS),) and not out.requires_grad and torch.isfinite(out).all()
        assert 0.0 <= out[3] <= 1.0
        assert not torch.equal(before, model.memory.memory)  # the step updated the memory (Eq. 2)


def test_precision_and_thread_settings(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (use_bf16("auto", cpu), use_bf16("auto", cuda), use_bf16("bf16", cpu), use_bf16("fp32", cuda)) == (
        False, True, True, False)
    with pytest.raises(ConfigError, match="precision"):
        from_dict(TrainConfig, {"precision": "fp8"})
    with pytest.raises(ConfigError, match="decode_workers"):
        from_dict(FeaturizeConfig, {"decode_workers": -1})
    assert 1 <= available_cpus() <= (torch.multiprocessing.cpu_count() or 1)
    assert decode_workers(3) == 3 and 1 <= decode_workers(0) <= 8
    assert decode_workers(0, beside_cpu_model=True) == max(1, available_cpus() // 4)
    threads = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        assert match_torch_threads() == 1  # an explicit OMP_NUM_THREADS wins
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert match_torch_threads() == available_cpus()
    finally:
        torch.set_num_threads(threads)


def test_torchvision_decoder_is_close_to_pil_and_handles_other_formats(blobs, loaded):
    import io

    from PIL import Image

    from amnet.data.tensors import decode_batch_torchvision

    png = io.BytesIO()
    Image.open(io.BytesIO(blobs[0])).save(png, "PNG")
    mixed = [*blobs[:9], png.getvalue()]
    pil = decode_batch(mixed, 32).float()
    tv = decode_batch_torchvision(mixed, 32, "cpu").float()
    assert tv.shape == pil.shape and tv.dtype == torch.float32
    assert (tv - pil).abs().mean() < 6.0  # grey levels of 255: same picture, another resampler
    assert torch.equal(tv[-1], pil[-1])  # the PNG goes through PIL either way
    base = features(featurize_frame(loaded, frame(blobs), 16, "cpu", FeaturizeConfig()))
    other = features(featurize_frame(loaded, frame(blobs), 16, "cpu", FeaturizeConfig(decoder="torchvision")))
    cos = (base * other).sum(1) / (np.linalg.norm(base, axis=1) * np.linalg.norm(other, axis=1))
    assert cos.min() > 0.98, cos.min()


def test_cgroup_quota_v2_and_v1(tmp_path):
    from amnet.runtime import cgroup_cpu_quota

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1) == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(v1) is None
    assert cgroup_cpu_quota(tmp_path / "none") is None


def test_queries_follow_the_gallery_precision(blobs, loaded):
    """evaluate's query vectors at the features' precision: bf16 queries against a bf16 gallery."""
    from amnet.retrieval.evaluate import query_vectors

    queries = pd.DataFrame({"image_bytes": blobs[:8], "changed": [[0]] * 8, "target": [[1, 0]] * 8})
    fp32, _ = query_vectors(loaded, queries, 4, "cpu", "fp32")
    bf16, _ = query_vectors(loaded, queries, 4, "cpu", "bf16")
    assert fp32.dtype == bf16.dtype == np.float32 and not np.array_equal(fp32, bf16)
    cos = (fp32 * bf16).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
    assert cos.min() > 0.99
