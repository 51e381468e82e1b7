"""AMNet training rate through the real ``train_step``, as a ratio to the backbone's pure train-step rate.

Numerator: the inner loop of ``amnet.train.amnet_train.run_train`` as it runs — a real
``TripletSampler`` over a decoded triplet pool (the built-in generator's garments, or ``--split``'s
``triplet_pool``) yields batches; ``train_step`` with the default ``TrainConfig``'s options and the
pool's labels gathers ref / pos / neg images, normalises them, builds the indicators, runs AMNet (one
backbone pass over 3B images, memory read, manipulator, attribute branches), Eq. 4-6, backward and the
SGD step — counted as 3 x B images per step. The pool is a decoded tensor (on the GPU when it fits,
``pool_on_device``), not ``run_train``'s file-backed ``DiskPool``.
Denominator: the same backbone alone on random tensors already on the device, total batch 3 x B,
loss-free (the mean of its output), backward and the same SGD (momentum, weight decay). Both are
measured in this run, interleaved A B B A, ratio per pair and median. The pure step runs in the same
precision as the real loop (bf16 autocast on CUDA), so the ratio compares like with like.

Then a decomposition of the gap (the sampler alone, the data preparation alone, the AMNet model +
losses on random tensors), and, timed in the same rounds as the real loop: on CUDA the real loop in
fp32 and with the pool in pinned host memory, and the candidate change not in src/ (the real
``train_step`` with ``to_input`` swapped for one in-place multiply-add, ``benchlib.fused_to_input``).

``--baseline-rev REV`` also times ``run_train`` itself (one epoch of ``--steps`` steps, the whole call)
at this tree and at git revision REV of this repository, in alternating fresh processes on the same
triplet pool (``benchmarks/revision.py``), and prints this tree's speed-up over REV.

    .venv/bin/python benchmarks/train.py [--backbone small|alexnet] [--batch-size 32] [--steps 20]
        [--device auto|cpu|cuda] [--precision auto|fp32|bf16] [--split DIR] [--baseline-rev REV]
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
import revision  # noqa: E402

import amnet.train.amnet_train  # noqa: E402
from amnet.config import TrainConfig  # noqa: E402
from amnet.data.synth import VOCAB  # noqa: E402
from amnet.data.tensors import decode_batch, to_input  # noqa: E402
from amnet.data.triplets import TripletSampler  # noqa: E402
from amnet.model_store import build_model  # noqa: E402
from amnet.models.backbones import build_backbone  # noqa: E402
from amnet.models.losses import amnet_loss, classification_loss, triplet_ranking_loss  # noqa: E402
from amnet.models.memory import make_indicator  # noqa: E402
from amnet.runtime import use_bf16  # noqa: E402
from amnet.train.amnet_train import STEP_METRICS, TrainOptions, pool_on_device, train_step  # noqa: E402
from amnet.train.loop_utils import sgd, split_decay  # noqa: E402

GOAL_RATIO = 0.6
CANDIDATE = "real loop + fused normalise (candidate)"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="small", choices=["small", "alexnet", "resnet18", "resnet50"])
    p.add_argument("--image-size", type=int, default=0, help="model input px (default: 64 small, 224 others)")
    p.add_argument("--feature-dim", type=int, default=0, help="Q (default: 256 small, 4096 others)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size, help="triplets per step (B)")
    p.add_argument("--precision", default=TrainConfig().precision, choices=["auto", "fp32", "bf16"],
                   help="TrainConfig.precision of the real loop (auto: bf16 autocast on CUDA, fp32 on the CPU)")
    p.add_argument("--steps", type=int, default=0, help="steps per timed run (default: 20 on CPU, 100 on CUDA)")
    p.add_argument("--repeats", type=int, default=2, help="A/B pairs, order alternating")
    p.add_argument("--pool", type=int, default=4000, help="synthetic triplet-pool images")
    p.add_argument("--source-size", type=int, default=0, help="rendered JPEG px (default 128, 256 above 128 px)")
    p.add_argument("--split", help="use this split's triplet_pool instead of synthetic images")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--no-decompose", action="store_true")
    p.add_argument("--no-candidates", action="store_true",
                   help="skip the variant and candidate-change measurements")
    p.add_argument("--baseline-rev", default="", metavar="REV",
                   help="also time run_train at this tree and at git revision REV, alternately (fresh processes)")
    p.add_argument("--gpu-paths", action="store_true", help=argparse.SUPPRESS)  # run the CUDA-only parts anyway
    args = p.parse_args(argv)
    cfg = bl.model_config(args.backbone, args.image_size or None, args.feature_dim or None)
    args.image_size, args.feature_dim = cfg.image_size, cfg.feature_dim
    args.source_size = args.source_size or (128 if args.image_size <= 128 else 256)
    return args


def load_pool(args):
    """(vocabulary, labels (N, M), JPEG blobs, decoded uint8 images (N, 3, S, S)), decoded once."""
    if args.split:
        from amnet import storage
        from amnet.data import shards
        from amnet.data.split import label_matrix, load_split_vocab

        vocab = load_split_vocab(args.split)
        pool = shards.read_shards(storage.join(args.split, "triplet_pool"))
        labels = label_matrix(pool["labels"], vocab.num_attributes)
        blobs = list(pool["image_bytes"])
    else:
        vocab = VOCAB
        labels, blobs = bl.render_pool(args.pool, args.source_size)
    return vocab, labels, blobs, decode_batch(blobs, args.image_size)


class Bench:
    """The real AMNet loop and the pure backbone step, built once, timed alternately."""

    def __init__(self, args, vocab, labels: np.ndarray, images: torch.Tensor, device: torch.device):
        self.args, self.device, self.vocab = args, device, vocab
        tc = TrainConfig(batch_size=args.batch_size, precision=args.precision)
        self.tc = tc
        self.bf16 = use_bf16(tc.precision, device)
        self.host_images = images  # where run_train decodes the pool
        self.images = pool_on_device(images, device)  # as run_train: on the GPU when it fits
        kw = {"seed": tc.seed, "two_change_fraction": tc.two_change_fraction,
              "hard_negative_fraction": tc.hard_negative_fraction}
        self.sampler = TripletSampler(labels, **kw)
        self.pool_labels = torch.from_numpy(self.sampler.labels.astype(np.int64))  # as run_train: (N, M)
        self.options = TrainOptions.of(tc)
        cfg = bl.model_config(args.backbone, args.image_size, args.feature_dim)
        torch.manual_seed(0)
        self.model = build_model("amnet", tc.variant, cfg, vocab).to(device).train()  # memory: random rows
        self.opt = sgd(*split_decay(self.model), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
        self.backbone = build_backbone(cfg).to(device).train()
        self.bopt = sgd(*split_decay(self.backbone), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
        n = 3 * args.batch_size
        self.x = torch.randn(n, 3, args.image_size, args.image_size, device=device)  # (3B, 3, S, S)
        self.epoch = 0

    # numerator: run_train's inner loop (and, with other arguments, the variants measured beside it)
    def amnet_steps(self, steps: int, *, images: torch.Tensor | None = None, bf16: bool | None = None,
                    fused: bool = False) -> float:
        """``steps`` steps as ``run_train`` runs them; the epoch-end mean of the step metrics is read once at
        the end (one device sync), as ``run_train`` does. ``fused``: with ``train_step``'s ``to_input``
        swapped for ``benchlib.fused_to_input``. Returns the mean loss."""
        self.epoch += 1
        images = self.images if images is None else images
        bf16 = self.bf16 if bf16 is None else bf16
        rows = []
        with bl.swapped(amnet.train.amnet_train, "to_input", bl.fused_to_input if fused else to_input):
            for batch in self.sampler.batches(self.epoch, steps, self.args.batch_size):
                rows.append(train_step(self.model, self.opt, images, batch, self.vocab.offsets,
                                       self.vocab.total_values, self.tc.effective_lam, self.tc.margin, self.device,
                                       bf16, self.pool_labels, self.options))
        means = dict(zip(STEP_METRICS, torch.stack(rows).mean(0).tolist(), strict=True))
        return means["loss"]

    # denominator: the backbone alone, same total batch, loss-free, in the real loop's precision
    def backbone_steps(self, steps: int, autocast: bool | None = None, channels_last: bool = False) -> None:
        autocast = self.bf16 if autocast is None else autocast
        net, x = self.backbone, self.x
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        for _ in range(steps):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = net(x).float().mean()
            self.bopt.zero_grad(set_to_none=True)
            loss.backward()
            self.bopt.step()
        if channels_last:
            self.backbone.to(memory_format=torch.contiguous_format)

    # decomposition
    def sampler_only(self, steps: int) -> None:
        self.epoch += 1
        for _ in self.sampler.batches(self.epoch, steps, self.args.batch_size):
            pass

    def data_only(self, batches: list) -> None:
        """train_step's data preparation: one gather of the 3B images, to_input, indicator, target."""
        for batch in batches:
            rows = torch.from_numpy(np.concatenate([batch.ref, batch.pos, batch.neg])).to(self.images.device)
            to_input(self.images[rows], self.device)
            make_indicator(batch.changes, self.vocab.offsets, self.vocab.total_values).to(self.device,
                                                                                           non_blocking=True)
            torch.from_numpy(batch.target).to(self.device, non_blocking=True)

    def model_only(self, steps: int, batch) -> None:
        b = self.args.batch_size
        ref, pos, neg = self.x[:b], self.x[b : 2 * b], self.x[2 * b :]
        h = make_indicator(batch.changes, self.vocab.offsets, self.vocab.total_values).to(self.device)
        target = torch.from_numpy(batch.target).to(self.device)
        for _ in range(steps):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.model(ref, h, pos, neg)
                la = classification_loss(out["logits"], target)
                lt = triplet_ranking_loss(out["r_manip"].float(), out["pos"].float(), out["neg"].float(),
                                          self.tc.margin)
                loss = amnet_loss(la, lt, self.tc.effective_lam)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()


def baseline(args, labels: np.ndarray, blobs: list[bytes], device: torch.device) -> dict:
    """``run_train`` at this tree / at ``--baseline-rev``, alternating fresh processes (benchmarks/revision.py)."""
    steps = args.steps or (100 if device.type == "cuda" else 20)
    with tempfile.TemporaryDirectory(prefix="amnet-train-baseline-") as tmp:
        split = args.split
        if not split:  # the synthetic pool as a split: triplet_pool for run_train, attr_train for the prototypes
            split = os.path.join(tmp, "split")
            for folder in ("triplet_pool", "attr_train"):
                bl.write_gallery(split, len(blobs), 1000, labels, blobs, folder=folder)
        worker = ["--split", split, "--backbone", args.backbone, "--image-size", str(args.image_size),
                  "--feature-dim", str(args.feature_dim), "--batch-size", str(args.batch_size), "--steps", str(steps)]
        res = revision.compare(args.baseline_rev, "train", worker, max(1, args.repeats), device.type, args.threads)
    gain = revision.speedup(res)
    print(f"run_train, one epoch of {steps} steps (whole call, each revision's TrainConfig defaults), this tree vs "
          f"{args.baseline_rev} = {res['commit'][:12]}, alternating fresh processes:")
    for r, (t, b) in enumerate(zip(res["tree"], res["base"], strict=True)):
        print(f"  round {r + 1}: this tree {t['seconds']:.2f} s ({t['images_per_s']:.1f} img/s), {args.baseline_rev} "
              f"{b['seconds']:.2f} s ({b['images_per_s']:.1f} img/s); the loop's img/s as each run_train reports it: "
              f"{revision.rate(t)} / {revision.rate(b)}")
    print(f"RATIO run_train speed-up of this tree over {args.baseline_rev} = {gain:.3f} (per-round median of "
          f"{args.baseline_rev} seconds / this tree's, {len(res['tree'])} rounds) "
          f"[{args.backbone} {args.image_size} px, B={args.batch_size}, {device.type}]")
    return {**res, "speedup": gain}


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = bl.resolve_device(args.device)
    steps = args.steps or (100 if device.type == "cuda" else 20)
    b3 = 3 * args.batch_size
    print(f"train benchmark: AMNet on {args.backbone} at {args.image_size} px, Q = {args.feature_dim}, "
          f"B = {args.batch_size} triplets ({b3} images) per step, {steps} steps per timed run, precision "
          f"{'bf16' if use_bf16(args.precision, device) else 'fp32'}; {bl.describe_env(device)}")
    t0 = time.perf_counter()
    vocab, labels, blobs, images = load_pool(args)
    bench = Bench(args, vocab, labels, images, device)
    print(f"triplet pool: {len(labels)} images decoded to {tuple(images.shape)} uint8 (held on "
          f"{bench.images.device}{', pinned' if bench.images.is_pinned() else ''}), {len(bench.sampler.refs)} usable "
          f"references, {len(bench.sampler.vectors)} attribute vectors ({time.perf_counter() - t0:.1f} s); step "
          f"options {bench.options}")
    warm = max(2, steps // 10)
    bench.amnet_steps(warm)
    bench.backbone_steps(warm)
    bl.sync(device)

    real_rates, pure_rates, ratios, losses, cpu = [], [], [], [], {"real": 0.0, "pure": 0.0}
    for rep in range(args.repeats):
        order = ("pure", "real") if rep % 2 == 0 else ("real", "pure")
        pair = {}
        for what in order:
            if what == "real":
                with bl.Timed() as t:
                    losses.append(bench.amnet_steps(steps))
                    bl.sync(device)
            else:
                t = bl.timed(lambda: bench.backbone_steps(steps), device)
            pair[what] = b3 * steps / t.wall
            cpu[what] += t.cpu
        real_rates.append(pair["real"])
        pure_rates.append(pair["pure"])
        ratios.append(pair["real"] / pair["pure"])
        print(f"  pair {rep + 1} ({' then '.join(order)}): AMNet train_step {pair['real']:8.1f} img/s "
              f"({pair['real'] / 3:.1f} triplets/s), pure backbone step {pair['pure']:8.1f} img/s, "
              f"ratio {ratios[-1]:.3f}")
    real, pure, ratio = bl.median(real_rates), bl.median(pure_rates), bl.median(ratios)
    print(f"RATIO AMNet training (triplets/s x 3) / pure backbone train step = {ratio:.3f} (median of "
          f"{len(ratios)} pairs; {real:.1f} / {pure:.1f} img/s; goal >= {GOAL_RATIO}) "
          f"[{args.backbone} {args.image_size} px, B={args.batch_size}, {device.type}]")
    cpu_ms = {k: 1000 * v / (b3 * steps * args.repeats) for k, v in cpu.items()}
    print(f"  best of each: {max(real_rates):.1f} / {max(pure_rates):.1f} img/s = "
          f"{max(real_rates) / max(pure_rates):.3f}; process CPU time per image: train_step {cpu_ms['real']:.2f} ms, "
          f"pure step {cpu_ms['pure']:.2f} ms (CPU-time ratio {cpu_ms['pure'] / cpu_ms['real']:.3f})")
    result = {"backbone": args.backbone, "image_size": args.image_size, "batch_size": args.batch_size,
              "device": str(device), "precision": "bf16" if bench.bf16 else "fp32",
              "amnet_images_per_s": real, "backbone_images_per_s": pure, "ratio": ratio,
              "ratios": ratios, "best_ratio": max(real_rates) / max(pure_rates), "cpu_ms_per_image": cpu_ms,
              "mean_loss": float(np.mean(losses))}

    if not args.no_decompose:
        batches = list(bench.sampler.batches(999, steps, args.batch_size))
        parts = {
            "real train_step loop (as above)": lambda: bench.amnet_steps(steps),
            "sampler (TripletSampler.batches)": lambda: bench.sampler_only(steps),
            "data (gather + to_input + indicator)": lambda: bench.data_only(batches),
            "AMNet model + paper losses + step (random inputs)": lambda: bench.model_only(steps, batches[0]),
            "pure backbone step": lambda: bench.backbone_steps(steps),
        }
        times: dict[str, list[float]] = {k: [] for k in parts}
        for _ in range(max(1, args.repeats)):  # rounds, so load from other processes spreads over all parts
            for name, fn in parts.items():
                times[name].append(bl.timed(fn, device).wall)
        per_k = {k: 1000 * bl.median(v) / (b3 * steps) for k, v in times.items()}
        real_k = per_k["real train_step loop (as above)"]
        print(f"decomposition, seconds per 1000 images (median of {max(1, args.repeats)} rounds):")
        for name, sec in per_k.items():
            print(f"  {name:<50} {sec:8.3f} s   ({100 * sec / real_k:5.1f} % of the real loop)")
        result["decomposition_s_per_1000"] = per_k

    if device.type == "cuda" or args.gpu_paths:
        extra = {
            "pure backbone step, fp32": lambda: bench.backbone_steps(steps, autocast=False),
            "pure backbone step, bf16 autocast": lambda: bench.backbone_steps(steps, autocast=True),
            "pure backbone step, bf16 autocast + channels-last": lambda: bench.backbone_steps(
                steps, autocast=True, channels_last=True),
        }
        print(f"pure-step headroom (the real train_step runs {'bf16 autocast' if bench.bf16 else 'fp32'}, "
              f"no channels-last; the denominator above is the pure step in the same precision):")
        for name, fn in extra.items():
            fn()
            rate = b3 * steps / bl.timed(fn, device).wall
            print(f"  {name:<54} {rate:10.1f} img/s  ({rate / pure:.2f}x the denominator)")
            result[name] = rate

    if not args.no_candidates:
        variants: dict[str, dict] = {CANDIDATE: {"fused": True}}
        if device.type == "cuda" or args.gpu_paths:
            if device.type == "cuda":
                pinned = bench.host_images.pin_memory()
                variants["real loop, pool in pinned host memory"] = {"images": pinned}
            if bench.bf16:
                variants["real loop, precision fp32"] = {"bf16": False}
            elif args.gpu_paths:
                variants["real loop, bf16 autocast"] = {"bf16": True}
        for kw in variants.values():
            bench.amnet_steps(max(2, steps // 10), **kw)  # warm-up
        bl.sync(device)
        runs: dict[str, list[float]] = {"real": [], **{k: [] for k in variants}}
        jobs = [("real", {}), *variants.items()]
        for r in range(max(1, args.repeats)):  # rounds of every job, order rotated: load hits all alike
            for name, kw in jobs[r % len(jobs):] + jobs[: r % len(jobs)]:
                runs[name].append(b3 * steps / bl.timed(lambda kw=kw: bench.amnet_steps(steps, **kw), device).wall)
        real_now = bl.median(runs["real"])
        print(f"variants / candidates, median of {max(1, args.repeats)} rounds; the real loop in the same rounds: "
              f"{real_now:.1f} img/s:")
        cand = {}
        for name in variants:
            cand[name] = bl.median(runs[name])
            gain = bl.median([c / r for c, r in zip(runs[name], runs["real"], strict=True)])
            print(f"  {name:<56} {cand[name]:10.1f} img/s  x{gain:.2f} the real loop (per-round median), "
                  f"{cand[name] / pure:.3f} of the pure step")
        result.update(candidates=cand, real_in_candidate_rounds=real_now)

    if args.baseline_rev:
        result["baseline"] = baseline(args, labels, blobs, device)
    if device.type == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    bl.dump({"train": result})
    return result


if __name__ == "__main__":
    main()
