"""Refreshing a changed catalogue vs featurizing it whole, as a ratio, through the real code paths.

A gallery of ``--num-images`` synthetic garments (``--unique`` distinct renders cycled, each row its own
id) is featurized once with a random-weight model (the recorded features, with their digests, plus the
stored index). The catalogue then changes by ``--change`` of the gallery (half altered images, a quarter
added, a quarter removed). In the same run and on the same catalogue, timed:

* full: ``run_featurize`` of the whole changed catalogue (+ building its index), what a refresh replaces;
* refresh: ``amnet.retrieval.refresh.refresh_features`` (digest every image, diff, featurize only the
  added and changed images, copy the rest, update the index).

The ratio refresh / full is printed (goal: <= 5 % at 1 % change on a 200k gallery). Then the results are
compared: each unchanged image's vector in the refresh is byte-identical to the recorded one, and equal
to the full re-featurization's (bytes, or within fp16 rounding when the CPU's batch composition moves a
last bit); the refreshed ids are exactly the catalogue's.

    .venv/bin/python benchmarks/refresh.py [--num-images 200000] [--change 0.01] [--unique 2000]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402

from amnet import storage  # noqa: E402
from amnet.config import FeaturizeConfig  # noqa: E402
from amnet.data import shards  # noqa: E402
from amnet.model_store import load_model  # noqa: E402
from amnet.retrieval.feature_index import build_feature_index  # noqa: E402
from amnet.retrieval.featurize import run_featurize  # noqa: E402
from amnet.retrieval.refresh import refresh_features  # noqa: E402

SHARD = 1000


def vectors(folder: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for uri in shards.list_shards(folder):
        t = pq.read_table(io.BytesIO(storage.read_bytes(uri)), columns=["image_id", "feature"])
        out.update(zip(t.column("image_id").to_pylist(), t.column("feature").to_pylist(), strict=True))
    return out


def changed_catalogue(src: str, dst: str, change: float, blobs: list[bytes], labels: np.ndarray,
                      seed: int = 0) -> dict[str, int]:
    """``src``'s gallery with ``change`` of it altered (half), added (a quarter) and removed (a quarter)."""
    uris = shards.list_shards(os.path.join(src, "gallery"))
    total = sum(pq.ParquetFile(u).metadata.num_rows for u in uris)
    n = max(4, int(total * change))
    rng = np.random.default_rng(seed)
    picked = rng.choice(total, size=n // 2 + n // 4, replace=False)
    altered, removed = set(picked[: n // 2].tolist()), set(picked[n // 2 :].tolist())
    os.makedirs(os.path.join(dst, "gallery"), exist_ok=True)
    storage.write_text(os.path.join(dst, "attributes.json"), storage.read_text(os.path.join(src, "attributes.json")))
    row = 0
    for s, uri in enumerate(uris):
        frame = shards.read_table(uri)
        keep = []
        for i in range(len(frame)):
            if row + i in removed:
                continue
            if row + i in altered:  # another garment's picture under the same id
                frame.at[frame.index[i], "image_bytes"] = blobs[(row + i + 7) % len(blobs)] + b"\0"
            keep.append(i)
        row += len(frame)
        shards.write_table(os.path.join(dst, "gallery", shards.shard_name(s)), frame.iloc[keep])
    added = n // 4
    import pandas as pd

    extra = pd.DataFrame({"image_id": [f"new{i:07d}" for i in range(added)],
                          "image_bytes": [blobs[i % len(blobs)] + b"\1" for i in range(added)],
                          "labels": [labels[i % len(blobs)].tolist() for i in range(added)]})
    shards.write_table(os.path.join(dst, "gallery", shards.shard_name(len(uris))), extra)
    return {"changed": len(altered), "removed": len(removed), "added": added}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-images", type=int, default=200_000)
    p.add_argument("--change", type=float, default=0.01, help="fraction of the gallery that changes")
    p.add_argument("--unique", type=int, default=2000, help="distinct renders cycled through the gallery")
    p.add_argument("--image-size", type=int, default=64)
    args = p.parse_args(argv)
    device = benchlib.resolve_device("auto")
    print(benchlib.describe_env(device))
    cfg = FeaturizeConfig()
    with tempfile.TemporaryDirectory(prefix="amnet-bench-refresh-") as tmp:
        labels, blobs = benchlib.render_pool(args.unique, args.image_size)
        split = benchlib.write_gallery(os.path.join(tmp, "split"), args.num_images, SHARD, labels, blobs)
        model = benchlib.save_random_model(os.path.join(tmp, "model"),
                                           benchlib.model_config("small", args.image_size))
        recorded = os.path.join(tmp, "recorded")
        t0 = time.perf_counter()
        run_featurize(split, model, recorded, cfg, progress=False)
        build_feature_index(recorded, recorded)
        print(f"recorded gallery: {args.num_images} images featurized + indexed in {time.perf_counter() - t0:.1f} s")
        catalogue = os.path.join(tmp, "catalogue")
        planted = changed_catalogue(split, catalogue, args.change, blobs, labels)

        full = os.path.join(tmp, "full")
        t0 = time.perf_counter()
        run_featurize(catalogue, model, full, cfg, progress=False)
        build_feature_index(full, full)
        full_s = time.perf_counter() - t0

        loaded = load_model(model, device)
        out = os.path.join(tmp, "refreshed")
        t0 = time.perf_counter()
        summary = refresh_features(recorded, catalogue, loaded, device, out, cfg)
        refresh_s = time.perf_counter() - t0

        counts = {k: summary[k] for k in ("added", "removed", "changed", "unchanged")}
        assert {k: counts[k] for k in planted} == planted, (counts, planted)
        before, after, again = vectors(recorded), vectors(out), vectors(full)
        assert set(after) == set(again), "refreshed ids differ from the catalogue's"
        unchanged = [i for i in after if i in before and not i.startswith("new") and before[i] == after[i]]
        assert len(unchanged) == counts["unchanged"], "an unchanged vector was not kept byte for byte"
        identical = sum(after[i] == again[i] for i in unchanged)
        dim = loaded.retrieval_dim
        worst = max(float(np.abs(np.frombuffer(after[i], np.float16).astype(np.float32)
                                 - np.frombuffer(again[i], np.float16).astype(np.float32)).max())
                    for i in after) if after else 0.0
        print(f"gallery {args.num_images}, change {args.change:.1%}: {counts} (index {summary['index']['kind']}, "
              f"{summary['index']['update']}; dim {dim})")
        print(f"full featurization + index: {full_s:.2f} s   refresh: {refresh_s:.2f} s "
              f"(scan {summary['scan_seconds']:.2f} s, featurize {summary['featurize_seconds']:.2f} s)")
        print(f"ratio refresh / full: {refresh_s / full_s:.2%} (goal <= 5%)")
        print(f"unchanged vectors byte-identical to the recorded ones: {len(unchanged)}/{counts['unchanged']}; "
              f"to a full re-featurization: {identical}/{len(unchanged)}; largest difference over all images "
              f"{worst:.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
