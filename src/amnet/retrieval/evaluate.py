"""Evaluation (§5.1): manipulate each query, search the gallery, top-k accuracy and NDCG@k.

AMNet variants rewrite the query's representation with Eq. 1 + Eq. 3 and rank the gallery by
Euclidean distance (the gallery is never manipulated). The image-only baseline (``image_only``, plain
visual search) ranks the same gallery features with the amnet model's own, unmanipulated vector of the
query image: the requested change is ignored. The attribute-based baseline predicts the
query's attributes with the attribute CNN, substitutes the desired ones, ranks gallery images whose
*predicted* attributes equal that target first (by representation distance) and the rest after
them by number of matched attributes, then distance.

Besides the headline metrics (§5.1–5.3, §5.5), the evaluation artifact carries what the report
needs for the rest of §5: top-k curves k = 1..50 (Fig. 5), the gallery-size study (§5.4, Fig. 6),
retrieval examples (Fig. 7, ``examples.parquet``) and timing with the hardware it ran on (§5.6).

Memory does not grow with the gallery: its vectors are copied to local disk and every search reads them
block by block (:mod:`amnet.retrieval.gallery_store`), with the results of searching the whole matrix.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from amnet import config as cfgmod
from amnet import storage
from amnet.config import EvaluateConfig
from amnet.data import shards
from amnet.data.split import label_matrix, query_set
from amnet.data.tensors import decode_batch, to_input
from amnet.errors import AmnetError, ConfigError
from amnet.model_store import LoadedModel, load_model, training_seed
from amnet.models.memory import make_indicator
from amnet.names import (
    ATTRIBUTE_BASED,
    EXACT_KS,
    EXAMPLES,
    FEATURES_JSON,
    IMAGE_ONLY,
    IMAGE_ONLY_MODEL,
    METRICS_JSON,
    PER_QUERY,
)
from amnet.retrieval import metrics
from amnet.retrieval.examples import build_examples, pick_queries
from amnet.retrieval.gallery_store import (
    AttributeRule,
    BlockExactIndex,
    Gallery,
    SubsetVectors,
    Vectors,
    as_vectors,
    l2_target_ranks,
    open_gallery,
    read_stored_pq,
)
from amnet.retrieval.index import Index, build_index, recall_at_k, resolve_kind
from amnet.runtime import inference_setup, pick_device

log = logging.getLogger(__name__)

PREFIX = {1: "", 2: "two_", 3: "three_"}
CURVE_K = 50  # top-k curves for k = 1..50 (Fig. 5)
GALLERY_FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # gallery-size study (§5.4, Fig. 6)
GALLERY_K = 20
GALLERY_SEED = 0


def changes_of(queries: pd.DataFrame) -> list[list[tuple[int, int]]]:
    """(attribute, desired value) pairs per query -> manipulation indicator h."""
    return [[(int(m), int(t[m])) for m in ch] for ch, t in zip(queries["changed"], queries["target"], strict=True)]


@torch.no_grad()
def query_vectors(loaded: LoadedModel, queries: pd.DataFrame, batch_size: int, device,
                  precision: str = "fp32", manipulate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Query representations (manipulated for AMNet variants) and, for the attribute CNN, predictions,
    computed at the gallery features' ``precision`` (so both sides of the search match).

    ``manipulate`` False (the ``image_only`` baseline): an AMNet model's gallery vector of the query image
    itself, exactly what featurization computes for a gallery image; the requested changes are ignored."""
    device = torch.device(device)
    mode = inference_setup(loaded.model, device, precision)
    blobs, changes = list(queries["image_bytes"]), changes_of(queries)
    vecs, preds = [], []
    vocab = loaded.vocab
    for i in range(0, len(blobs), batch_size):
        x = mode.input(to_input(decode_batch(blobs[i : i + batch_size], loaded.model_config.image_size), device))
        with mode.autocast():
            if loaded.kind == "attribute_cnn":
                r, logits = loaded.model(x)
                preds.append(torch.stack([lg.argmax(1) for lg in logits], 1).cpu().numpy())
            elif not manipulate:
                r = loaded.model.gallery_vector(x)  # r (or its attribute outputs): no change applied
            else:
                h = make_indicator(changes[i : i + batch_size], vocab.offsets, vocab.total_values).to(device)  # (B, C)
                r = loaded.model.query_vector(x, h)  # Eq. 1 + Eq. 3, in the model's retrieval space
        vecs.append(r.float().cpu().numpy())
    pred = np.concatenate(preds) if preds else np.zeros((0, vocab.num_attributes), np.int64)
    return np.concatenate(vecs).astype(np.float32), pred


def attribute_based_rank(q: np.ndarray, gallery: Vectors | np.ndarray, gallery_pred: np.ndarray,
                         pred_target: np.ndarray, k: int, chunk: int = 64, block_rows: int | None = None) -> np.ndarray:
    """(N, k) gallery rows: predicted-attribute matches first, then fewer matches; ties by distance, then row."""
    return AttributeRule(q, gallery, gallery_pred, pred_target, block_rows, chunk).rank(k)


def search_index(gallery_x: Vectors | np.ndarray, kind: str, block_rows: int | None = None) -> Index:
    """An index over ``gallery_x`` of ``kind`` (:func:`amnet.retrieval.index.build_index`'s kinds): exact search
    reads the vectors block by block; an approximate kind without a stored index is built in memory from all
    of them (the build-index stage stores one, so evaluation normally loads it: :func:`stored_index`)."""
    vectors = as_vectors(gallery_x)
    chosen = resolve_kind(kind, vectors.n, vectors.dim)  # as build_index resolves it
    if chosen == "exact" or (chosen == "pq" and vectors.n < 16):
        return BlockExactIndex(vectors, block_rows)
    log.warning("no stored %s index for these %d features: building one in memory from all of them", chosen,
                vectors.n)
    return build_index(vectors.rows(0, vectors.n), kind)


def rank_gallery(variant: str, q: np.ndarray, gallery_x: Vectors | np.ndarray, gallery_pred: np.ndarray | None,
                 pred_target: np.ndarray | None, k: int, index: str | Index = "exact",
                 block_rows: int | None = None) -> np.ndarray:
    """(N, k) gallery rows, best first, by the variant's own ranking (L2 through ``index``, a built
    index or a kind for :func:`search_index`, or the attribute-based rule)."""
    if variant == "attribute_based":
        return attribute_based_rank(q, gallery_x, gallery_pred, pred_target, k, block_rows=block_rows)
    built = search_index(gallery_x, index, block_rows) if isinstance(index, str) else index
    return built.search(q, k)[1]


def target_rows(split: str, query_set_name: str, queries: pd.DataFrame, gallery_ids: np.ndarray) -> np.ndarray | None:
    """(N,) gallery row of each query's exact target (the split's ``target_id``), -1 where it has none;
    None when the query shards carry no target ids (datasets without item ids: no exact-target metrics).

    Raises :class:`AmnetError` naming the split and the query when a target id is not in the gallery."""
    if "target_id" not in queries.columns or not queries["target_id"].notna().any():
        return None
    ids = np.asarray(gallery_ids).astype(str)
    order = np.argsort(ids, kind="stable")  # a sorted copy instead of a dict: memory of one array of ids
    ordered = ids[order]
    rows = np.full(len(queries), -1, dtype=np.int64)
    for i, (image, target) in enumerate(zip(queries["image_id"], queries["target_id"], strict=True)):
        if pd.isna(target):
            continue
        at = int(np.searchsorted(ordered, str(target), side="right")) - 1  # the last row of a repeated id
        if at < 0 or ordered[at] != str(target):
            raise AmnetError(f"{split}: {query_set_name} query {i} (image {image}) names target_id {target!r}, "
                             "which is not in the gallery; the split's target ids must be gallery image ids "
                             "(re-run `amnet data split`)")
        rows[i] = order[at]
    return rows


def target_ranks(variant: str, q: np.ndarray, gallery_x: Vectors | np.ndarray, gallery_pred: np.ndarray | None,
                 pred_target: np.ndarray | None, rows: np.ndarray, ranked: np.ndarray,
                 block_rows: int | None = None, rule: AttributeRule | None = None) -> np.ndarray:
    """(N,) 1-based rank of each query's exact target in the variant's full ranking of the gallery (-1: none).

    Within the saved ``ranked`` results it is the target's position there; beyond them it is computed over
    the whole gallery, block by block: from exact L2 distances for the vector variants (with an approximate
    index, the rank exact search would give) and from the attribute rule's own scores for ``attribute_based``
    (``rule``: the one that ranked these queries, whose distance scale is already known)."""
    saved = metrics.saved_rank(ranked, rows)
    beyond = np.where(saved == 0, rows, -1)  # only targets outside the saved results need the whole gallery
    if not (beyond >= 0).any():
        return saved
    if variant == "attribute_based":
        rule = rule or AttributeRule(q, gallery_x, gallery_pred, pred_target, block_rows)
        computed = rule.target_ranks(beyond)
    else:
        computed = l2_target_ranks(q, gallery_x, beyond, block_rows)
    return metrics.merge_ranks(saved, computed, ranked.shape[1])


def exact_summary(ranks: np.ndarray, groups: np.ndarray) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(recall{K} and median_rank per number of changes, PREFIX-ed; Recall@K curves K = 1..50 keyed by the
    number of changes) over the queries with a target; groups without any are left out."""
    summary: dict[str, float] = {}
    curves: dict[str, list[float]] = {}
    for n in sorted(set(groups.tolist())):
        sel = (groups == n) & (ranks >= 1)
        if not sel.any():
            continue
        prefix = PREFIX.get(n, f"n{n}_")
        summary.update({f"{prefix}recall{k}": v for k, v in metrics.recall_at_k(ranks[sel], EXACT_KS).items()})
        summary[f"{prefix}median_rank"] = metrics.median_rank(ranks[sel])
        curves[str(n)] = list(metrics.recall_at_k(ranks[sel], range(1, CURVE_K + 1)).values())
    return summary, curves


def index_record(variant: str, requested: str, index: Index | None, q: np.ndarray,
                 gallery_x: Vectors | np.ndarray, k: int = 20, block_rows: int | None = None) -> dict[str, Any]:
    """Which index the search used for this gallery size and, when approximate, its recall@k against
    exact search over these very queries (the pipeline records this; the paper's search is exact)."""
    if variant == "attribute_based" or index is None:
        return {"requested": requested, "kind": "attribute_rule", "recall_vs_exact": None}
    vectors = as_vectors(gallery_x)
    recall = None
    if index.kind != "exact":
        recall = recall_at_k(index, BlockExactIndex(vectors, block_rows), q, k)
    return {"requested": requested, "kind": index.kind, "recall_vs_exact": recall, "recall_k": min(k, vectors.n)}


def gallery_subsets(gallery_ids: np.ndarray, fractions: tuple[float, ...] = GALLERY_FRACTIONS,
                    seed: int = GALLERY_SEED) -> dict[str, np.ndarray]:
    """Nested seeded random subsets of the gallery: ``"0.25" -> sorted row positions``.

    The permutation is drawn over the *sorted image ids*, so every variant (whatever the row order of
    its feature artifact) searches the same images at each size.
    """
    n = len(gallery_ids)
    order = np.argsort(gallery_ids.astype(str), kind="stable")[np.random.default_rng(seed).permutation(n)]
    return {str(f): np.sort(order[: max(1, round(f * n))]) for f in fractions}


def has_target(gallery_labels: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N,) bool: some gallery image has exactly the query's target attributes (missing target values ignored)."""
    present = {tuple(row) for row in np.unique(gallery_labels, axis=0).tolist()} if len(gallery_labels) else set()
    out = np.empty(len(targets), dtype=bool)
    for i, t in enumerate(targets):
        known = t >= 0
        out[i] = (tuple(t.tolist()) in present if known.all()
                  else bool((gallery_labels[:, known] == t[known]).all(1).any()))
    return out


def gallery_study(variant: str, q: np.ndarray, gallery_x: Vectors | np.ndarray, gallery_labels: np.ndarray,
                  gallery_pred: np.ndarray | None, pred_target: np.ndarray | None, targets: np.ndarray,
                  subsets: dict[str, np.ndarray], k: int = GALLERY_K,
                  block_rows: int | None = None) -> dict[str, dict[str, float]]:
    """Top-k accuracy of the given queries when each gallery subset is searched on its own (§5.4, Fig. 6).

    Every query stays in the denominator at every size: a query whose exact target no longer occurs
    in a subset cannot hit and **counts as a miss** (``answerable`` is the fraction that still can),
    so shrinking the gallery helps by removing distractors and hurts by removing the only matches.
    ``present`` is the accuracy over the answerable queries only, which isolates the first effect.
    Each subset is searched block by block (:class:`~amnet.retrieval.gallery_store.SubsetVectors`).
    """
    vectors = as_vectors(gallery_x)
    accuracy, answerable, present, sizes = {}, {}, {}, {}
    if len(targets) == 0:  # no one-attribute queries in this split
        subsets = {}
    for key, rows in subsets.items():
        pred = gallery_pred[rows] if gallery_pred is not None else None
        ranked = rank_gallery(variant, q, SubsetVectors(vectors, rows), pred, pred_target, min(k, len(rows)),
                              block_rows=block_rows)
        labels = gallery_labels[rows]
        hit = metrics.exact_match(labels[ranked], targets).any(1)  # (N,)
        can = has_target(labels, targets)  # (N,)
        accuracy[key], answerable[key] = float(hit.mean()), float(can.mean())
        present[key] = float(hit[can].mean()) if can.any() else 0.0
        sizes[key] = int(len(rows))
    return {"accuracy": accuracy, "sizes": sizes, "answerable": answerable, "present": present}


def cpu_name() -> str:
    """The CPU model (``platform.processor()`` is often empty on Linux; /proc/cpuinfo names it)."""
    name = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            name = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), name)
    except OSError:
        pass
    return name or platform.machine()


def hardware(device: torch.device) -> dict[str, Any]:
    """Where this evaluation ran (§5.6 reports its server's CPU and GPUs)."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return {"processor": cpu_name(), "machine": platform.machine(), "cpu_count": os.cpu_count() or 0,
            "torch_device": str(device), "gpu": gpu}


def featurize_timing(features: str) -> dict[str, Any]:
    """Featurization time and rate of the gallery, copied from the feature artifact's features.json."""
    meta = json.loads(storage.read_text(storage.join(features, FEATURES_JSON)))
    return {key: meta.get(key) for key in ("count", "seconds", "images_per_s", "device", "precision")}


def stored_index(features: str, kind: str, n: int, vectors: Vectors | None = None,
                 block_rows: int | None = None) -> tuple[Index, dict] | None:
    """The index the build-index stage stored with ``features`` (and its ``index.json``) when it is the
    kind ``kind`` resolves to for ``n`` vectors and holds them all in feature-artifact order; else None
    (the caller builds one).

    With the gallery's ``vectors`` the stored index is searched without loading its copy of them: an exact
    one becomes a :class:`~amnet.retrieval.gallery_store.BlockExactIndex` over ``vectors`` (the same vectors in
    the same order), a PQ + re-rank one a :class:`~amnet.retrieval.gallery_store.StoredPQIndex`; other kinds
    (IVF, graph) are loaded whole, their copy of the vectors included."""
    from amnet.retrieval.feature_index import INDEX_FILE, INDEX_JSON, has_index, load_feature_index

    if not has_index(features):
        return None
    dim = vectors.dim if vectors is not None else json.loads(
        storage.read_text(storage.join(features, FEATURES_JSON)))["dim"]
    wanted = resolve_kind(kind, n, dim)  # as the build-index stage resolved it
    if vectors is not None:
        meta = json.loads(storage.read_text(storage.join(features, INDEX_JSON)))
        if meta.get("kind") != wanted and not (wanted == "pq" and n < 16):
            return None
        if meta.get("kind") == "exact":
            return (BlockExactIndex(vectors, block_rows), meta) if int(meta.get("count", -1)) == n else None
        if meta.get("kind") == "pq":
            pq = read_stored_pq(storage.join(features, INDEX_FILE), vectors, block_rows)
            if pq is not None:
                return (pq, meta) if pq.ntotal == n else None
    index, _, meta = load_feature_index(features)
    if index.ntotal != n or (meta.get("kind") != wanted and not (wanted == "pq" and n < 16)):
        return None
    return index, meta


def check_model(variant: str, loaded: LoadedModel) -> None:
    """Raise :class:`AmnetError` naming what to pass when ``loaded`` is not the model ``variant`` searches with."""
    if variant == ATTRIBUTE_BASED and loaded.kind != "attribute_cnn":
        raise AmnetError("the attribute_based variant needs the attribute CNN (output of `amnet step pretrain`)")
    if variant == IMAGE_ONLY and (loaded.kind != "amnet" or loaded.variant != IMAGE_ONLY_MODEL):
        given = "the attribute CNN" if loaded.kind == "attribute_cnn" else f"a {loaded.variant} model"
        raise AmnetError(f"the image_only variant searches with the {IMAGE_ONLY_MODEL} model's own image "
                         f"representation, but got {given}: pass the {IMAGE_ONLY_MODEL} variant's trained model "
                         f"(output of `amnet step train --variant {IMAGE_ONLY_MODEL}`) and the gallery features it "
                         "wrote (`amnet step featurize` with that model)")
    if variant != ATTRIBUTE_BASED and loaded.kind != "amnet":
        raise AmnetError(f"variant {variant!r} needs a trained AMNet model (output of `amnet step train`)")


def run_evaluate(split: str, model: str, features: str, out: str, cfg: EvaluateConfig, progress: bool = True,
                 block_rows: int | None = None) -> dict:
    """Evaluate one variant: ``metrics.json``, ``per_query.parquet`` and ``examples.parquet`` in ``out``.

    ``metrics.json`` = ``{"variant", "metrics" (flat scalars: top1 ... ndcg20, two_*, top20_<attribute>),
    "curves" ({num_changes: [top-1 .. top-50 accuracy]}), "recall_curves" (only when the queries carry
    ``target_id``: {num_changes: [Recall@1 .. Recall@50 of the exact target]}, with ``recall1`` ...
    ``recall50``, ``median_rank`` and their ``two_`` forms in "metrics"), "gallery_curve" ({fraction: top-20 of
    one-attribute queries, absent targets counted as misses}), "gallery_sizes", "gallery_answerable"
    (fraction of those queries whose target is in the subset), "gallery_curve_present" (top-20 over
    those only), "timing" (featurization, manipulation and search time, hardware), "config"}``.

    The gallery's vectors are copied to local disk and searched ``block_rows`` rows at a time
    (:mod:`amnet.retrieval.gallery_store`; default: 16 MB of float32 per block), so memory does not grow
    with the gallery; the results are those of searching the whole matrix at once.
    """
    start = time.perf_counter()
    device = pick_device()
    loaded = load_model(model, device)
    with open_gallery(features, loaded.vocab.num_attributes) as gallery:
        return _evaluate(split, loaded, device, features, gallery, out, cfg, start, block_rows)


def _evaluate(split: str, loaded: LoadedModel, device: torch.device, features: str, gallery: Gallery, out: str,
              cfg: EvaluateConfig, start: float, block_rows: int | None) -> dict:
    """:func:`run_evaluate` over an opened gallery."""
    vectors = gallery.vectors
    k = max(max(cfg.ks), cfg.ndcg_k)
    if k > len(gallery):
        raise ConfigError(f"k = {k} is larger than the gallery ({len(gallery)} images); lower ks/ndcg_k")
    depth = max(k, min(CURVE_K, len(gallery)))
    check_model(cfg.variant, loaded)
    queries = shards.read_shards(query_set(split, cfg.queries))  # test, or validation queries
    m = loaded.vocab.num_attributes
    targets = label_matrix(queries["target"], m)
    manipulate_start = time.perf_counter()
    feature_timing = featurize_timing(features)
    precision = str(feature_timing.get("precision") or "fp32")  # match the gallery's features
    q, pred = query_vectors(loaded, queries, cfg.batch_size, device, precision, manipulate=cfg.variant != IMAGE_ONLY)
    gallery_pred, pred_target = None, None
    if cfg.variant == "attribute_based":
        if gallery.pred_labels is None:
            raise AmnetError(f"{features}: no predicted labels; featurize the gallery with the attribute CNN")
        gallery_pred = gallery.pred_labels
        pred_target = pred.copy()
        for i, ch in enumerate(queries["changed"]):
            pred_target[i, list(ch)] = targets[i, list(ch)]
    search_start = time.perf_counter()
    index, stored = None, None
    if cfg.variant != "attribute_based":  # the attribute rule ranks without an index
        stored = stored_index(features, cfg.index, vectors.n, vectors, block_rows)
        index = stored[0] if stored else search_index(vectors, cfg.index, block_rows)
    rule = None  # the attribute rule, kept for the target ranks (its distance scale takes a pass over the gallery)
    if cfg.variant == "attribute_based":
        rule = AttributeRule(q, vectors, gallery_pred, pred_target, block_rows)
        ranked = rule.rank(depth)
    else:
        ranked = rank_gallery(cfg.variant, q, vectors, gallery_pred, pred_target, depth, index or cfg.index,
                              block_rows)
    search_s, manipulate_s = time.perf_counter() - search_start, search_start - manipulate_start
    index_info = index_record(cfg.variant, cfg.index, index, q, vectors, block_rows=block_rows)
    index_info["stored"] = bool(stored)
    if stored and index is not None:
        index_info["build"] = stored[1]
    gallery_labels = gallery.labels
    result_labels = gallery_labels[ranked]  # (N, K, M)
    hits = metrics.exact_match(result_labels, targets)  # (N, K)
    rel = metrics.relevance(result_labels, targets)

    summary: dict[str, float] = {}
    curves: dict[str, list[float]] = {}
    groups = queries["num_changes"].to_numpy()
    for n in sorted(set(groups.tolist())):
        sel = groups == n
        part = metrics.summarize(hits[sel], rel[sel], ks=cfg.ks, ndcg_ks=(cfg.ndcg_k,))
        summary.update({f"{PREFIX.get(n, f'n{n}_')}{key}": value for key, value in part.items()})
        curves[str(n)] = list(metrics.topk_accuracy(hits[sel], range(1, min(CURVE_K, depth) + 1)).values())
        if n == 1 and k >= 20:
            per_attr = metrics.per_attribute_topk(hits[sel], list(queries["changed"][sel]), loaded.vocab.names, 20)
            summary.update({f"top20_{name}": v for name, v in per_attr.items()})
    one = groups == 1
    gallery_ids = gallery.ids
    study = gallery_study(cfg.variant, q[one], vectors, gallery_labels, gallery_pred,
                          pred_target[one] if pred_target is not None else None, targets[one],
                          gallery_subsets(gallery_ids), block_rows=block_rows)
    first_hit = np.where(hits.any(1), hits.argmax(1) + 1, -1)
    per_query = pd.DataFrame({
        "image_id": queries["image_id"].to_numpy(), "num_changes": groups, "changed": list(queries["changed"]),
        "target": list(queries["target"]), "results": [gallery_ids[r].tolist() for r in ranked],
        "first_hit_rank": first_hit, "ndcg": metrics.ndcg_at_k(rel, cfg.ndcg_k),
    })
    exact_rows = target_rows(split, cfg.queries, queries, gallery_ids)
    recall_curves: dict[str, list[float]] = {}
    if exact_rows is not None:  # the exact-target yardstick (composed-image retrieval's Recall@K)
        ranks = target_ranks(cfg.variant, q, vectors, gallery_pred, pred_target, exact_rows, ranked, block_rows,
                             rule)
        exact, recall_curves = exact_summary(ranks, groups)
        summary.update(exact)
        per_query["target_id"] = pd.array([str(gallery_ids[r]) if r >= 0 else None for r in exact_rows], dtype="string")
        per_query["target_rank"] = pd.array([int(r) if r >= 1 else None for r in ranks], dtype="Int64")
    shards.write_table(storage.join(out, PER_QUERY), per_query)
    examples = build_examples(split, queries, pick_queries(queries), ranked, hits, gallery_ids, gallery_labels,
                              loaded.vocab)
    shards.write_table(storage.join(out, EXAMPLES), examples)
    n_queries = max(len(queries), 1)
    timing = {"queries": int(len(queries)), "gallery": int(len(gallery)),
              "search_ms_per_query": 1000 * search_s / n_queries,
              "manipulate_ms_per_query": 1000 * manipulate_s / n_queries,
              "query_ms_per_query": 1000 * (search_s + manipulate_s) / n_queries,
              "index": index_info, "featurize": feature_timing, "hardware": hardware(device),
              "seconds": round(time.perf_counter() - start, 2)}
    payload = {"variant": cfg.variant, "metrics": summary, "curves": curves,
               **({"recall_curves": recall_curves} if recall_curves else {}),
               "gallery_curve": study["accuracy"], "gallery_sizes": study["sizes"],
               "gallery_answerable": study["answerable"], "gallery_curve_present": study["present"],
               "gallery_k": GALLERY_K, "gallery_seed": GALLERY_SEED,
               "timing": timing, "config": cfgmod.to_dict(cfg),
               "seed": training_seed(loaded.extra)}  # the model's training seed (amnet.report)
    storage.write_text(storage.join(out, METRICS_JSON), json.dumps(payload, indent=2) + "\n")
    extra: dict[str, Any] = {"search_ms_per_query": timing["search_ms_per_query"], "index_kind": index_info["kind"]}
    if index_info["recall_vs_exact"] is not None:
        extra["index_recall_vs_exact"] = index_info["recall_vs_exact"]
    return {**summary, **extra}
