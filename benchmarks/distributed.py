"""AMNet training samples/s with 1 and N processes (torchrun ranks) and the scaling efficiency.

Each measurement starts its ranks with the project's launcher (``amnet.train.distributed.launch``:
torchrun's ``elastic_launch``, gloo on the CPU, NCCL on GPUs) and times the real inner loop of
``run_train``: every rank draws the same global batch from the ``TripletSampler``, trains on its own
part (``rank_part``) through ``train_step`` inside DistributedDataParallel. The global batch is the
configured one in every run (strong scaling, as training runs), so

    efficiency = rate(N) / (N x rate(1)),   rate = global triplet images (3 x B per step) per second.

1 and N alternate (1, N, N, 1, ...) and the median of the pairs is reported, each figure with the
load average it ran under. On the CPU the launcher shares the cores out (``OMP_NUM_THREADS`` =
cores / N), so on a 2-core machine 2 processes cannot beat 1 process with 2 threads: the figure says
what the gradient all-reduce and the duplicated sampling cost, not a speed-up. ``OMP_NUM_THREADS=1``
in the environment gives every process one thread (1 process then uses one core of the two); without
it 1 process runs 2 threads, which on a loaded machine is much slower than 2 processes of 1 thread
(oversubscription, docs/performance.md) and inflates the efficiency: measured both ways, README.

    .venv/bin/python benchmarks/distributed.py [--processes 2] [--backbone small] [--batch-size 32]
        [--steps 10] [--repeats 2] [--device cpu|cuda]
    # one GPU vs 8 GPUs, the paper's AlexNet at 224 px (goal >= 0.9 per GPU):
    .venv/bin/python benchmarks/distributed.py --device cuda --processes 8 --backbone alexnet --batch-size 256
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

from amnet.config import TrainConfig  # noqa: E402
from amnet.data.synth import VOCAB  # noqa: E402
from amnet.data.triplets import TripletSampler  # noqa: E402
from amnet.model_store import build_model  # noqa: E402
from amnet.runtime import pick_device, use_bf16  # noqa: E402
from amnet.train import distributed  # noqa: E402
from amnet.train.amnet_train import pool_on_device, rank_part, train_step  # noqa: E402
from amnet.train.loop_utils import sgd, split_decay  # noqa: E402


def worker(labels_file: str, backbone: str, image_size: int, feature_dim: int, batch_size: int, steps: int,
           warmup: int, device_name: str) -> dict:
    """One rank: ``warmup`` + ``steps`` steps of the real loop; rank 0 returns the global rate."""
    device = pick_device() if device_name == "auto" else torch.device(device_name)
    device = distributed.setup(device)
    try:
        labels = np.load(labels_file)
        rng = np.random.default_rng(0)  # pixel values do not change the rate; labels shape the sampler
        images = torch.from_numpy(rng.integers(0, 256, (len(labels), 3, image_size, image_size), dtype=np.uint8))
        images = pool_on_device(images, device)
        tc = TrainConfig(batch_size=batch_size)
        sampler = TripletSampler(labels, seed=tc.seed, two_change_fraction=tc.two_change_fraction)
        torch.manual_seed(0)
        model = build_model("amnet", tc.variant, bl.model_config(backbone, image_size, feature_dim), VOCAB).to(device)
        opt = sgd(*split_decay(model), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
        net = distributed.wrap(model, device)
        net.train()
        bf16 = use_bf16(tc.precision, device)

        def run(epoch: int, n: int) -> torch.Tensor:
            rows = [train_step(net, opt, images, rank_part(b), VOCAB.offsets, VOCAB.total_values, tc.effective_lam,
                               tc.margin, device, bf16) for b in sampler.batches(epoch, n, batch_size)]
            return distributed.mean_over_ranks(torch.stack(rows).mean(0))  # the epoch-end read, as run_train

        run(0, warmup)
        distributed.barrier()
        start = time.perf_counter()
        loss = float(run(1, steps)[0])
        distributed.barrier()
        seconds = time.perf_counter() - start
        return {"images_per_s": 3 * batch_size * steps / seconds, "seconds": seconds, "loss": loss,
                "world": distributed.world_size(), "threads": torch.get_num_threads()}
    finally:
        distributed.teardown()


def measure(nproc: int, kwargs: dict) -> dict:
    load = os.getloadavg()[0]
    result = distributed.launch(worker, nproc, **kwargs)
    return {**result, "load": load, "load_after": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--processes", type=int, default=2, help="N (compared with 1)")
    p.add_argument("--backbone", default="small", choices=["small", "alexnet", "resnet18", "resnet50"])
    p.add_argument("--image-size", type=int, default=0, help="model input px (default: 64 small, 224 others)")
    p.add_argument("--feature-dim", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size, help="global triplets per step")
    p.add_argument("--steps", type=int, default=10, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="pairs (1 process, N processes), order alternating")
    p.add_argument("--pool", type=int, default=600, help="synthetic pool images (their labels shape the sampler)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    args = p.parse_args(argv)
    cfg = bl.model_config(args.backbone, args.image_size or None, args.feature_dim or None)
    labels, _ = bl.render_pool(args.pool, 64)
    with tempfile.TemporaryDirectory(prefix="amnet-bench-dist-") as tmp:
        labels_file = os.path.join(tmp, "labels.npy")
        np.save(labels_file, labels)
        kwargs = {"labels_file": labels_file, "backbone": args.backbone, "image_size": cfg.image_size,
                  "feature_dim": cfg.feature_dim, "batch_size": args.batch_size, "steps": args.steps,
                  "warmup": args.warmup, "device_name": args.device}
        print(f"# {bl.describe_env(torch.device('cuda' if args.device == 'cuda' else 'cpu'))}; "
              f"{os.cpu_count()} CPUs; {args.backbone} {cfg.image_size} px, global batch {args.batch_size} "
              f"triplets, {args.steps} timed steps")
        ones, manys = [], []
        for r in range(args.repeats):
            order = (1, args.processes) if r % 2 == 0 else (args.processes, 1)
            for n in order:
                res = measure(n, kwargs)
                (ones if n == 1 else manys).append(res)
                print(f"  {n} process(es): {res['images_per_s']:8.1f} img/s  ({res['threads']} threads each, "
                      f"loss {res['loss']:.4f}, load {res['load']:.2f} -> {res['load_after']:.2f})", flush=True)
    effs = [m["images_per_s"] / (args.processes * o["images_per_s"]) for o, m in zip(ones, manys, strict=True)]
    one = bl.median([o["images_per_s"] for o in ones])
    many = bl.median([m["images_per_s"] for m in manys])
    loads = [x["load"] for x in ones + manys]
    print(f"1 process: {one:.1f} img/s; {args.processes} processes: {many:.1f} img/s; speed-up {many / one:.2f}; "
          f"scaling efficiency {bl.median(effs):.2f} (pairs {', '.join(f'{e:.2f}' for e in effs)}; "
          f"load {min(loads):.2f}-{max(loads):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
