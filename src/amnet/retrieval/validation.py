"""The validation queries scored during training, after every epoch, in the model's own retrieval space.

What the evaluation stage measures at the end (attribute top-1 / top-20 and, when the split has item
groups, the exact target's Recall@1 / Recall@10), computed on the split's *validation* queries against its
gallery with exact search, so a training run shows in MLflow how search quality moves epoch by epoch and
``train.keep: best`` can keep the best epoch (chosen on validation, never on test queries). The training
stage hands :meth:`Validator.score` to the loop as a callback (the loop never imports retrieval code).

The gallery is read shard by shard; its decoded images are kept between epochs up to
``DECODED_CACHE_BYTES`` (a demo-size gallery: 25 MB), beyond that decoded again each time, so memory stays
bounded at catalogue scale. Encoding runs in ``eval`` mode under ``no_grad`` and draws no random
numbers, so validating does not change what training computes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from amnet import storage
from amnet.data import shards
from amnet.data.split import label_matrix, load_split_vocab, query_set
from amnet.data.tensors import decode_batch, to_input
from amnet.errors import AmnetError
from amnet.models.memory import make_indicator
from amnet.retrieval import metrics
from amnet.retrieval.evaluate import changes_of, target_rows

logger = logging.getLogger(__name__)

# what a validation pass reports, in the order the progress line shows them; the selection metric first
VAL_METRICS = ("val_recall1", "val_recall10", "val_top1", "val_top20")
QUERY_COLUMNS = ["image_id", "image_bytes", "changed", "target", "target_id"]
DECODED_CACHE_BYTES = 256 * 2**20  # decoded gallery + query images kept between epochs, at most


@dataclass
class Validator:
    """The split's validation queries, ready to score a model in training (:meth:`score`)."""

    split: str
    queries: pd.DataFrame
    offsets: list[int]
    total_values: int
    num_attributes: int
    batch_size: int = 128
    _queries_cache: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, repr=False)
    _gallery_cache: tuple[int, list[dict]] | None = field(default=None, repr=False)
    _decoded_bytes: int = 0

    @classmethod
    def of(cls, split: str, batch_size: int = 128) -> Validator | None:
        """The split's validation queries, or None (logged) when the split has none."""
        try:
            prefix = query_set(split, "val")
        except AmnetError as exc:
            logger.warning("no validation during training: %s", exc)
            return None
        vocab = load_split_vocab(split)
        frame = shards.read_shards(prefix)
        frame = frame[[c for c in QUERY_COLUMNS if c in frame.columns] + ["num_changes"]]
        return cls(split, frame.reset_index(drop=True), list(vocab.offsets), vocab.total_values,
                   vocab.num_attributes, batch_size)

    @torch.no_grad()
    def score(self, model: torch.nn.Module, device: torch.device, image_size: int) -> dict[str, float]:
        """``VAL_METRICS`` of ``model`` (an AMNet taking ``image_size`` px images; put back in training
        mode afterwards)."""
        was_training = model.training
        model.eval()
        try:
            gallery_x, gallery_ids, gallery_labels = self._gallery(model, device, image_size)
            q = self._queries(model, device, image_size)
        finally:
            model.train(was_training)
        k = min(20, len(gallery_x))
        ranked = _exact_top(q, gallery_x, k)
        targets = label_matrix(self.queries["target"], self.num_attributes)
        hits = metrics.exact_match(gallery_labels[ranked], targets)
        out = {"val_top1": float(hits[:, :1].any(1).mean()), "val_top20": float(hits[:, :k].any(1).mean())}
        rows = target_rows(self.split, "val", self.queries, gallery_ids)
        if rows is not None:
            saved = metrics.saved_rank(ranked, rows)
            beyond = np.where(saved == 0, rows, -1)
            ranks = metrics.merge_ranks(saved, metrics.l2_target_rank(q, gallery_x, beyond), k)
            with_target = ranks[rows >= 0]
            out["val_recall1"] = float((with_target == 1).mean())
            out["val_recall10"] = float(((with_target >= 1) & (with_target <= 10)).mean())
        return {name: out[name] for name in VAL_METRICS if name in out}

    def _gallery(self, model: torch.nn.Module, device: torch.device,
                 image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vecs, ids, labels = [], [], []
        for part, batches in enumerate(self._gallery_batches(image_size)):
            for images in batches["images"]:
                vecs.append(model.gallery_vector(to_input(images, device)).float().cpu().numpy())
            ids.append(batches["ids"])
            labels.append(batches["labels"])
            logger.debug("validation gallery part %d encoded", part)
        return np.concatenate(vecs), np.concatenate(ids), np.concatenate(labels)

    def _gallery_batches(self, image_size: int) -> Iterator[dict]:
        """Per gallery shard: ids, label matrix and decoded uint8 batches; kept whole while under the cache
        budget (then later epochs read no shard), else streamed from the shards each time."""
        if self._gallery_cache is not None and self._gallery_cache[0] == image_size:
            yield from self._gallery_cache[1]
            return
        parts, kept = [], True
        for _, frame in shards.iter_shards(storage.join(self.split, "gallery"), ["image_id", "labels", "image_bytes"]):
            blobs = list(frame["image_bytes"])
            batch = {"ids": frame["image_id"].to_numpy(), "labels": label_matrix(frame["labels"], self.num_attributes),
                     "images": [decode_batch(blobs[i : i + self.batch_size], image_size)
                                for i in range(0, len(blobs), self.batch_size)]}
            kept = kept and self._reserve(sum(t.numel() for t in batch["images"]))
            if kept:
                parts.append(batch)
            yield batch
        if kept:
            self._gallery_cache = (image_size, parts)

    def _reserve(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more decoded bytes fit the cache budget (then they count against it)."""
        if self._decoded_bytes + nbytes > DECODED_CACHE_BYTES:
            return False
        self._decoded_bytes += nbytes
        return True

    def _queries(self, model: torch.nn.Module, device: torch.device, image_size: int) -> np.ndarray:
        blobs, changes = list(self.queries["image_bytes"]), changes_of(self.queries)
        vecs = []
        for i in range(0, len(blobs), self.batch_size):
            x = to_input(self._query_images(i, blobs[i : i + self.batch_size], image_size), device)
            h = make_indicator(changes[i : i + self.batch_size], self.offsets, self.total_values).to(device)
            vecs.append(model.query_vector(x, h).float().cpu().numpy())
        return np.concatenate(vecs)


    def _query_images(self, start: int, blobs: list[bytes], image_size: int) -> torch.Tensor:
        """The decoded uint8 query batch starting at row ``start`` (cached while the budget has room)."""
        cached = self._queries_cache.get((start, image_size))
        if cached is not None:
            return cached
        images = decode_batch(blobs, image_size)
        if self._reserve(images.numel()):
            self._queries_cache[(start, image_size)] = images
        return images

def _exact_top(q: np.ndarray, gallery: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """(N, k) gallery rows by exact L2 distance, ties to the lower row (as the exact index orders them)."""
    g2 = (gallery.astype(np.float64) ** 2).sum(1)
    out = np.empty((len(q), k), dtype=np.int64)
    for s in range(0, len(q), chunk):
        qs = q[s : s + chunk].astype(np.float64)
        dist = g2[None, :] - 2 * qs @ gallery.T.astype(np.float64)  # |q|² is the same along a row
        out[s : s + len(qs)] = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return out

