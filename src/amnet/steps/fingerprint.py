"""Stage: dataset fingerprint, the pipeline's first (never cached) task.

Its digest and row count go to the split as parameters, so the split, pretraining and prototypes
are cache hits exactly when the data has not changed (KFP's cache key holds parameter values; the
dataset URI alone stays the same when a catalogue is updated in place). Not tracked in MLflow: it
runs on every pipeline run and its result is recorded by the split (``split.json``) and every model.
"""

from __future__ import annotations

import argparse
import json

from amnet import storage
from amnet.data.fingerprint import fingerprint_dataset


def run_step(dataset: str, out: str = "") -> dict:
    """Fingerprint ``dataset`` (folder or ``s3://`` prefix); with ``out``, also write it there as JSON."""
    result = fingerprint_dataset(dataset).to_dict()
    if out:
        storage.write_text(out, json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="amnet step fingerprint",
        description="Content digest of a dataset: manifest.parquet, attributes.json and every image's size and "
        "SHA-256 (local) or ETag (s3://). The pipeline's first stage; its digest is the split's cache key.")
    p.add_argument("dataset", help="dataset folder or s3:// prefix (manifest.parquet + attributes.json)")
    p.add_argument("--out", default="", help="also write the fingerprint as JSON to this file or s3:// URI")
    p.add_argument("--json", action="store_true", help="print the fingerprint as JSON")
    args = p.parse_args(argv)
    result = run_step(args.dataset, args.out)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['digest']}  {result['dataset']}")
        print(f"  rows {result['rows']}, images {result['images']} ({result['image_bytes']:,} bytes), "
              f"missing {result['missing']}, by {result['method']}, {result['seconds']} s")
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
