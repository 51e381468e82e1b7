"""Which space should search compare? A trained model's queries re-scored in each candidate space.

For one AMNet model and one split, every query of ``--queries`` (``val`` by default: choose on
validation, never on test) is ranked over the split's gallery in

* ``representation``: r' against r by Euclidean distance (§4 of the paper);
* ``representation, L2-normalised``: the same, both sides scaled to unit length;
* ``logits``: the attribute branches' logits on r' and r, concatenated;
* ``attributes``: their per-attribute softmax outputs, concatenated (``train.retrieval=attributes``);

and, with ``--attr-model``, two references that use the attribute CNN and no manipulation network:
the paper's attribute-based rule (predicted labels, the changed ones replaced; what the pipeline's
``attribute_based`` variant ranks by) and a *soft* version of it that compares the attribute CNN's
softmax outputs, the changed attributes set one-hot to the target (not a pipeline variant: a check
that AMNet's gain in the attribute space is not the space alone).

Scores are the pipeline's (exact target match, ``amnet.retrieval.metrics``), exhaustive search.

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
from amnet.retrieval.evaluate import changes_of


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


def nearest(q: np.ndarray, g: np.ndarray, k: int) -> np.ndarray:
    d = (q**2).sum(1)[:, None] - 2 * q @ g.T + (g**2).sum(1)[None]
    return np.argsort(d, 1, kind="stable")[:, :k]


def row(name: str, ranked: np.ndarray, gallery_labels: np.ndarray, target: np.ndarray, groups: np.ndarray) -> str:
    hits = metrics.exact_match(gallery_labels[ranked], target)
    rel = metrics.relevance(gallery_labels[ranked], target)
    cells = []
    for n in (1, 2):
        sel = groups == n
        cells += [hits[sel][:, 0].mean(), hits[sel].any(1).mean()]
    ndcg = metrics.ndcg_at_k(rel[groups == 1], 20).mean()
    return f"| {name} | {cells[0]:.3f} | {cells[1]:.3f} | {ndcg:.3f} | {cells[2]:.3f} | {cells[3]:.3f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", required=True, help="output of `amnet data split`")
    parser.add_argument("--model", required=True, help="a trained AMNet model (output of `amnet step train`)")
    parser.add_argument("--attr-model", default="", help="the attribute CNN, for the two attribute references")
    parser.add_argument("--queries", default="val", choices=QUERY_SETS, help="query set (default: val)")
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
    print("| space | top-1 | top-20 | NDCG@20 | 2-attr top-1 | 2-attr top-20 |\n|---|---|---|---|---|---|")
    spaces = {
        "representation (paper)": (q_r, g_r),
        "representation, L2-normalised": (unit(q_r), unit(g_r)),
        "logits": (np.concatenate(q_logits, 1), np.concatenate(g_logits, 1)),
        "attributes (softmax outputs)": (softmax(q_logits), softmax(g_logits)),
    }
    for name, (q, g) in spaces.items():
        print(row(f"amnet: {name}", nearest(q, g, 20), g_labels, target, groups))
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
        print(row("attribute CNN: attribute-based rule (pipeline)", np.argsort(rule, 1, kind="stable")[:, :20],
                  g_labels, target, groups))
        print(row("attribute CNN: soft reference (softmax outputs)", nearest(q_soft, softmax(a_g_logits), 20),
                  g_labels, target, groups))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
