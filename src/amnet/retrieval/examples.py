"""Retrieval examples for the report (Fig. 7): a fixed set of queries and each one's top results.

Every variant's evaluation writes ``examples.parquet`` for the *same* queries (picked by sorted
``image_id``, so the choice does not depend on the variant or on row order), which lets the report
show one block per query with one row of thumbnails per variant. Images travel as small JPEG
thumbnails so the report can embed them without reading the split again.

``examples.parquet`` columns: ``query_id`` str, ``num_changes`` int, ``manipulation`` str
("color: pink → blue"), ``query_thumb`` binary, ``result_ids`` list<str>, ``result_thumbs``
list<binary>, ``result_hits`` list<bool> (exactly the target attributes), ``result_notes`` list<str>
(the target attributes a result gets wrong, '' for a hit).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

from amnet import storage
from amnet.data import shards
from amnet.data.schema import Vocabulary
from amnet.errors import AmnetError
from amnet.names import MISSING, SPLIT_JSON

ONE_ATTRIBUTE, TWO_ATTRIBUTES = 4, 2  # queries per manipulation count (6 in all)
TOP = 5  # results shown per variant
THUMB_PX = 64


def pick_queries(queries: pd.DataFrame, one: int = ONE_ATTRIBUTE, two: int = TWO_ATTRIBUTES) -> list[int]:
    """Row positions of the example queries: the first ``one`` one-attribute and ``two`` two-attribute
    queries by sorted ``image_id`` (fewer when a group is smaller)."""
    order = np.argsort(queries["image_id"].to_numpy().astype(str), kind="stable")
    changes = queries["num_changes"].to_numpy()[order]
    return [int(i) for n, count in ((1, one), (2, two)) for i in order[changes == n][:count]]


def thumbnail(data: bytes, px: int = THUMB_PX) -> bytes:
    """A JPEG thumbnail whose longer side is ``px`` (aspect ratio kept)."""
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (px, px))
    img = img.convert("RGB")
    img.thumbnail((px, px), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _value(vocab: Vocabulary, attr: int, code: int) -> str:
    return "?" if int(code) == MISSING else vocab.attributes[attr].values[int(code)]


def manipulation_words(labels, target, changed, vocab: Vocabulary) -> str:
    """'color: pink → blue, sleeve: long → short' from the query's labels, target and changed attributes."""
    return ", ".join(f"{vocab.names[int(m)]}: {_value(vocab, int(m), labels[int(m)])} → "
                     f"{_value(vocab, int(m), target[int(m)])}" for m in changed)


def mismatch_note(result_labels, target, vocab: Vocabulary) -> str:
    """The target attributes a result gets wrong, e.g. 'color: red (want blue)'; '' for an exact match."""
    wrong = [f"{vocab.names[m]}: {_value(vocab, m, have)} (want {_value(vocab, m, want)})"
             for m, (have, want) in enumerate(zip(result_labels, target, strict=True))
             if int(want) != MISSING and int(have) != int(want)]
    return "; ".join(wrong)


def gallery_images(split: str, rows: list[int], ids: list[str]) -> dict[str, bytes]:
    """``image_id -> image bytes`` of the given gallery rows, reading only the shards that hold them.

    Gallery features keep the gallery's shard order, so feature row ``r`` lives in gallery shard
    ``r // shard_size`` (``split.json``); ids not found there are looked for in every shard.
    """
    uris = shards.list_shards(storage.join(split, "gallery"))
    try:
        size = int(json.loads(storage.read_text(storage.join(split, SPLIT_JSON)))["config"]["shard_size"])
    except (KeyError, TypeError, ValueError):
        size = 0
    guesses = sorted({r // size for r in rows if size > 0 and r // size < len(uris)})
    found: dict[str, bytes] = {}
    for uris_to_read in ([uris[i] for i in guesses], uris):
        for uri in uris_to_read:
            missing = sorted(set(ids) - set(found))
            if not missing:
                return found
            table = pq.read_table(io.BytesIO(storage.read_bytes(uri)), columns=["image_id", "image_bytes"],
                                  filters=[("image_id", "in", missing)])
            found.update(zip(table.column("image_id").to_pylist(), table.column("image_bytes").to_pylist(),
                             strict=True))
    return found


def build_examples(split: str, queries: pd.DataFrame, picks: list[int], ranked: np.ndarray,
                   hits: np.ndarray, gallery_ids: np.ndarray, gallery_labels: np.ndarray,
                   vocab: Vocabulary, top: int = TOP) -> pd.DataFrame:
    """The ``examples.parquet`` frame for the picked queries (``ranked``/``hits`` are (N, K) over all queries)."""
    top = min(top, ranked.shape[1])
    rows = sorted({int(r) for q in picks for r in ranked[q, :top]})
    images = gallery_images(split, rows, [str(gallery_ids[r]) for r in rows])
    absent = sorted({str(gallery_ids[r]) for r in rows} - set(images))
    if absent:
        raise AmnetError(f"{split}/gallery: no image {absent[0]!r}; the gallery features come from another split")
    records = []
    for q in picks:
        labels, target, changed = (queries[c].iloc[q] for c in ("labels", "target", "changed"))
        results = ranked[q, :top]
        records.append({
            "query_id": str(queries["image_id"].iloc[q]),
            "num_changes": int(queries["num_changes"].iloc[q]),
            "manipulation": manipulation_words(labels, target, changed, vocab),
            "query_thumb": thumbnail(queries["image_bytes"].iloc[q]),
            "result_ids": [str(gallery_ids[r]) for r in results],
            "result_thumbs": [thumbnail(images[str(gallery_ids[r])]) for r in results],
            "result_hits": [bool(h) for h in hits[q, :top]],
            "result_notes": [mismatch_note(gallery_labels[r], target, vocab) for r in results],
        })
    return pd.DataFrame.from_records(records, columns=[
        "query_id", "num_changes", "manipulation", "query_thumb", "result_ids", "result_thumbs", "result_hits",
        "result_notes"])
