"""Containerized vs subprocess pipeline run: the cost of running every task in the CPU image.

Runs the same tiny pipeline (``kfp.local``, caching off) alternately as subprocesses of this Python and
with every task in the project image (``DockerRunner``), ``--rounds`` times each, against the local stack
(started if needed), and prints each wall time and the ratio containers / subprocess per round. The
rounds interleave so that load from other jobs on the machine hits both modes alike; the load average is
printed beside each figure. Needs a Docker engine and the image (``make images``).

    python benchmarks/containers.py --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TINY = {"split_config": {"per_value": 10, "gallery_size": 300, "num_queries": 40},
        "pretrain_config": {"epochs": 1}, "train_config": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="pairs of runs (default: %(default)s)")
    p.add_argument("--images", type=int, default=900, help="synthetic dataset size (default: %(default)s)")
    p.add_argument("--stack-dir", default=None, help="local stack folder (default: amnet's)")
    args = p.parse_args(argv)

    from amnet_components.images import PROJECT_IMAGE
    from amnet_pipeline.local_run import local_stack_env, run_pipeline

    from amnet.data.synth import generate

    os.environ.update(local_stack_env(args.stack_dir))
    work = Path(tempfile.mkdtemp(prefix="amnet-bench-containers-"))
    dataset = str(work / "dataset")
    generate(dataset, num_images=args.images, seed=0, image_size=64, progress=False)
    params = {**TINY, "dataset_uri": dataset, "variants": ["amnet"], "attribute_baseline": True,
              "experiment": "bench-containers"}
    ratios = []
    for r in range(args.rounds):
        walls = {}
        for mode, image in (("subprocess", None), ("containers", PROJECT_IMAGE)):
            load = os.getloadavg()[0]
            start = time.monotonic()
            run_pipeline(params, work / f"{mode}-{r}", cache=False, image=image)
            walls[mode] = time.monotonic() - start
            print(f"round {r + 1} {mode:<10} {walls[mode]:6.1f} s  (load {load:.1f})", flush=True)
        ratios.append(walls["containers"] / walls["subprocess"])
        print(f"round {r + 1} containers / subprocess = {ratios[-1]:.2f}", flush=True)
    print(f"median ratio containers / subprocess over {len(ratios)} rounds: {statistics.median(ratios):.2f} "
          f"(image {PROJECT_IMAGE}, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
