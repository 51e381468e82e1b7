"""Retrieval examples for the report (Fig. 7): a fixed set of queries and each one's top results.

Every variant's evaluation writes ``examples.parquet`` for the *same* queries (picked by sorted
``image_id``, so the choice does not depend on the variant or on row order), which lets the report
show one block per query with one row of thumbnails per variant. Images travel as small JPEG
thumbnails so the report can embed them without reading the split again.

``examples.parquet`` columns: ``query_id`` str, ``num_changes`` int, ``manipulation`` str
("color: pink → blue"), ``query_thumb`` binary, ``result_ids`` list<str>, ``result_thumbs``
list<binary>, ``result_hits`` list<bool> (exactly the target attributes), ``result_notes`` list<str>
(the target attributes a result gets wrong, '' for a hit), ``target_id`` str or null (the gallery id of
the query's exact target: the same item with the change applied; null for label-vector queries),
``target_thumb`` binary or null (that image's thumbnail) and ``result_exact`` list<bool> (result i is
the exact target). Files written before the last three existed lack them; the report still reads them.

Splits built from variant groups give queries a ``target_id``: the examples then prefer such queries, so
Fig. 7 shows the exact-target yardstick (is *this* item, changed, among the top results?).
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


def has_target(queries: pd.DataFrame) -> np.ndarray:
    """(N,) bool: the query names an exact target (a non-null ``target_id``; all False without the column)."""
    if "target_id" not in queries.columns:
        return np.zeros(len(queries), dtype=bool)
    return ~pd.isna(queries["target_id"]).to_numpy(dtype=bool)


def pick_queries(queries: pd.DataFrame, one: int = ONE_ATTRIBUTE, two: int = TWO_ATTRIBUTES) -> list[int]:
    """Row positions of the example queries: the first ``one`` one-attribute and ``two`` two-attribute
    queries by sorted ``image_id`` (fewer when a group is smaller).

    Queries with an exact target (a non-null ``target_id``) come first: when a group has enough of them
    only they are picked; otherwise the rest of the group fills up, again by sorted ``image_id``. Without
    target ids this is the plain first-by-``image_id`` choice."""
    ids = queries["image_id"].to_numpy().astype(str)
    order = np.lexsort((ids, ~has_target(queries)))  # target queries first, then by image_id (stable on ties)
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


def target_of(queries: pd.DataFrame, q: int) -> str | None:
    """Query ``q``'s exact-target gallery id, None when it has none."""
    if "target_id" not in queries.columns:
        return None
    value = queries["target_id"].iloc[q]
    return None if pd.isna(value) else str(value)


def build_examples(split: str, queries: pd.DataFrame, picks: list[int], ranked: np.ndarray,
                   hits: np.ndarray, gallery_ids: np.ndarray, gallery_labels: np.ndarray,
                   vocab: Vocabulary, top: int = TOP) -> pd.DataFrame:
    """The ``examples.parquet`` frame for the picked queries (``ranked``/``hits`` are (N, K) over all queries).

    A query's exact target (``target_id``) is read from the gallery for its thumbnail, whether or not the
    variant retrieved it; ``result_exact`` marks the results that are it."""
    top = min(top, ranked.shape[1])
    targets = {q: target_of(queries, q) for q in picks}
    where = {str(g): i for i, g in enumerate(gallery_ids.tolist())}
    rows = sorted({int(r) for q in picks for r in ranked[q, :top]}
                  | {where[t] for t in targets.values() if t is not None and t in where})
    wanted = sorted({str(gallery_ids[r]) for r in rows} | {t for t in targets.values() if t is not None})
    images = gallery_images(split, rows, wanted)
    absent = [i for i in wanted if i not in images]
    if absent:
        raise AmnetError(f"{split}/gallery: no image {absent[0]!r}; the gallery features come from another split")
    records = []
    for q in picks:
        labels, target, changed = (queries[c].iloc[q] for c in ("labels", "target", "changed"))
        results = ranked[q, :top]
        result_ids = [str(gallery_ids[r]) for r in results]
        target_id = targets[q]
        records.append({
            "query_id": str(queries["image_id"].iloc[q]),
            "num_changes": int(queries["num_changes"].iloc[q]),
            "manipulation": manipulation_words(labels, target, changed, vocab),
            "query_thumb": thumbnail(queries["image_bytes"].iloc[q]),
            "result_ids": result_ids,
            "result_thumbs": [thumbnail(images[i]) for i in result_ids],
            "result_hits": [bool(h) for h in hits[q, :top]],
            "result_notes": [mismatch_note(gallery_labels[r], target, vocab) for r in results],
            "target_id": target_id,
            "target_thumb": thumbnail(images[target_id]) if target_id is not None else None,
            "result_exact": [target_id is not None and i == target_id for i in result_ids],
        })
    frame = pd.DataFrame.from_records(records, columns=[
        "query_id", "num_changes", "manipulation", "query_thumb", "result_ids", "result_thumbs", "result_hits",
        "result_notes", "target_id", "target_thumb", "result_exact"])
    frame["target_id"] = frame["target_id"].astype("string")  # a string column even when every value is null
    return frame
