"""``amnet data validate``: check every manifest row and quarantine the bad ones with a reason.

A dataset that cannot be read at all (no manifest, wrong columns, bad ``attributes.json``) raises
DatasetError. Otherwise every row ends up in exactly one of two tables, so the counts always add up
(``rows_in == len(kept) + len(quarantine)``):

* ``kept``: ``image_id`` (str), ``image_bytes`` (the encoded file, as read), ``labels`` (list of
  int, one code per attribute in vocabulary order, -1 = missing);
* ``quarantine``: ``row`` (0-based row number in ``manifest.parquet``), ``image_id``, ``image``,
  ``reason``.

Row checks, first failure wins: empty image_id; duplicate image_id (the first row with an id is the
one that counts, every later row with the same id is quarantined, whatever became of the first);
unknown attribute value; an ``item_id`` cell that is neither a string nor null; empty image path;
path escaping the dataset root; missing or unreadable file; empty, undecodable, truncated or
over-limit image. ``item_id`` (optional) groups variants of one item: an empty or null cell is no
group, and a row is never quarantined for being alone in its group. Rows whose labels are *all* missing are
kept: they cannot teach the attribute CNN anything, but they are valid gallery images and the
split stage decides where they go.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from amnet import storage
from amnet.data import images
from amnet.data.images import MAX_PIXELS
from amnet.data.schema import ITEM_ID, MISSING, Vocabulary, item_id_problem, load_vocabulary, manifest_batches
from amnet.errors import AmnetError, ConfigError, DatasetError

log = logging.getLogger(__name__)

KEPT_COLUMNS = ["image_id", "image_bytes", "labels"]
QUARANTINE_COLUMNS = ["row", "image_id", "image", "reason"]
READ_WORKERS = 8  # concurrent file reads per chunk (S3 latency dominates)
CHUNK = 1024  # manifest rows per chunk: one task for a decode process, one staging file
POOL_MIN_CHUNKS = 8  # fewer chunks than this are checked in this process (starting processes costs ~1 s)
PART_SCHEMA = pa.schema([("row", pa.int64()), ("image_id", pa.large_string()), ("image_bytes", pa.binary()),
                         ("labels", pa.list_(pa.int64()))])
QUARANTINE_SCHEMA = pa.schema([("row", pa.int64()), ("image_id", pa.large_string()), ("image", pa.large_string()),
                               ("reason", pa.large_string())])


class _Counts:
    """Counts and reasons shared by both result kinds (``summary_table`` / ``check_fraction`` use these)."""

    rows_in: int
    dataset: str

    @property
    def quarantined_fraction(self) -> float:
        return self.num_quarantined / self.rows_in if self.rows_in else 0.0


@dataclass
class ValidationResult(_Counts):
    """Rows that passed (``kept``) and rows that did not (``quarantine``), in memory; see the module doc.

    Holds every kept image's bytes: for small datasets and tests. The split streams instead
    (:func:`validate_to_staging`)."""

    kept: pd.DataFrame
    quarantine: pd.DataFrame
    rows_in: int
    vocab: Vocabulary
    dataset: str = ""
    groups: np.ndarray | None = None  # as in StagedValidation

    @property
    def num_kept(self) -> int:
        return len(self.kept)

    @property
    def num_quarantined(self) -> int:
        return len(self.quarantine)

    def reason_counts(self) -> Counter[str]:
        """Quarantine counts per reason kind (the reason without its parenthesised detail)."""
        return Counter(reason_kind(r) for r in self.quarantine["reason"])


@dataclass
class StagedValidation(_Counts):
    """A validation written to local staging files as it went: the kept rows' labels in memory (a small
    (K, M) int16 matrix), their images on disk.

    ``parts``: Parquet files of the kept rows in manifest order (``row``, ``image_id``, ``image_bytes``,
    ``labels``); ``part_starts[p]`` is the kept index of part p's first row (``part_starts[-1]`` = K).
    ``quarantine_file``: the quarantine table (sorted by row). ``worker_peak_rss_mb``: the largest peak
    RSS of a decode process (0 when everything ran in this process)."""

    rows_in: int
    vocab: Vocabulary
    dataset: str
    labels: np.ndarray  # (K, M) int16, kept rows in manifest order
    parts: list[str]
    part_starts: np.ndarray  # (P + 1,) int64
    quarantine_file: str
    num_quarantined: int
    reasons: Counter[str] = field(default_factory=Counter)
    worker_peak_rss_mb: float = 0.0
    # (K,) int64 variant-group code of each kept row (-1 = no group); None: the manifest has no item_id
    groups: np.ndarray | None = None

    @property
    def num_kept(self) -> int:
        return len(self.labels)

    def reason_counts(self) -> Counter[str]:
        return Counter(self.reasons)

    def quarantine(self) -> pd.DataFrame:
        return pq.read_table(self.quarantine_file).to_pandas()


def group_codes(item_ids: list[str]) -> np.ndarray:
    """(K,) int64 codes of item ids in first-seen order; '' (no group) -> -1."""
    seen: dict[str, int] = {}
    return np.asarray([-1 if i == "" else seen.setdefault(i, len(seen)) for i in item_ids], dtype=np.int64)


def group_stats(groups: np.ndarray | None) -> dict[str, int]:
    """``item_groups`` (distinct item ids), ``grouped_rows`` (rows with one), ``multi_groups`` (groups of 2+)."""
    if groups is None:
        return {"item_groups": 0, "grouped_rows": 0, "multi_groups": 0}
    sizes = np.bincount(groups[groups >= 0]) if (groups >= 0).any() else np.zeros(0, dtype=np.int64)
    return {"item_groups": int((sizes > 0).sum()), "grouped_rows": int(sizes.sum()),
            "multi_groups": int((sizes >= 2).sum())}


def reason_kind(reason: str) -> str:
    """Group key of a reason: ``"image over pixel limit (9000×9000 > N)"`` -> ``"image over pixel limit"``.

    Unknown-value reasons keep their attribute and value, which is what the user needs to fix.
    """
    return reason.split(" (", 1)[0]


def _label_maps(vocab: Vocabulary) -> list[dict[str, int]]:
    return [{value: i for i, value in enumerate(a.values)} for a in vocab.attributes]


def _encode_labels(cells: list[str], vocab: Vocabulary, maps: list[dict[str, int]]) -> list[int] | str:
    """Label codes for one row ('' -> -1), or the reason naming the first unknown value."""
    codes = []
    for attr, table, cell in zip(vocab.attributes, maps, cells, strict=True):
        if cell == "":
            codes.append(MISSING)
        elif cell in table:
            codes.append(table[cell])
        else:
            return f"unknown value {cell!r} for attribute {attr.name!r}"
    return codes


def _row_problem(image_id: str, image: str, duplicate: bool) -> str | None:
    """The reason a row is rejected before its labels and file are even looked at, if any."""
    if image_id.strip() == "":
        return "empty image_id"
    if duplicate:
        return "duplicate image_id"
    if image.strip() == "":
        return "empty image path"
    return None


def _fetch(uri: str | None) -> tuple[bytes | None, str | None]:
    if uri is None:
        return None, "image path escapes the dataset root"
    return images.read_image_file(uri)


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            return next((int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:")), 0.0)
    except OSError:
        return 0.0


def check_chunk(task: tuple) -> tuple[list[int], list[tuple[int, str]], float]:
    """Read and fully decode one chunk's image files; write the good rows to the chunk's staging file.

    ``task`` = ``(rows, max_pixels, part_path, env)``, ``rows`` = ``[(row, image_id, labels, uri), ...]``.
    Returns the kept manifest rows, ``(row, reason)`` for the bad ones and this process's peak RSS (MB).
    Runs in a decode process (or inline): the image bytes never travel back to the caller.
    """
    rows, max_pixels, part_path, env = task
    _match_env(env)
    kept: list[tuple] = []
    bad: list[tuple[int, str]] = []
    with ThreadPoolExecutor(READ_WORKERS) as pool:
        fetched = pool.map(_fetch, [uri for *_, uri in rows])
        for (row, image_id, labels, _), (data, reason) in zip(rows, fetched, strict=True):
            reason = reason or images.check_image(data, max_pixels)
            if reason:
                bad.append((row, reason))
            else:
                kept.append((row, image_id, data, labels))
    if kept and part_path:
        columns = list(zip(*kept, strict=True))
        table = pa.Table.from_arrays([pa.array(c, type=f.type) for c, f in zip(columns, PART_SCHEMA, strict=True)],
                                     schema=PART_SCHEMA)
        pq.write_table(table, part_path, compression="none")
    return [k[0] for k in kept], bad, _peak_rss_mb()


def _match_env(env: dict[str, str]) -> None:
    """A decode process uses the caller's S3 settings (a pool process may outlive an env change)."""
    changed = False
    for name in set(env) | {k for k in os.environ if k.startswith("AWS_")}:
        if os.environ.get(name) != env.get(name):
            changed = True
            if name in env:
                os.environ[name] = env[name]
            else:
                del os.environ[name]
    if changed and "boto3" in sys.modules:
        storage._client.cache_clear()
        sys.modules["boto3"].DEFAULT_SESSION = None


def _decode_workers(requested: int) -> int:
    """``requested``, or one process per CPU this process may use: its affinity mask capped by the cgroup
    CPU quota (``amnet.runtime.available_cpus``'s rule; not imported: runtime loads torch, ~0.5 GB)."""
    if requested > 0:
        return requested
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def validate_to_staging(dataset: str, staging: str, max_pixels: int = MAX_PIXELS, progress: bool = True,
                        workers: int = 0, chunk_rows: int | None = None, keep_images: bool = True) -> StagedValidation:
    """Check every row of ``dataset`` chunk by chunk (``chunk_rows``, default :data:`CHUNK`), images
    decoded in ``workers`` processes (0: one per CPU; 1, or fewer than :data:`POOL_MIN_CHUNKS` chunks:
    in this process); kept rows go to Parquet parts under the local folder
    ``staging`` and the quarantine to ``staging/quarantine.parquet`` as they are decided
    (``keep_images=False``: no parts, only the labels and the quarantine: ``amnet data validate``).

    Memory does not grow with the images: this process holds the manifest's current chunk, the label
    matrix (K x M int16) and the results of the chunks in flight. Row order, reasons and counts are
    exactly those of :func:`validate_dataset`. Raises DatasetError when the dataset cannot be read.
    """
    if max_pixels < 1:
        raise ConfigError(f"max_pixels must be >= 1 (got {max_pixels})")
    chunk_rows = chunk_rows or CHUNK
    vocab = load_vocabulary(dataset)
    rows_in, duplicates, batches = manifest_batches(dataset, vocab, chunk_rows)
    os.makedirs(staging, exist_ok=True)
    maps = _label_maps(vocab)
    workers = 1 if rows_in < POOL_MIN_CHUNKS * chunk_rows else _decode_workers(workers)
    if storage.is_s3(dataset):
        storage.s3_client()  # fail here, once, on bad credentials
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    labels_parts: list[np.ndarray] = []
    parts: list[str] = []
    starts = [0]
    reasons: Counter[str] = Counter()
    quarantined = 0
    worker_peak = 0.0
    qfile = os.path.join(staging, "quarantine.parquet")
    qwriter = pq.ParquetWriter(qfile, QUARANTINE_SCHEMA)
    pool = None
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")  # fresh processes: no copied locks, the caller's env
        pool = ProcessPoolExecutor(workers, mp_context=ctx)
    in_flight: deque = deque()
    has_items: bool | None = None  # whether the manifest has an item_id column (seen in the first batch)
    kept_items: list[str] = []

    def finish(item) -> None:
        nonlocal quarantined, worker_peak
        early, pending, result, part, items = item
        kept_rows, bad, peak = result.result() if pool else result
        worker_peak = max(worker_peak, peak) if pool else worker_peak
        meta = {row: (image_id, image, lab) for row, image_id, image, lab in pending}
        records = early + [(row, meta[row][0], meta[row][1], reason) for row, reason in bad]
        records.sort(key=lambda r: r[0])
        if records:
            qwriter.write_table(pa.Table.from_pylist(
                [dict(zip(QUARANTINE_COLUMNS, r, strict=True)) for r in records], schema=QUARANTINE_SCHEMA))
            quarantined += len(records)
            reasons.update(reason_kind(r[3]) for r in records)
        if kept_rows:
            labels_parts.append(np.asarray([meta[row][2] for row in kept_rows], dtype=np.int16))
            if has_items:
                kept_items.extend(items[row] for row in kept_rows)
            if part:
                parts.append(part)
                starts.append(starts[-1] + len(kept_rows))
        bar.update(len(early) + len(pending))

    bar = tqdm(total=rows_in, desc="validate", unit="img", disable=not progress, file=sys.stderr)
    try:
        with bar:
            for index, (first, df) in enumerate(batches):
                ids, paths = df["image_id"].tolist(), df["image"].tolist()
                cells = df[vocab.names].itertuples(index=False, name=None)
                has_items = ITEM_ID in df.columns
                item_cells = df[ITEM_ID].tolist() if has_items else [None] * len(df)
                early, pending, items = [], [], {}
                for offset, (image_id, image, row_cells, item_cell) in enumerate(
                        zip(ids, paths, cells, item_cells, strict=True)):
                    row = first + offset
                    reason = _row_problem(image_id, image, bool(duplicates[row]))
                    labels = _encode_labels(list(row_cells), vocab, maps) if reason is None else []
                    if isinstance(labels, str):
                        reason = labels
                    if reason is None and has_items:
                        items[row], reason = item_id_problem(item_cell)
                    if reason:
                        early.append((row, image_id, image, reason))
                    else:
                        pending.append((row, image_id, image, labels))
                part = os.path.join(staging, f"part-{index:06d}.parquet") if keep_images else ""
                task = ([(row, image_id, labels, images.resolve_image_path(dataset, image))
                         for row, image_id, image, labels in pending], max_pixels, part, env)
                result = pool.submit(check_chunk, task) if pool else check_chunk(task)
                in_flight.append((early, pending, result, part, items))
                while len(in_flight) > (2 * workers if pool else 0):
                    finish(in_flight.popleft())
            while in_flight:
                finish(in_flight.popleft())
    except BrokenProcessPool as exc:
        raise AmnetError(
            f"{dataset}: an image-decoding process died ({exc}); out of memory, or a script that calls this "
            "without an `if __name__ == '__main__':` guard (decode processes are spawned); or pass workers=1"
        ) from exc
    finally:
        qwriter.close()
        if pool:
            pool.shutdown(cancel_futures=True)
    labels = (np.concatenate(labels_parts) if labels_parts
              else np.zeros((0, vocab.num_attributes), dtype=np.int16))
    staged = StagedValidation(rows_in=rows_in, vocab=vocab, dataset=dataset, labels=labels, parts=parts,
                              part_starts=np.asarray(starts, dtype=np.int64), quarantine_file=qfile,
                              num_quarantined=quarantined, reasons=reasons, worker_peak_rss_mb=worker_peak,
                              groups=group_codes(kept_items) if has_items else None)
    assert staged.rows_in == staged.num_kept + staged.num_quarantined, "validation lost rows"
    assert staged.groups is None or len(staged.groups) == staged.num_kept, "validation lost item ids"
    return staged


def validate_dataset(dataset: str, max_pixels: int = MAX_PIXELS, progress: bool = True,
                     workers: int = 0) -> ValidationResult:
    """Check every row of ``dataset`` (folder or ``s3://`` prefix); see the module doc for the rules.

    The whole result in memory (kept images included); :func:`validate_to_staging` streams instead.
    Raises DatasetError (one line) when the dataset cannot be read at all.
    """
    with tempfile.TemporaryDirectory(prefix="amnet-validate-") as staging:
        staged = validate_to_staging(dataset, staging, max_pixels, progress, workers)
        frames = [pq.read_table(p, columns=["image_id", "image_bytes"]).to_pandas() for p in staged.parts]
        kept = (pd.concat(frames, ignore_index=True) if frames
                else pd.DataFrame({"image_id": pd.Series([], dtype=str), "image_bytes": []}))
        kept["labels"] = staged.labels.astype(int).tolist()
        quarantine = staged.quarantine()
    return ValidationResult(
        kept=kept[KEPT_COLUMNS].astype({"image_id": str}),
        quarantine=quarantine.astype({"row": "int64", "image_id": str, "image": str, "reason": str}),
        rows_in=staged.rows_in,
        vocab=staged.vocab,
        dataset=dataset,
        groups=staged.groups,
    )


def summary_table(result: ValidationResult | StagedValidation, top: int = 10) -> str:
    """Human-readable counts: rows in, kept, quarantined (with fraction) and the top reasons."""
    n, q, k = result.rows_in, result.num_quarantined, result.num_kept
    lines = [
        f"dataset      {result.dataset}",
        f"rows in      {n:>9}",
        f"kept         {k:>9}  {(k / n if n else 0):7.2%}",
        f"quarantined  {q:>9}  {result.quarantined_fraction:7.2%}",
    ]
    if result.groups is not None:
        g = group_stats(result.groups)
        lines.append(f"item groups  {g['item_groups']:>9}  ({g['multi_groups']} with 2+ variants, "
                     f"{g['grouped_rows']} kept rows in a group)")
    counts = result.reason_counts().most_common()
    if counts:
        lines.append("quarantine reasons:")
        width = max(len(kind) for kind, _ in counts[:top])
        lines += [f"  {kind.ljust(width)}  {count:>9}" for kind, count in counts[:top]]
        if len(counts) > top:
            rest = sum(c for _, c in counts[top:])
            lines.append(f"  {f'({len(counts) - top} other reasons)'.ljust(width)}  {rest:>9}")
    return "\n".join(lines)


def summary_data(result: ValidationResult | StagedValidation) -> dict:
    """The summary as ``--json`` prints it: the counts, the quarantined fraction, every reason with its
    count (most frequent first) and, when the manifest has ``item_id``, the variant groups."""
    data = {"dataset": result.dataset, "rows_in": int(result.rows_in), "kept": int(result.num_kept),
            "quarantined": int(result.num_quarantined), "quarantined_fraction": float(result.quarantined_fraction),
            "reasons": dict(result.reason_counts().most_common())}
    if result.groups is not None:
        data["groups"] = group_stats(result.groups)
    return data


def _top_reasons(result: ValidationResult | StagedValidation, top: int = 3) -> str:
    return ", ".join(f"{kind} ({count})" for kind, count in result.reason_counts().most_common(top))


def check_fraction(result: ValidationResult | StagedValidation, max_fraction: float) -> None:
    """Raise DatasetError naming the top reasons if too many rows were quarantined or none kept."""
    name = result.dataset or "dataset"
    frac = result.quarantined_fraction
    if frac > max_fraction:
        raise DatasetError(
            f"{name}: {result.num_quarantined} of {result.rows_in} rows quarantined ({frac:.1%}), over the "
            f"limit of {max_fraction:.1%}; top reasons: {_top_reasons(result)}; fix the dataset or "
            "raise --max-quarantine-fraction"
        )
    if result.num_kept == 0:
        raise DatasetError(f"{name}: no usable rows; top reasons: {_top_reasons(result)}")


def write_quarantine(result: ValidationResult | StagedValidation, uri: str) -> None:
    """Write the quarantine table as Parquet (local path or ``s3://`` URI, atomic)."""
    if isinstance(result, StagedValidation):
        with open(result.quarantine_file, "rb") as fh:
            storage.write_bytes(uri, fh.read())
        return
    buf = io.BytesIO()
    result.quarantine.to_parquet(buf, index=False)
    storage.write_bytes(uri, buf.getvalue())


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (got {text})")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {text})")
    return value


def main(argv: list[str] | None = None) -> int:
    """``amnet data validate DATASET``: print the summary; exit 1 if too much was quarantined."""
    parser = argparse.ArgumentParser(prog="amnet data validate", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="dataset folder or s3:// prefix (manifest.parquet + attributes.json)")
    parser.add_argument("--max-quarantine-fraction", type=_fraction, default=0.05, metavar="F",
                        help="fail (exit 1) when more than this fraction of rows is quarantined (0.05)")
    parser.add_argument("--max-pixels", type=_positive_int, default=MAX_PIXELS, metavar="N",
                        help=f"largest accepted image, in pixels ({MAX_PIXELS})")
    parser.add_argument("--quarantine-out", metavar="FILE.parquet",
                        help="write the quarantined rows (row, image_id, image, reason) here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as one JSON document (counts, every reason, \"passed\")")
    args = parser.parse_args(argv)
    staging = tempfile.mkdtemp(prefix="amnet-validate-")
    try:  # streamed: the kept images are checked and dropped, never held
        result = validate_to_staging(args.dataset, staging, max_pixels=args.max_pixels,
                                     progress=not args.no_progress, keep_images=False)
        if not args.json:
            print(summary_table(result))
        if args.quarantine_out:
            write_quarantine(result, args.quarantine_out)
            log.info("quarantine written to %s", args.quarantine_out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        check_fraction(result, args.max_quarantine_fraction)
    except DatasetError as exc:
        if args.json:
            print(json.dumps({**summary_data(result), "passed": False, "error": str(exc)}, indent=2))
        print(f"amnet data validate: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**summary_data(result), "passed": True}, indent=2))
    return 0
