"""Gallery featurization (§4 Clothing Search): gallery shards -> fp16 feature shards, streaming.

Each gallery shard becomes one feature shard with the same name, so memory stays bounded by one
shard and a rerun skips shards already written (resumable per shard). Gallery images are never
manipulated. For the attribute CNN the predicted attributes are stored too (the attribute-based
baseline filters on them).
"""

from __future__ import annotations

import json
import posixpath
import time

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from amnet import config as cfgmod
from amnet import storage
from amnet.config import FeaturizeConfig
from amnet.data import shards
from amnet.data.tensors import decode_batch, to_input
from amnet.model_store import LoadedModel, load_model
from amnet.train.loop_utils import pick_device

FEATURES_JSON = "features.json"


@torch.no_grad()
def featurize_frame(loaded: LoadedModel, df: pd.DataFrame, batch_size: int, device) -> pd.DataFrame:
    """Features (fp16 bytes) and, for the attribute CNN, predicted labels of one shard."""
    feats, preds = [], []
    blobs = list(df["image_bytes"])
    for i in range(0, len(blobs), batch_size):
        x = to_input(decode_batch(blobs[i : i + batch_size], loaded.model_config.image_size), device)
        if loaded.kind == "attribute_cnn":
            r, logits = loaded.model(x)
            preds.append(torch.stack([lg.argmax(1) for lg in logits], 1).cpu().numpy().astype(np.int16))
        else:
            r = loaded.model.represent(x)
        feats.append(r.float().cpu().numpy().astype(np.float16))  # (B, Q)
    matrix = np.concatenate(feats) if feats else np.zeros((0, loaded.model_config.feature_dim), np.float16)
    out = pd.DataFrame({"image_id": df["image_id"].to_numpy(), "labels": list(df["labels"]),
                        "feature": [row.tobytes() for row in matrix]})
    if preds:
        out["pred_labels"] = [p.tolist() for p in np.concatenate(preds)]
    return out


def run_featurize(split: str, model: str, out: str, cfg: FeaturizeConfig, progress: bool = True) -> dict:
    start = time.perf_counter()
    device = pick_device()
    loaded = load_model(model, device)
    sources = shards.list_shards(storage.join(split, "gallery"))
    count, skipped = 0, 0
    for uri in tqdm(sources, desc=f"featurize ({loaded.variant})", disable=not progress):
        dest = storage.join(out, posixpath.basename(uri.replace("\\", "/")))
        if storage.exists(dest):
            skipped += 1
            count += len(shards.read_table(dest, ["image_id"]))
            continue
        frame = featurize_frame(loaded, shards.read_table(uri), cfg.batch_size, device)
        shards.write_table(dest, frame)
        count += len(frame)
    seconds = time.perf_counter() - start
    meta = {
        "dim": loaded.model_config.feature_dim, "count": count, "dtype": "float16", "kind": loaded.kind,
        "variant": loaded.variant, "shards": len(sources), "skipped_shards": skipped,
        "seconds": round(seconds, 2), "images_per_s": round(count / max(seconds, 1e-9), 1),
        "device": str(device), "config": cfgmod.to_dict(cfg),
    }
    storage.write_text(storage.join(out, FEATURES_JSON), json.dumps(meta, indent=2) + "\n")
    return {k: meta[k] for k in ("count", "dim", "seconds", "images_per_s", "skipped_shards")}


def load_features(features: str) -> tuple[pd.DataFrame, np.ndarray]:
    """(frame with image_id / labels / pred_labels, (N, Q) float32 matrix) of a feature artifact."""
    meta = json.loads(storage.read_text(storage.join(features, FEATURES_JSON)))
    df = shards.read_shards(features)
    if len(df) == 0:
        return df, np.zeros((0, meta["dim"]), np.float32)
    matrix = np.frombuffer(b"".join(df["feature"]), dtype=np.float16).reshape(len(df), meta["dim"])
    return df.drop(columns=["feature"]), matrix.astype(np.float32)
