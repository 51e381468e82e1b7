"""Pure model throughput of the small backbone on this machine (no data loading, no decoding).

Prints the train-step rate (forward + backward + SGD step of an AttributeCNN on random 64 px images)
and the eval-mode forward rate, in images/s: the best of ``--repeats`` timed runs (the idle-machine
rate) and their median. Other timings (data pipeline, stage runs) are reported
as ratios to these numbers.

    .venv/bin/python benchmarks/model_rate.py [--batch 96] [--size 64] [--width 32] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from amnet.config import ModelConfig
from amnet.models import AttributeCNN, attribute_loss, build_backbone


def rate(step, batch: int, steps: int, repeats: int, warmup: int = 3) -> tuple[float, float]:
    """(best, median) images/s over ``repeats`` timed runs of ``steps`` steps each.

    The best run estimates the rate on an idle machine (other processes only ever slow a run
    down); the median shows what a shared CPU gives right now.
    """
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(batch * steps / (time.perf_counter() - start))
    return max(rates), statistics.median(rates)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--feature-dim", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; best and median reported")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = ModelConfig(backbone="small", image_size=args.size, feature_dim=args.feature_dim, width=args.width)
    model = AttributeCNN(build_backbone(cfg), cfg.feature_dim, [8, 8, 8, 8])
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, 3, args.size, args.size)  # (B, 3, S, S)
    y = torch.randint(0, 8, (args.batch, 4))  # (B, M)

    def train_step() -> None:
        _, logits = model(x)
        loss = attribute_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def forward() -> None:
        with torch.inference_mode():
            model.backbone(x)

    model.train()
    train, train_median = rate(train_step, args.batch, args.steps, args.repeats)
    model.eval()
    fwd, fwd_median = rate(forward, args.batch, args.steps, args.repeats)
    result = {
        "train_images_per_s": round(train, 1),
        "forward_images_per_s": round(fwd, 1),
        "train_images_per_s_median": round(train_median, 1),
        "forward_images_per_s_median": round(fwd_median, 1),
        "batch": args.batch,
        "size": args.size,
        "width": args.width,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
