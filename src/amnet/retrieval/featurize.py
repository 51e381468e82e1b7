"""Gallery featurization (§4 Clothing Search): gallery shards -> fp16 feature shards, streaming.

Each gallery shard becomes one feature shard with the same name, so memory stays bounded by one
shard and a rerun skips shards already written (resumable per shard). Gallery images are never
manipulated. For the attribute CNN the predicted attributes are stored too (the attribute-based
baseline filters on them).

Throughput (``benchmarks/featurize.py`` measures it against the model's pure forward): JPEG decoding
runs in a background thread pool one batch ahead of the model, so decode and forward overlap; on
CUDA the decoded batch is pinned for an asynchronous copy and the forward runs in bf16 autocast with
channels-last tensors (``FeaturizeConfig.precision``). ``decoder=torchvision`` decodes JPEGs on the
model's device instead (nvJPEG on a GPU), for when CPU decoding cannot keep up with the GPU.
"""

from __future__ import annotations

import io
import json
import posixpath
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from amnet import config as cfgmod
from amnet import storage
from amnet.config import FeaturizeConfig
from amnet.data import shards
from amnet.data.catalogue import image_digest
from amnet.data.tensors import decode_batch, decode_batch_torchvision, to_input
from amnet.errors import AmnetError
from amnet.model_store import LoadedModel, load_model, training_seed
from amnet.names import FEATURES_JSON
from amnet.runtime import InferenceMode, decode_workers, inference_setup, pick_device


def decoded_batches(blobs: Sequence[bytes], batch_size: int, size: int, workers: int, prefetch: bool,
                    pin: bool = False) -> Iterator[torch.Tensor]:
    """uint8 (B, 3, size, size) batches of ``blobs`` in order; with ``prefetch`` the next batch is
    decoded in a background thread while the caller works on the current one (PIL releases the GIL)."""
    chunks = [blobs[i : i + batch_size] for i in range(0, len(blobs), batch_size)]

    def decode(chunk: Sequence[bytes]) -> torch.Tensor:
        x = decode_batch(chunk, size, workers)
        return x.pin_memory() if pin else x

    if not prefetch or len(chunks) < 2:
        yield from (decode(c) for c in chunks)
        return
    with ThreadPoolExecutor(1, thread_name_prefix="amnet-decode") as pool:
        pending = pool.submit(decode, chunks[0])
        for chunk in chunks[1:]:
            current = pending.result()
            pending = pool.submit(decode, chunk)
            yield current
        yield pending.result()


@torch.no_grad()
def featurize_frame(loaded: LoadedModel, df: pd.DataFrame, batch_size: int, device,
                    cfg: FeaturizeConfig | None = None) -> pd.DataFrame:
    """Features (fp16 bytes), each image's content digest (``digest``: SHA-256 of its bytes, or the
    frame's own ``digest`` column) and, for the attribute CNN, predicted labels of one shard."""
    cfg = cfg or FeaturizeConfig()
    device = torch.device(device)
    mode = inference_setup(loaded.model, device, cfg.precision)
    feats, preds = [], []
    blobs = list(df["image_bytes"])
    size = loaded.model_config.image_size
    if cfg.decoder == "torchvision":  # decode where the model runs (nvJPEG on CUDA)
        chunks = [blobs[i : i + batch_size] for i in range(0, len(blobs), batch_size)]
        batches: Iterator[torch.Tensor] = (decode_batch_torchvision(c, size, device) for c in chunks)
    else:
        workers = decode_workers(cfg.decode_workers, beside_cpu_model=device.type == "cpu")
        batches = decoded_batches(blobs, batch_size, size, workers, cfg.prefetch, pin=device.type == "cuda")
    for images in batches:
        x = mode.input(to_input(images, device))
        with mode.autocast():
            if loaded.kind == "attribute_cnn":
                r, logits = loaded.model(x)
                preds.append(torch.stack([lg.argmax(1) for lg in logits], 1).cpu().numpy().astype(np.int16))
            else:
                r = loaded.gallery_vector(x)  # r, or the attribute outputs on r (AMNet's retrieval space)
        feats.append(r.float().cpu().numpy().astype(np.float16))  # (B, Q)
    matrix = np.concatenate(feats) if feats else np.zeros((0, loaded.retrieval_dim), np.float16)
    out = pd.DataFrame({"image_id": df["image_id"].to_numpy(), "labels": list(df["labels"]),
                        "feature": [row.tobytes() for row in matrix]})
    # each row's image content digest: a later catalogue refresh featurizes only what changed
    out["digest"] = list(df["digest"]) if "digest" in df.columns else [image_digest(b) for b in blobs]
    if preds:
        out["pred_labels"] = [p.tolist() for p in np.concatenate(preds)]
    return out


def run_featurize(split: str, model: str, out: str, cfg: FeaturizeConfig, progress: bool = True,
                  checkpoint_dir: str = "", group: int = 0, groups: int = 1) -> dict:
    """Featurize ``split/gallery`` shard by shard into ``out``; a shard already in ``out`` is skipped.

    With ``groups`` > 1 only block ``group`` of the gallery's shards
    (:func:`amnet.data.shards.group_shards`): one task of the pipeline's fan-out; the build-index stage
    merges the blocks. With ``checkpoint_dir`` (the pipeline's per-run-and-task prefix, outside the
    output artifact) each finished shard is also kept there, so a retried task that starts with a fresh
    ``out`` copies the shards done before instead of featurizing them again."""
    start = time.perf_counter()
    device = pick_device()
    loaded = load_model(model, device)
    sources = shards.group_shards(shards.list_shards(storage.join(split, "gallery")), group, groups)
    count, skipped = 0, 0
    for uri in tqdm(sources, desc=f"featurize ({loaded.variant})", disable=not progress):
        name = posixpath.basename(uri.replace("\\", "/"))
        dest = storage.join(out, name)
        saved = storage.join(checkpoint_dir, name) if checkpoint_dir else ""
        if not storage.exists(dest) and saved and storage.exists(saved):
            storage.write_bytes(dest, storage.read_bytes(saved))  # done by an earlier attempt
        if storage.exists(dest):
            skipped += 1
            count += len(shards.read_table(dest, ["image_id"]))
            continue
        frame = featurize_frame(loaded, shards.read_table(uri), cfg.batch_size, device, cfg)
        shards.write_table(dest, frame)
        if saved:
            storage.write_bytes(saved, storage.read_bytes(dest))
        count += len(frame)
    seconds = time.perf_counter() - start
    meta = {
        "dim": loaded.retrieval_dim, "count": count, "dtype": "float16", "kind": loaded.kind,
        "variant": loaded.variant, "shards": len(sources), "skipped_shards": skipped,
        "seconds": round(seconds, 2), "images_per_s": round(count / max(seconds, 1e-9), 1),
        "device": str(device), "precision": InferenceMode.choose(device, cfg.precision).precision,
        "config": cfgmod.to_dict(cfg), "group": group, "groups": groups,
        "seed": training_seed(loaded.extra),  # the model's training seed (registry picks by it)
        "digest": "sha256",  # column `digest`: each image's content hash (amnet.retrieval.refresh diffs by it)
    }
    storage.write_text(storage.join(out, FEATURES_JSON), json.dumps(meta, indent=2) + "\n")
    return {k: meta[k] for k in ("count", "dim", "seconds", "images_per_s", "skipped_shards")}


def iter_features(features: str) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """Per feature shard, in artifact order: (its columns but ``feature``, its (n, dim) fp16 matrix).

    One shard in memory at a time, and the vectors stay fp16 (no per-row bytes objects), so a
    consumer that keeps only what it needs per shard holds memory independent of the gallery."""
    dim = int(json.loads(storage.read_text(storage.join(features, FEATURES_JSON)))["dim"])
    for uri in shards.list_shards(features):
        try:
            table = pq.read_table(io.BytesIO(storage.read_bytes(uri)))
        except AmnetError:
            raise
        except Exception as exc:
            raise AmnetError(f"{uri}: not a readable Parquet shard ({type(exc).__name__}: {exc})") from exc
        yield table.drop_columns(["feature"]), fp16_matrix(table.column("feature"), dim)


def fp16_matrix(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """A ``feature`` column (fp16 bytes per row) -> (N, dim) float16 matrix, read from the Arrow buffer."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return np.zeros((0, dim), np.float16)
    if array.null_count == 0 and pa.types.is_binary(array.type):
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + len(array) + 1]
        if (np.diff(offsets) == 2 * dim).all():
            data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
            return data.view(np.float16).reshape(len(array), dim).copy()
    return decode_features(array.to_pylist(), dim).astype(np.float16)


def load_features(features: str) -> tuple[pd.DataFrame, np.ndarray]:
    """(frame with image_id / labels / pred_labels, (N, Q) float32 matrix) of a feature artifact.

    The whole gallery in memory: evaluation reads it block by block instead
    (:mod:`amnet.retrieval.gallery_store`)."""
    frames, matrices = [], []
    for table, matrix in iter_features(features):
        frames.append(table.to_pandas())
        matrices.append(matrix)
    df = pd.concat(frames, ignore_index=True)
    dim = int(json.loads(storage.read_text(storage.join(features, FEATURES_JSON)))["dim"])
    if len(df) == 0:
        return df, np.zeros((0, dim), np.float32)
    return df, np.concatenate(matrices).astype(np.float32)


def decode_features(column: Sequence[bytes], dim: int) -> np.ndarray:
    """A shard's ``feature`` column (fp16 bytes per row) -> (N, dim) float32 matrix."""
    if len(column) == 0:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(column), dtype=np.float16).reshape(len(column), dim).astype(np.float32)
