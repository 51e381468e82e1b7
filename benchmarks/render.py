"""Render rate of the synthetic dataset generator on one core, against the 300 images/s goal.

Renders, JPEG-encodes and writes ``--num-images`` images at 128 px with ``generate(workers=1)``
into a temporary folder, the process pinned to one CPU. Prints the wall-clock rate (what a user
sees) and the CPU-time rate (the same work without time lost to other processes sharing the core),
each with its ratio to the goal, plus the CPU-time rate of rendering + JPEG alone (in memory), which
shows what the file system costs. Usage: ``python benchmarks/render.py [--num-images 2000]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from amnet.data.synth import generate, render_sample

GOAL = 300.0  # images/s on one core at 128 px, rendering + JPEG + write included


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory(prefix="amnet-render-") as out:
        generate(out, 50, seed=args.seed + 1, image_size=args.image_size, progress=False)  # warm-up
        cpu0, wall0 = time.process_time(), time.perf_counter()
        generate(out, args.num_images, seed=args.seed, image_size=args.image_size, progress=False)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    cpu1 = time.process_time()
    for i in range(args.num_images):
        render_sample(args.seed, i, args.image_size)
    mem_rate = args.num_images / (time.process_time() - cpu1)
    wall_rate, cpu_rate = args.num_images / wall, args.num_images / cpu
    print(f"render {args.num_images} images at {args.image_size} px on 1 core (JPEG + write included)")
    print(f"  wall clock: {wall_rate:7.1f} img/s  = {wall_rate / GOAL:.2f}x the {GOAL:.0f} img/s goal")
    print(f"  CPU time:   {cpu_rate:7.1f} img/s  = {cpu_rate / GOAL:.2f}x the goal "
          f"(wall < CPU when other processes share the core)")
    print(f"  render + JPEG only, in memory (CPU time): {mem_rate:7.1f} img/s = {mem_rate / GOAL:.2f}x the goal")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
