"""Which space should search compare? A trained model's queries re-scored in each candidate space.

For one AMNet model and one split, every query of ``--queries`` (``val`` by default: choose on
validation, never on test) is ranked over the split's gallery in

* ``representation``: r' against r by Euclidean distance (§4 of the paper);
* ``representation, L2-normalised``: the same, both sides scaled to unit length;
* ``logits``: the attribute branches' logits on r' and r, concatenated;
* ``attributes``: their per-attribute softmax outputs, concatenated (``train.retrieval=attributes``);
* ``combined w=…``: both, the attribute term weighted ``w`` and unit-length r' vs r ``1 - w``
  (``train.retrieval=combined``, ``train.retrieval_weight=w``), for a sweep of weights;
* ``attributes, label matches re-ranked by r'``: the attribute space's order, the images whose predicted
  labels equal the requested ones moved first in order of unit r' distance;
* ``image only``: the query's unmanipulated r (plain visual search);

and, with ``--attr-model``, two references that use the attribute CNN and no manipulation network:
the paper's attribute-based rule (predicted labels, the changed ones replaced; what the pipeline's
``attribute_based`` variant ranks by) and a *soft* version of it that compares the attribute CNN's
softmax outputs, the changed attributes set one-hot to the target (not a pipeline variant: a check
that AMNet's gain in the attribute space is not the space alone).

Scores are the pipeline's (attribute yardstick: exact label match; and, when the queries carry
``target_id``, Recall@1/10 of the exact target), exhaustive search.

    python quality/retrieval_space.py --split SPLIT --model MODEL [--attr-model ATTR] [--queries val]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from amnet.data import shards
from amnet.data.split import label_matrix, query_set
from amnet.data.tensors import decode_batch, to_input
from amnet.model_store import LoadedModel, load_model
from amnet.models.memory import make_indicator
from amnet.names import QUERY_SETS
from amnet.retrieval import metrics
from amnet.retrieval.evaluate import changes_of, target_rows


@torch.no_grad()
def encode(loaded: LoadedModel, frame, manipulate: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """(r or r' (N, Q), per-attribute logits [(N, C_m)]) of every image in ``frame``."""
    net, vocab, size = loaded.model.eval(), loaded.vocab, loaded.model_config.image_size
    changes = changes_of(frame) if manipulate else None
    blobs = list(frame["image_bytes"])
    reps, logits = [], []
    for i in range(0, len(blobs), 256):
        x = to_input(decode_batch(blobs[i : i + 256], size), torch.device("cpu"))
        if loaded.kind == "attribute_cnn":
            r, lg = net(x)
        else:
            r = net.represent(x)
            if manipulate:
                r = net.manipulate(r, make_indicator(changes[i : i + 256], vocab.offsets, vocab.total_values))
            lg = net.classify(r)
        reps.append(r.numpy())
        logits.append([t.numpy() for t in lg])
    return np.concatenate(reps), [np.concatenate([b[m] for b in logits]) for m in range(vocab.num_attributes)]


def softmax(blocks: list[np.ndarray]) -> np.ndarray:
    out = []
    for b in blocks:
        e = np.exp(b - b.max(1, keepdims=True))
        out.append(e / e.sum(1, keepdims=True))
    return np.concatenate(out, 1)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


DEPTH = 50  # ranked results kept per query (exact-target ranks beyond it count as misses at K <= 50)
WEIGHTS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)


def distances(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    return (q**2).sum(1)[:, None] - 2 * q @ g.T + (g**2).sum(1)[None]


def nearest(q: np.ndarray, g: np.ndarray, k: int = DEPTH) -> np.ndarray:
    return np.argsort(distances(q, g), 1, kind="stable")[:, :k]


def row(name: str, ranked: np.ndarray, gallery_labels: np.ndarray, target: np.ndarray, groups: np.ndarray,
        target_rows: np.ndarray) -> str:
    hits = metrics.exact_match(gallery_labels[ranked[:, :20]], target)
    rel = metrics.relevance(gallery_labels[ranked[:, :20]], target)
    cells = []
    for n in (1, 2):
        sel = groups == n
        cells += [hits[sel][:, 0].mean(), hits[sel].any(1).mean()]
    ndcg = metrics.ndcg_at_k(rel[groups == 1], 20).mean()
    exact = []
    for n in (1, 2):
        sel = (groups == n) & (target_rows >= 0)
        found = ranked[sel] == target_rows[sel, None]  # (n, DEPTH)
        exact += [found[:, :1].any(1).mean() if sel.any() else float("nan"),
                  found[:, :10].any(1).mean() if sel.any() else float("nan")]
    return (f"| {name} | {cells[0]:.3f} | {cells[1]:.3f} | {ndcg:.3f} | {cells[2]:.3f} | {cells[3]:.3f} | "
            + " | ".join(f"{v:.3f}" for v in exact) + " |")


def reranked(q_attr: np.ndarray, g_attr: np.ndarray, q_unit: np.ndarray, g_unit: np.ndarray,
             q_labels: np.ndarray, g_pred: np.ndarray) -> np.ndarray:
    """Attribute-space order, gallery images predicted to carry exactly the requested labels first by r'."""
    d_attr, d_rep = distances(q_attr, g_attr), distances(q_unit, g_unit)
    match = (g_pred[None] == q_labels[:, None]).all(2)  # (N, G)
    key = np.where(match, d_rep - 10.0, d_attr + 10.0)  # unit distances are <= 4: matches sort first
    return np.argsort(key, 1, kind="stable")[:, :DEPTH]


def misses(ranked: np.ndarray, rows: np.ndarray, gallery_labels: np.ndarray, gallery_pred: np.ndarray,
           gallery_items: np.ndarray, target: np.ndarray) -> dict[str, int]:
    """Exact-target queries by what the space put first: the target (hit), one of its item's other
    variants, or another item, with or without the target labels; and whether the model mispredicts
    the target image's own labels (then its gallery vector sits away from the requested labels)."""
    counts: dict[str, int] = {}
    for i in np.flatnonzero(rows >= 0):
        first, t = ranked[i, 0], rows[i]
        if first == t:
            kind = "hit"
        else:
            kind = ("a variant of the same item" if gallery_items[first] == gallery_items[t] >= 0 else "another item")
            kind += (" with" if (gallery_labels[first] == target[i]).all() else " without") + " the target labels"
            if not (gallery_pred[t] == target[i]).all():
                kind += ", target's labels mispredicted"
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", required=True, help="output of `amnet data split`")
    parser.add_argument("--model", required=True, help="a trained AMNet model (output of `amnet step train`)")
    parser.add_argument("--attr-model", default="", help="the attribute CNN, for the two attribute references")
    parser.add_argument("--queries", default="val", choices=QUERY_SETS, help="query set (default: val)")
    parser.add_argument("--weight", type=float, default=0.5, help="combined space's attribute weight for the "
                        "breakdown of exact-target queries by first result (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    gallery = shards.read_shards(args.split.rstrip("/") + "/gallery")
    queries = shards.read_shards(query_set(args.split, args.queries))
    loaded = load_model(args.model)
    m = loaded.vocab.num_attributes
    g_labels, target = label_matrix(gallery["labels"], m), label_matrix(queries["target"], m)
    groups = queries["num_changes"].to_numpy()
    g_r, g_logits = encode(loaded, gallery, manipulate=False)
    q_r, q_logits = encode(loaded, queries, manipulate=True)
    print(f"{args.model} on {len(queries)} {args.queries} queries, gallery {len(gallery)}")
    rows = (target_rows(args.split, args.queries, queries, gallery["image_id"].to_numpy())
            if "target_id" in queries.columns else None)
    rows = np.full(len(queries), -1) if rows is None else rows
    print(f"exact-target queries: {int((rows >= 0).sum())} of {len(queries)}")
    print("| space | top-1 | top-20 | NDCG@20 | 2-attr top-1 | 2-attr top-20 | exact R@1 | exact R@10 | "
          "2-attr exact R@1 | 2-attr exact R@10 |\n|---|---|---|---|---|---|---|---|---|---|")
    m_attr, qa, ga = len(q_logits), softmax(q_logits), softmax(g_logits)
    i_r, i_logits = encode(loaded, queries, manipulate=False)
    spaces = {
        "representation (paper)": (q_r, g_r),
        "representation, L2-normalised": (unit(q_r), unit(g_r)),
        "logits": (np.concatenate(q_logits, 1), np.concatenate(g_logits, 1)),
        "attributes (softmax outputs)": (qa, ga),
        **{f"combined w={w}": (np.hstack([qa * np.sqrt(w / m_attr), unit(q_r) * np.sqrt(1 - w)]),
                               np.hstack([ga * np.sqrt(w / m_attr), unit(g_r) * np.sqrt(1 - w)])) for w in WEIGHTS},
        "image only: r vs r, L2-normalised": (unit(i_r), unit(g_r)),
        "image only: attributes of r": (softmax(i_logits), ga),
    }
    for name, (q, g) in spaces.items():
        print(row(f"amnet: {name}", nearest(q, g), g_labels, target, groups, rows))
    g_pred = np.stack([b.argmax(1) for b in g_logits], 1)
    if (rows >= 0).any() and "item_group" in gallery.columns:
        q_w, g_w = spaces[f"combined w={args.weight}"] if f"combined w={args.weight}" in spaces else (
            np.hstack([qa * np.sqrt(args.weight / m_attr), unit(q_r) * np.sqrt(1 - args.weight)]),
            np.hstack([ga * np.sqrt(args.weight / m_attr), unit(g_r) * np.sqrt(1 - args.weight)]))
        print(f"\nexact-target queries by their first result (combined, w={args.weight}):")
        for kind, count in misses(nearest(q_w, g_w), rows, g_labels, g_pred, gallery["item_group"].to_numpy(),
                                  target).items():
            print(f"  {count:4d}  {kind}")
        print()
    print(row("amnet: attributes, label matches re-ranked by r'", reranked(qa, ga, unit(q_r), unit(g_r), target,
                                                                          g_pred), g_labels, target, groups, rows))
    if args.attr_model:
        attr = load_model(args.attr_model)
        a_g_r, a_g_logits = encode(attr, gallery, manipulate=False)
        a_q_r, a_q_logits = encode(attr, queries, manipulate=False)
        offsets, sizes = attr.vocab.offsets, attr.vocab.sizes
        g_pred = np.stack([b.argmax(1) for b in a_g_logits], 1)
        q_pred = np.stack([b.argmax(1) for b in a_q_logits], 1)
        q_soft = softmax(a_q_logits)
        for i, changed in enumerate(queries["changed"]):
            for a in changed:
                q_pred[i, a] = target[i, a]
                q_soft[i, offsets[a] : offsets[a] + sizes[a]] = 0.0
                q_soft[i, offsets[a] + target[i, a]] = 1.0
        d = (a_q_r**2).sum(1)[:, None] - 2 * a_q_r @ a_g_r.T + (a_g_r**2).sum(1)[None]
        rule = (g_pred[None] != q_pred[:, None]).sum(2) * (d.max() + 1.0) + d
        print(row("attribute CNN: attribute-based rule (pipeline)", np.argsort(rule, 1, kind="stable")[:, :DEPTH],
                  g_labels, target, groups, rows))
        print(row("attribute CNN: soft reference (softmax outputs)", nearest(q_soft, softmax(a_g_logits)),
                  g_labels, target, groups, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
