"""Evaluation (§5.1): manipulate each query, search the gallery, top-k accuracy and NDCG@k.

AMNet variants rewrite the query's representation with Eq. 1 + Eq. 3 and rank the gallery by
Euclidean distance (the gallery is never manipulated). The attribute-based baseline predicts the
query's attributes with the attribute CNN, substitutes the desired ones, ranks gallery images whose
*predicted* attributes equal that target first (by representation distance) and the rest after
them by number of matched attributes, then distance.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import torch

from amnet import config as cfgmod
from amnet import metrics, storage
from amnet.config import EvaluateConfig
from amnet.data import shards
from amnet.data.split import label_matrix
from amnet.data.tensors import decode_batch, to_input
from amnet.errors import AmnetError, ConfigError
from amnet.featurize import load_features
from amnet.model_store import LoadedModel, load_model
from amnet.models.memory import make_indicator
from amnet.search import build_index
from amnet.train.loop_utils import pick_device

PREFIX = {1: "", 2: "two_", 3: "three_"}


def changes_of(queries: pd.DataFrame) -> list[list[tuple[int, int]]]:
    """(attribute, desired value) pairs per query -> manipulation indicator h."""
    return [[(int(m), int(t[m])) for m in ch] for ch, t in zip(queries["changed"], queries["target"], strict=True)]


@torch.no_grad()
def query_vectors(loaded: LoadedModel, queries: pd.DataFrame, batch_size: int, device) -> tuple[np.ndarray, np.ndarray]:
    """Query representations (manipulated for AMNet variants) and, for the attribute CNN, predictions."""
    blobs, changes = list(queries["image_bytes"]), changes_of(queries)
    vecs, preds = [], []
    vocab = loaded.vocab
    for i in range(0, len(blobs), batch_size):
        x = to_input(decode_batch(blobs[i : i + batch_size], loaded.model_config.image_size), device)
        if loaded.kind == "attribute_cnn":
            r, logits = loaded.model(x)
            preds.append(torch.stack([lg.argmax(1) for lg in logits], 1).cpu().numpy())
        else:
            h = make_indicator(changes[i : i + batch_size], vocab.offsets, vocab.total_values).to(device)  # (B, C)
            r = loaded.model.manipulate(loaded.model.represent(x), h)  # Eq. 1 + Eq. 3: (B, Q)
        vecs.append(r.float().cpu().numpy())
    pred = np.concatenate(preds) if preds else np.zeros((0, vocab.num_attributes), np.int64)
    return np.concatenate(vecs).astype(np.float32), pred


def attribute_based_rank(q: np.ndarray, gallery: np.ndarray, gallery_pred: np.ndarray, pred_target: np.ndarray,
                         k: int, chunk: int = 64) -> np.ndarray:
    """(N, k) gallery rows: predicted-attribute matches first, then fewer matches; ties by distance."""
    g2 = (gallery**2).sum(1)
    out = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), chunk):
        qs = q[s : s + chunk]
        dist = np.sqrt(np.maximum((qs**2).sum(1)[:, None] - 2 * qs @ gallery.T + g2[None, :], 0))  # (b, G)
        mismatched = (gallery_pred[None, :, :] != pred_target[s : s + chunk, None, :]).sum(2)  # (b, G)
        score = mismatched * (dist.max() + 1.0) + dist
        top = np.argpartition(score, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(score, top, 1).argsort(1)
        out[s : s + chunk] = np.take_along_axis(top, order, 1)
    return out


def run_evaluate(split: str, model: str, features: str, out: str, cfg: EvaluateConfig, progress: bool = True) -> dict:
    start = time.perf_counter()
    device = pick_device()
    loaded = load_model(model, device)
    gallery, gallery_x = load_features(features)
    k = max(max(cfg.ks), cfg.ndcg_k)
    if k > len(gallery):
        raise ConfigError(f"k = {k} is larger than the gallery ({len(gallery)} images); lower ks/ndcg_k")
    if cfg.variant == "attribute_based" and loaded.kind != "attribute_cnn":
        raise AmnetError("the attribute_based variant needs the attribute CNN (output of `amnet step pretrain`)")
    if cfg.variant != "attribute_based" and loaded.kind != "amnet":
        raise AmnetError(f"variant {cfg.variant!r} needs a trained AMNet model (output of `amnet step train`)")
    queries = shards.read_shards(storage.join(split, "queries"))
    m = loaded.vocab.num_attributes
    targets = label_matrix(queries["target"], m)
    q, pred = query_vectors(loaded, queries, cfg.batch_size, device)
    search_start = time.perf_counter()
    if cfg.variant == "attribute_based":
        if "pred_labels" not in gallery.columns:
            raise AmnetError(f"{features}: no predicted labels; featurize the gallery with the attribute CNN")
        pred_target = pred.copy()
        for i, ch in enumerate(queries["changed"]):
            pred_target[i, list(ch)] = targets[i, list(ch)]
        ranked = attribute_based_rank(q, gallery_x, label_matrix(gallery["pred_labels"], m), pred_target, k)
    else:
        _, ranked = build_index(gallery_x, "exact").search(q, k)
    search_s = time.perf_counter() - search_start
    gallery_labels = label_matrix(gallery["labels"], m)
    result_labels = gallery_labels[ranked]  # (N, K, M)
    hits = metrics.exact_match(result_labels, targets)  # (N, K)
    rel = metrics.relevance(result_labels, targets)

    summary: dict[str, float] = {}
    groups = queries["num_changes"].to_numpy()
    for n in sorted(set(groups.tolist())):
        sel = groups == n
        part = metrics.summarize(hits[sel], rel[sel], ks=cfg.ks, ndcg_ks=(cfg.ndcg_k,))
        summary.update({f"{PREFIX.get(n, f'n{n}_')}{key}": value for key, value in part.items()})
        if n == 1 and k >= 20:
            per_attr = metrics.per_attribute_topk(hits[sel], list(queries["changed"][sel]), loaded.vocab.names, 20)
            summary.update({f"top20_{name}": v for name, v in per_attr.items()})
    first_hit = np.where(hits.any(1), hits.argmax(1) + 1, -1)
    gallery_ids = gallery["image_id"].to_numpy()
    per_query = pd.DataFrame({
        "image_id": queries["image_id"].to_numpy(), "num_changes": groups, "changed": list(queries["changed"]),
        "target": list(queries["target"]), "results": [gallery_ids[r].tolist() for r in ranked],
        "first_hit_rank": first_hit, "ndcg": metrics.ndcg_at_k(rel, cfg.ndcg_k),
    })
    shards.write_table(storage.join(out, "per_query.parquet"), per_query)
    timing = {"queries": int(len(queries)), "gallery": int(len(gallery)),
              "search_ms_per_query": 1000 * search_s / max(len(queries), 1),
              "seconds": round(time.perf_counter() - start, 2)}
    payload = {"variant": cfg.variant, "metrics": summary, "timing": timing, "config": cfgmod.to_dict(cfg)}
    storage.write_text(storage.join(out, "metrics.json"), json.dumps(payload, indent=2) + "\n")
    return {**summary, "search_ms_per_query": timing["search_ms_per_query"]}
