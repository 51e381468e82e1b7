"""Memory initialisation (§3.4): the mean representation of the training images per attribute value.

Row ``vocab.memory_row(m, v)`` of the C x Q matrix is the average attribute-CNN representation of
the ``attr_train`` images whose attribute m has value v. Values with no image keep a zero row
(reported), which AMNet can still learn through Eq. 2.
"""

from __future__ import annotations

import io
import time

import numpy as np
import torch
from tqdm import tqdm

from amnet import storage
from amnet.config import PrototypesConfig
from amnet.data import shards
from amnet.data.split import label_matrix, load_split_vocab
from amnet.data.tensors import decode_batch, to_input
from amnet.model_store import load_model
from amnet.names import MISSING, PROTOTYPES_FILE
from amnet.runtime import pick_device


@torch.no_grad()
def accumulate(loaded, split: str, batch_size: int, device, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of representations and counts per memory row, streamed shard by shard."""
    vocab = loaded.vocab
    sums = torch.zeros(vocab.total_values, loaded.model_config.feature_dim, dtype=torch.float64)
    counts = torch.zeros(vocab.total_values, dtype=torch.float64)
    offsets = torch.tensor(vocab.offsets)
    for _, df in tqdm(list(shards.iter_shards(storage.join(split, "attr_train"))), desc="prototypes",
                      disable=not progress):
        labels = torch.from_numpy(label_matrix(df["labels"], vocab.num_attributes).astype(np.int64))
        blobs = list(df["image_bytes"])
        for i in range(0, len(blobs), batch_size):
            x = to_input(decode_batch(blobs[i : i + batch_size], loaded.model_config.image_size), device)
            feats = loaded.represent(x).double().cpu()  # (B, Q)
            y = labels[i : i + batch_size]  # (B, M)
            known = y != MISSING
            rows = (y + offsets[None, :])[known]  # memory rows addressed by each known label
            owner = torch.arange(len(y))[:, None].expand_as(y)[known]
            sums.index_add_(0, rows, feats[owner])
            counts.index_add_(0, rows, torch.ones(len(rows), dtype=torch.float64))
    return sums, counts


def run_prototypes(split: str, attr_model: str, out: str, cfg: PrototypesConfig | None = None,
                   progress: bool = True) -> dict:
    cfg = cfg or PrototypesConfig()
    start = time.perf_counter()
    device = pick_device()
    loaded = load_model(attr_model, device)
    split_vocab = load_split_vocab(split)
    if split_vocab.to_json() != loaded.vocab.to_json():
        from amnet.errors import AmnetError

        raise AmnetError(f"{attr_model}: the model's attributes differ from those of the split {split}")
    sums, counts = accumulate(loaded, split, cfg.batch_size, device, progress)
    memory = (sums / counts.clamp(min=1)[:, None]).float()  # (C, Q)
    empty = [f"{a.name}={v}" for a in loaded.vocab.attributes for i, v in enumerate(a.values)
             if counts[loaded.vocab.memory_row(loaded.vocab.names.index(a.name), i)] == 0]
    buf = io.BytesIO()
    torch.save({"memory": memory, "counts": counts.float(), "vocab": loaded.vocab.to_json()}, buf)
    storage.write_bytes(storage.join(out, PROTOTYPES_FILE), buf.getvalue())
    return {
        "rows": int(memory.shape[0]),
        "dim": int(memory.shape[1]),
        "empty_rows": len(empty),
        "min_count": int(counts.min()),
        "seconds": round(time.perf_counter() - start, 2),
    }


def load_prototypes(uri: str) -> torch.Tensor:
    from amnet.model_store import load_payload

    path = uri if uri.endswith(".pt") else storage.join(uri, PROTOTYPES_FILE)
    return load_payload(path)["memory"]
