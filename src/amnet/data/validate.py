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
unknown attribute value; empty image path; path escaping the dataset root; missing or unreadable
file; empty, undecodable, truncated or over-limit image. Rows whose labels are *all* missing are
kept: they cannot teach the attribute CNN anything, but they are valid gallery images and the
split stage decides where they go.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
from tqdm import tqdm

from amnet import storage
from amnet.data import images
from amnet.data.images import MAX_PIXELS
from amnet.data.schema import MISSING, Vocabulary, load_manifest, load_vocabulary
from amnet.errors import ConfigError, DatasetError

KEPT_COLUMNS = ["image_id", "image_bytes", "labels"]
QUARANTINE_COLUMNS = ["row", "image_id", "image", "reason"]
READ_WORKERS = 8  # concurrent file reads (S3 latency dominates; decoding stays sequential)
CHUNK = 256  # rows fetched per batch, bounding the bytes held before they are checked


@dataclass
class ValidationResult:
    """Rows that passed (``kept``) and rows that did not (``quarantine``), see the module doc."""

    kept: pd.DataFrame
    quarantine: pd.DataFrame
    rows_in: int
    vocab: Vocabulary
    dataset: str = ""

    @property
    def quarantined_fraction(self) -> float:
        return len(self.quarantine) / self.rows_in if self.rows_in else 0.0

    def reason_counts(self) -> Counter[str]:
        """Quarantine counts per reason kind (the reason without its parenthesised detail)."""
        return Counter(reason_kind(r) for r in self.quarantine["reason"])


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


def _row_problem(image_id: str, image: str, seen: set[str]) -> str | None:
    """The reason a row is rejected before its labels and file are even looked at, if any."""
    if image_id.strip() == "":
        return "empty image_id"
    if image_id in seen:
        return "duplicate image_id"
    if image.strip() == "":
        return "empty image path"
    return None


def _fetch(uri: str | None) -> tuple[bytes | None, str | None]:
    if uri is None:
        return None, "image path escapes the dataset root"
    return images.read_image_file(uri)


def _validate_rows(dataset: str, df: pd.DataFrame, vocab: Vocabulary, max_pixels: int):
    """Yield ``("kept", (image_id, bytes, labels))`` or ``("quarantine", (row, id, image, reason))``."""
    maps = _label_maps(vocab)
    ids, paths = df["image_id"].tolist(), df["image"].tolist()
    cells = df[vocab.names].itertuples(index=False, name=None)
    seen: set[str] = set()
    pending: list[tuple[int, str, str, list[int], str | None]] = []  # rows whose file must be read

    def flush(pool: ThreadPoolExecutor):
        fetched = pool.map(_fetch, [uri for *_, uri in pending])
        for (row, image_id, image, labels, _), (data, reason) in zip(pending, fetched, strict=True):
            reason = reason or images.check_image(data, max_pixels)
            if reason:
                yield "quarantine", (row, image_id, image, reason)
            else:
                yield "kept", (image_id, data, labels)
        pending.clear()

    if storage.is_s3(dataset):
        storage.s3_client()  # create the shared client once, before worker threads use it
    with ThreadPoolExecutor(READ_WORKERS) as pool:
        for row, (image_id, image, row_cells) in enumerate(zip(ids, paths, cells, strict=True)):
            reason = _row_problem(image_id, image, seen)
            seen.add(image_id)
            labels = _encode_labels(list(row_cells), vocab, maps) if reason is None else []
            if isinstance(labels, str):
                reason = labels
            if reason:
                yield "quarantine", (row, image_id, image, reason)
                continue
            pending.append((row, image_id, image, labels, images.resolve_image_path(dataset, image)))
            if len(pending) >= CHUNK:
                yield from flush(pool)
        yield from flush(pool)


def validate_dataset(dataset: str, max_pixels: int = MAX_PIXELS, progress: bool = True) -> ValidationResult:
    """Check every row of ``dataset`` (folder or ``s3://`` prefix); see the module doc for the rules.

    Raises DatasetError (one line) when the dataset cannot be read at all.
    """
    if max_pixels < 1:
        raise ConfigError(f"max_pixels must be >= 1 (got {max_pixels})")
    vocab = load_vocabulary(dataset)
    df = load_manifest(dataset, vocab)
    kept: list[tuple] = []
    quarantined: list[tuple] = []
    bar = tqdm(total=len(df), desc="validate", unit="img", disable=not progress, file=sys.stderr)
    with bar:
        for kind, record in _validate_rows(dataset, df, vocab, max_pixels):
            (kept if kind == "kept" else quarantined).append(record)
            bar.update(1)
    result = ValidationResult(
        kept=pd.DataFrame(kept, columns=KEPT_COLUMNS).astype({"image_id": str}),
        quarantine=pd.DataFrame(quarantined, columns=QUARANTINE_COLUMNS).astype(
            {"row": "int64", "image_id": str, "image": str, "reason": str}
        ).sort_values("row", kind="stable", ignore_index=True),
        rows_in=len(df),
        vocab=vocab,
        dataset=dataset,
    )
    assert result.rows_in == len(result.kept) + len(result.quarantine), "validation lost rows"
    return result


def summary_table(result: ValidationResult, top: int = 10) -> str:
    """Human-readable counts: rows in, kept, quarantined (with fraction) and the top reasons."""
    n, q = result.rows_in, len(result.quarantine)
    lines = [
        f"dataset      {result.dataset}",
        f"rows in      {n:>9}",
        f"kept         {len(result.kept):>9}  {(len(result.kept) / n if n else 0):7.2%}",
        f"quarantined  {q:>9}  {result.quarantined_fraction:7.2%}",
    ]
    counts = result.reason_counts().most_common()
    if counts:
        lines.append("quarantine reasons:")
        width = max(len(kind) for kind, _ in counts[:top])
        lines += [f"  {kind.ljust(width)}  {count:>9}" for kind, count in counts[:top]]
        if len(counts) > top:
            rest = sum(c for _, c in counts[top:])
            lines.append(f"  {f'({len(counts) - top} other reasons)'.ljust(width)}  {rest:>9}")
    return "\n".join(lines)


def _top_reasons(result: ValidationResult, top: int = 3) -> str:
    return ", ".join(f"{kind} ({count})" for kind, count in result.reason_counts().most_common(top))


def check_fraction(result: ValidationResult, max_fraction: float) -> None:
    """Raise DatasetError naming the top reasons if too many rows were quarantined or none kept."""
    name = result.dataset or "dataset"
    frac = result.quarantined_fraction
    if frac > max_fraction:
        raise DatasetError(
            f"{name}: {len(result.quarantine)} of {result.rows_in} rows quarantined ({frac:.1%}), over the "
            f"limit of {max_fraction:.1%}; top reasons: {_top_reasons(result)}; fix the dataset or "
            "raise --max-quarantine-fraction"
        )
    if len(result.kept) == 0:
        raise DatasetError(f"{name}: no usable rows; top reasons: {_top_reasons(result)}")


def write_quarantine(result: ValidationResult, uri: str) -> None:
    """Write the quarantine table as Parquet (local path or ``s3://`` URI, atomic)."""
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
    args = parser.parse_args(argv)
    result = validate_dataset(args.dataset, max_pixels=args.max_pixels, progress=not args.no_progress)
    print(summary_table(result))
    if args.quarantine_out:
        write_quarantine(result, args.quarantine_out)
        print(f"quarantine written to {args.quarantine_out}")
    try:
        check_fraction(result, args.max_quarantine_fraction)
    except DatasetError as exc:
        print(f"amnet data validate: error: {exc}", file=sys.stderr)
        return 1
    return 0
