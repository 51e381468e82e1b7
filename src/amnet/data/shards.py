"""Parquet shards: images travel between stages as encoded bytes with integer labels.

Shard columns: ``image_id`` (string), ``image_bytes`` (binary, the encoded JPEG/PNG), ``labels``
(list<int16>, one code per attribute, -1 = missing). Query shards add ``target`` (list<int16>,
the desired attribute vector), ``changed`` (list<int8>, indices of the manipulated attributes) and
``num_changes``. Few large objects instead of many small ones, which S3 prefers.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from amnet import storage
from amnet.errors import AmnetError


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def write_table(uri: str, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue())


def read_table(uri: str, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        return pq.read_table(io.BytesIO(storage.read_bytes(uri)), columns=columns).to_pandas()
    except AmnetError:
        raise
    except Exception as exc:
        raise AmnetError(f"{uri}: not a readable Parquet shard ({type(exc).__name__}: {exc})") from exc


def write_shards(df: pd.DataFrame, prefix: str, shard_size: int) -> list[str]:
    """Write ``df`` as ``prefix/part-NNNNN.parquet`` files of at most ``shard_size`` rows.

    Shards left by an earlier, larger run under the same prefix are removed afterwards, so readers
    never mix two runs' rows.
    """
    if shard_size < 1:
        raise AmnetError(f"shard size must be >= 1 (got {shard_size})")
    stale = set(storage.list_files(prefix, ".parquet"))
    uris = []
    for i, start in enumerate(range(0, max(len(df), 1), shard_size)):
        uri = storage.join(prefix, shard_name(i))
        write_table(uri, df.iloc[start : start + shard_size])
        uris.append(uri)
    for uri in sorted(stale - set(uris)):
        if uri.rsplit("/", 1)[-1].startswith("part-"):
            storage.delete(uri)
    return uris


def list_shards(prefix: str) -> list[str]:
    uris = [u for u in storage.list_files(prefix, ".parquet") if u.rsplit("/", 1)[-1].startswith("part-")]
    if not uris:
        raise AmnetError(f"{prefix}: no part-*.parquet shards found; run the stage that writes them first")
    return uris


def iter_shards(prefix: str, columns: list[str] | None = None) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield (uri, frame) shard by shard so memory does not grow with the dataset."""
    for uri in list_shards(prefix):
        yield uri, read_table(uri, columns)


def read_shards(prefix: str, columns: list[str] | None = None) -> pd.DataFrame:
    frames = [df for _, df in iter_shards(prefix, columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
