"""The triplet pool read through a local file : same pixels, bounded memory, cleaned up."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from amnet.data import shards
from amnet.data.synth import VOCAB, render_sample
from amnet.data.tensors import DiskPool, decode_batch


@pytest.fixture(scope="module")
def pool_shards(tmp_path_factory):
    """A triplet_pool-like prefix: 3 shards (50, 50, 20 rows) of rendered garments."""
    root = tmp_path_factory.mktemp("pool")
    blobs, labels = [], []
    for i in range(120):
        lab, data = render_sample(3, i, 40)
        blobs.append(data)
        labels.append([VOCAB.value_index(m, lab[a]) for m, a in enumerate(VOCAB.names)])
    for s, start in enumerate(range(0, 120, 50)):
        shards.write_table(str(root / shards.shard_name(s)), pd.DataFrame({
            "image_id": [f"p{i}" for i in range(start, min(start + 50, 120))],
            "image_bytes": blobs[start : start + 50], "labels": labels[start : start + 50]}))
    return str(root), blobs, np.asarray(labels, dtype=np.int16)


def test_rows_equal_the_in_memory_decode(pool_shards, tmp_path):
    prefix, blobs, labels = pool_shards
    want = decode_batch(blobs, 32, workers=1)
    with DiskPool.build(prefix, 32, workers=1, workdir=str(tmp_path), slice_rows=16) as pool:
        assert len(pool) == 120 and pool.nbytes == 120 * 3 * 32 * 32
        np.testing.assert_array_equal(pool.labels, labels)
        rows = torch.tensor([119, 0, 49, 50, 7, 7])
        assert torch.equal(pool[rows], want[rows])  # any order, repeats, across shard boundaries
        assert torch.equal(pool[np.arange(120)], want)
        assert torch.equal(pool.to_device("cpu", slice_rows=25), want)
        with pytest.raises(IndexError):
            pool[[120]]
        folder = os.path.dirname(pool.path)
    assert not os.path.exists(folder)  # close() removed the file and its folder


def test_train_step_reads_batches_from_the_pool(pool_shards, tmp_path):
    """train_step gathers pool[rows] from a DiskPool exactly as from the decoded tensor."""
    from amnet.config import ModelConfig
    from amnet.data.triplets import TripletSampler
    from amnet.model_store import build_model
    from amnet.train.amnet_train import train_step

    prefix, blobs, labels = pool_shards
    batch = next(TripletSampler(labels, seed=0).batches(0, 1, 4))
    results = []
    for source in ("tensor", "disk"):
        torch.manual_seed(0)
        model = build_model("amnet", "amnet", ModelConfig(image_size=32, width=8, feature_dim=32), VOCAB, None)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        with DiskPool.build(prefix, 32, workers=1, workdir=str(tmp_path)) as disk:
            images = decode_batch(blobs, 32, workers=1) if source == "tensor" else disk
            results.append(train_step(model, opt, images, batch, VOCAB.offsets, VOCAB.total_values, 0.2, 0.5,
                                      torch.device("cpu")))
    assert torch.equal(results[0], results[1])
