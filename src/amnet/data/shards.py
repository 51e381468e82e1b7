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


class ShardWriter:
    """Write Arrow tables to ``prefix/part-NNNNN.parquet`` as they come, ``shard_size`` rows per file, so
    a set of any size is written holding at most one shard's rows. ``close()`` writes the last (or, for
    an empty set, one empty) shard and removes shards an earlier, larger run left under ``prefix``."""

    def __init__(self, prefix: str, shard_size: int, schema: pa.Schema):
        if shard_size < 1:
            raise AmnetError(f"shard size must be >= 1 (got {shard_size})")
        self.prefix, self.shard_size, self.schema = prefix, shard_size, schema
        self.stale = set(storage.list_files(prefix, ".parquet"))
        self.pending: list[pa.Table] = []
        self.buffered = 0
        self.uris: list[str] = []

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self.pending.append(table)
            self.buffered += table.num_rows
        while self.buffered >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self.pending, promote_options="none") if self.pending else self.schema.empty_table()
        head, rest = table.slice(0, rows), table.slice(rows)
        buf = io.BytesIO()
        pq.write_table(head.combine_chunks(), buf, compression="zstd")
        uri = storage.join(self.prefix, shard_name(len(self.uris)))
        storage.write_bytes(uri, buf.getvalue())
        self.uris.append(uri)
        self.pending = [rest] if rest.num_rows else []
        self.buffered = rest.num_rows

    def close(self) -> list[str]:
        if self.buffered or not self.uris:
            self._flush(self.buffered)
        for uri in sorted(self.stale - set(self.uris)):
            if uri.rsplit("/", 1)[-1].startswith("part-"):
                storage.delete(uri)
        return self.uris


def list_shards(prefix: str) -> list[str]:
    uris = [u for u in storage.list_files(prefix, ".parquet") if u.rsplit("/", 1)[-1].startswith("part-")]
    if not uris:
        raise AmnetError(f"{prefix}: no part-*.parquet shards found; run the stage that writes them first")
    return uris


def shard_groups(prefix: str, shards_per_task: int) -> list[dict[str, int]]:
    """A fan-out over the shards under ``prefix``: ``[{"group": g, "groups": G}, ...]`` with
    G = ceil(shards / ``shards_per_task``) (one group when ``shards_per_task`` is 0)."""
    count = len(list_shards(prefix))
    groups = 1 if shards_per_task <= 0 else max(1, -(-count // shards_per_task))
    return [{"group": g, "groups": groups} for g in range(groups)]


def group_shards(uris: list[str], group: int, groups: int) -> list[str]:
    """The contiguous block of ``uris`` that task ``group`` of ``groups`` takes (every block but the
    last of equal size)."""
    if not 0 <= group < groups:
        raise AmnetError(f"shard group {group} is outside 0..{groups - 1}")
    per = -(-len(uris) // groups)
    return uris[group * per : (group + 1) * per]


def iter_shards(prefix: str, columns: list[str] | None = None) -> Iterator[tuple[str, pd.DataFrame]]:
    """Yield (uri, frame) shard by shard so memory does not grow with the dataset."""
    for uri in list_shards(prefix):
        yield uri, read_table(uri, columns)


def read_shards(prefix: str, columns: list[str] | None = None) -> pd.DataFrame:
    frames = [df for _, df in iter_shards(prefix, columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
