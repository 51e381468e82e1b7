"""A split's gallery written out as a dataset (the catalogue a refresh reads), and the day's changes to it:
images altered, added and removed."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from PIL import Image

from amnet import storage
from amnet.data import shards
from amnet.data.schema import Vocabulary, load_vocabulary, write_dataset


def _cells(labels, vocab: Vocabulary) -> dict[str, str]:
    return {a.name: (a.values[int(c)] if int(c) >= 0 else "") for a, c in zip(vocab.attributes, labels, strict=True)}


def write_catalogue(rows: pd.DataFrame, vocab: Vocabulary, out: Path) -> str:
    """``rows`` (image_id, image_bytes, labels) as a dataset folder: images/<id>.jpg + the contract files."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    manifest = []
    for image_id, data, labels in zip(rows["image_id"], rows["image_bytes"], rows["labels"], strict=True):
        (out / "images" / f"{image_id}.jpg").write_bytes(data)
        manifest.append({"image_id": str(image_id), "image": f"images/{image_id}.jpg", **_cells(labels, vocab)})
    write_dataset(str(out), pd.DataFrame(manifest), vocab)
    return str(out)


def altered(data: bytes) -> bytes:
    """The same picture with a dark square painted in a corner: other bytes, another content digest."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img.paste((10, 10, 10), (0, 0, max(2, img.width // 3), max(2, img.height // 3)))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def changed_catalogue(split: str, out: Path, n_changed: int = 3, n_added: int = 4, n_removed: int = 2,
                      add_from: str = "attr_train") -> tuple[str, dict[str, list[str]]]:
    """The split's gallery as a dataset with the first ``n_changed`` images altered, the last ``n_removed``
    dropped and ``n_added`` images of ``split/add_from`` added; returns (dataset, ids by change)."""
    vocab = load_vocabulary(split)
    gallery = shards.read_shards(storage.join(split, "gallery"), ["image_id", "image_bytes", "labels"])
    extra = shards.read_shards(storage.join(split, add_from), ["image_id", "image_bytes", "labels"]).head(n_added)
    removed = gallery["image_id"].tail(n_removed).tolist()
    kept = gallery.iloc[: len(gallery) - n_removed].copy()
    changed = kept["image_id"].head(n_changed).tolist()
    kept.loc[kept.index[:n_changed], "image_bytes"] = [altered(b) for b in kept["image_bytes"].head(n_changed)]
    rows = pd.concat([kept, extra], ignore_index=True)
    ids = {"changed": changed, "added": extra["image_id"].tolist(), "removed": removed,
           "unchanged": kept["image_id"].iloc[n_changed:].tolist()}
    return write_catalogue(rows, vocab, out), ids
