"""AMNet training rate through the real ``train_step``, as a ratio to the backbone's pure train-step rate.

Numerator: the inner loop of ``amnet.train.amnet_train.run_train`` as it runs — a real
``TripletSampler`` over a decoded triplet pool (the built-in generator's garments, or ``--split``'s
``triplet_pool``) yields batches; ``train_step`` gathers ref / pos / neg images, normalises them,
builds the indicators, runs AMNet (one backbone pass over 3B images, memory read, manipulator,
attribute branches), Eq. 4-6, backward and the SGD step — counted as 3 x B images per step.
Denominator: the same backbone alone on random tensors already on the device, total batch 3 x B,
loss-free (the mean of its output), backward and the same SGD (momentum, weight decay). Both are
measured in this run, interleaved A B B A, ratio per pair and median. Then a decomposition of the
gap (the sampler alone, the data preparation alone, the AMNet model + losses on random tensors), and
candidate changes (``PrecomputedSampler``, ``candidate_train_step``: one gather, fused normalisation,
no per-step sync; on CUDA also the decoded pool on the GPU and bf16 autocast) timed in the same
rounds as the real loop; src/ is not changed.

    .venv/bin/python benchmarks/train.py [--backbone small|alexnet] [--batch-size 32] [--steps 20]
        [--device auto|cpu|cuda] [--split DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

from amnet.config import TrainConfig  # noqa: E402
from amnet.data.synth import VOCAB  # noqa: E402
from amnet.data.tensors import MEAN, STD, decode_batch, to_input  # noqa: E402
from amnet.data.triplets import TripletSampler  # noqa: E402
from amnet.model_store import build_model  # noqa: E402
from amnet.models.backbones import build_backbone  # noqa: E402
from amnet.models.losses import amnet_loss, classification_loss, triplet_ranking_loss  # noqa: E402
from amnet.models.memory import make_indicator  # noqa: E402
from amnet.train.amnet_train import train_step  # noqa: E402
from amnet.train.loop_utils import sgd, split_decay  # noqa: E402

GOAL_RATIO = 0.6


# ------------------------------------------------------------------------------ candidate changes (not in src/)
class PrecomputedSampler(TripletSampler):
    """Candidate: TripletSampler with each attribute vector's 1- and 2-change neighbours listed once, instead
    of a scan over all vectors per sampled triplet. Same RNG calls, so the very same triplets."""

    def __init__(self, labels: np.ndarray, **kw):
        vectors = np.unique(np.asarray(labels, np.int16)[(np.asarray(labels) != -1).all(axis=1)], axis=0)
        self._index = {v.tobytes(): u for u, v in enumerate(vectors)}
        self._near: dict[int, list[np.ndarray]] = {1: [], 2: []}
        for s in range(0, len(vectors), 512):
            diff = (vectors[s : s + 512, None, :] != vectors[None, :, :]).sum(axis=2)  # (512, U)
            for row in diff:
                self._near[1].append(np.flatnonzero(row == 1))
                self._near[2].append(np.flatnonzero(row == 2))
        super().__init__(labels, **kw)

    def _targets(self, ref: np.ndarray, n: int) -> np.ndarray:
        u = self._index.get(np.asarray(ref, np.int16).tobytes())
        return super()._targets(ref, n) if u is None or n not in self._near else self._near[n][u]


SCALE = 1.0 / (255.0 * STD)
BIAS = -MEAN / STD


def candidate_train_step(model, opt, images, batch, offsets, total_values, lam, margin, device, amp=False):
    """Candidate train_step: one gather of the 3B images where the pool lives (the GPU when moved there),
    one in-place multiply-add normalisation, bf16 autocast around forward + loss only, and no .item()
    per step (returns a device tensor; the caller syncs once per epoch / log interval)."""
    b = len(batch.ref)
    rows = torch.from_numpy(np.concatenate([batch.ref, batch.pos, batch.neg])).to(images.device)
    x = images[rows].to(device, non_blocking=True).float().mul_(SCALE.to(device)).add_(BIAS.to(device))
    h = make_indicator(batch.changes, offsets, total_values).to(device, non_blocking=True)
    target = torch.from_numpy(batch.target).to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x[:b], h, x[b : 2 * b], x[2 * b :])
        la = classification_loss(out["logits"], target)
        lt = triplet_ranking_loss(out["r_manip"].float(), out["pos"].float(), out["neg"].float(), margin)
        loss = amnet_loss(la, lt, lam)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return torch.stack([loss.detach(), la.detach(), lt.detach()])


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="small", choices=["small", "alexnet", "resnet18", "resnet50"])
    p.add_argument("--image-size", type=int, default=0, help="model input px (default: 64 small, 224 others)")
    p.add_argument("--feature-dim", type=int, default=0, help="Q (default: 256 small, 4096 others)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size, help="triplets per step (B)")
    p.add_argument("--steps", type=int, default=0, help="steps per timed run (default: 20 on CPU, 100 on CUDA)")
    p.add_argument("--repeats", type=int, default=2, help="A/B pairs, order alternating")
    p.add_argument("--pool", type=int, default=4000, help="synthetic triplet-pool images")
    p.add_argument("--source-size", type=int, default=0, help="rendered JPEG px (default 128, 256 above 128 px)")
    p.add_argument("--split", help="use this split's triplet_pool instead of synthetic images")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--no-decompose", action="store_true")
    p.add_argument("--no-candidates", action="store_true", help="skip the candidate-change measurements")
    p.add_argument("--gpu-paths", action="store_true", help=argparse.SUPPRESS)  # run the CUDA-only parts anyway
    args = p.parse_args(argv)
    cfg = bl.model_config(args.backbone, args.image_size or None, args.feature_dim or None)
    args.image_size, args.feature_dim = cfg.image_size, cfg.feature_dim
    args.source_size = args.source_size or (128 if args.image_size <= 128 else 256)
    return args


def load_pool(args):
    """(vocabulary, labels (N, M), decoded uint8 images (N, 3, S, S)), decoded once as ``run_train`` does."""
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
    return vocab, labels, decode_batch(blobs, args.image_size)


class Bench:
    """The real AMNet loop and the pure backbone step, built once, timed alternately."""

    def __init__(self, args, vocab, labels: np.ndarray, images: torch.Tensor, device: torch.device):
        self.args, self.device, self.images, self.vocab = args, device, images, vocab
        tc = TrainConfig(batch_size=args.batch_size)
        self.tc = tc
        self.sampler = TripletSampler(labels, seed=tc.seed, two_change_fraction=tc.two_change_fraction,
                                      hard_negative_fraction=tc.hard_negative_fraction)
        cfg = bl.model_config(args.backbone, args.image_size, args.feature_dim)
        torch.manual_seed(0)
        self.model = build_model("amnet", tc.variant, cfg, vocab).to(device).train()  # memory: random rows
        self.opt = sgd(*split_decay(self.model), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
        self.backbone = build_backbone(cfg).to(device).train()
        self.bopt = sgd(*split_decay(self.backbone), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
        n = 3 * args.batch_size
        self.x = torch.randn(n, 3, args.image_size, args.image_size, device=device)  # (3B, 3, S, S)
        self.epoch = 0

    # numerator: run_train's inner loop
    def amnet_steps(self, steps: int, autocast: bool = False) -> list[dict]:
        self.epoch += 1
        rows = []
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
            for batch in self.sampler.batches(self.epoch, steps, self.args.batch_size):
                rows.append(train_step(self.model, self.opt, self.images, batch, self.vocab.offsets,
                                       self.vocab.total_values, self.tc.effective_lam, self.tc.margin, self.device))
        return rows

    # candidates: what the changes proposed in docs/performance.md give (same model, same batches)
    def candidate_steps(self, steps: int, *, sampler: TripletSampler | None = None, images: torch.Tensor | None = None,
                        step_fn=None, autocast: bool = False) -> None:
        self.epoch += 1
        sampler = sampler or self.sampler
        images = self.images if images is None else images
        rows = []
        for batch in sampler.batches(self.epoch, steps, self.args.batch_size):
            if step_fn is None:
                rows.append(train_step(self.model, self.opt, images, batch, self.vocab.offsets, self.vocab.total_values,
                                       self.tc.effective_lam, self.tc.margin, self.device))
            else:
                rows.append(step_fn(self.model, self.opt, images, batch, self.vocab.offsets, self.vocab.total_values,
                                    self.tc.effective_lam, self.tc.margin, self.device, amp=autocast))
        if step_fn is not None and rows:
            torch.stack(rows).cpu()  # the one sync

    # denominator: the backbone alone, same total batch, loss-free
    def backbone_steps(self, steps: int, autocast: bool = False, channels_last: bool = False) -> None:
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
        for batch in batches:
            for i in (batch.ref, batch.pos, batch.neg):
                to_input(self.images[torch.from_numpy(i)], self.device)
            make_indicator(batch.changes, self.vocab.offsets, self.vocab.total_values).to(self.device)
            torch.from_numpy(batch.target).to(self.device)

    def model_only(self, steps: int, batch) -> None:
        b = self.args.batch_size
        ref, pos, neg = self.x[:b], self.x[b : 2 * b], self.x[2 * b :]
        h = make_indicator(batch.changes, self.vocab.offsets, self.vocab.total_values).to(self.device)
        target = torch.from_numpy(batch.target).to(self.device)
        for _ in range(steps):
            out = self.model(ref, h, pos, neg)
            la = classification_loss(out["logits"], target)
            lt = triplet_ranking_loss(out["r_manip"], out["pos"], out["neg"], self.tc.margin)
            loss = amnet_loss(la, lt, self.tc.effective_lam)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = bl.resolve_device(args.device)
    steps = args.steps or (100 if device.type == "cuda" else 20)
    b3 = 3 * args.batch_size
    print(f"train benchmark: AMNet on {args.backbone} at {args.image_size} px, Q = {args.feature_dim}, "
          f"B = {args.batch_size} triplets ({b3} images) per step, {steps} steps per timed run; "
          f"{bl.describe_env(device)}")
    t0 = time.perf_counter()
    vocab, labels, images = load_pool(args)
    bench = Bench(args, vocab, labels, images, device)
    print(f"triplet pool: {len(labels)} images decoded to {tuple(images.shape)} uint8, "
          f"{len(bench.sampler.refs)} usable references, {len(bench.sampler.vectors)} attribute vectors "
          f"({time.perf_counter() - t0:.1f} s)")
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
                    rows = bench.amnet_steps(steps)
                    bl.sync(device)
                losses.append(float(np.mean([r["loss"] for r in rows])))
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
              "device": str(device), "amnet_images_per_s": real, "backbone_images_per_s": pure, "ratio": ratio,
              "ratios": ratios, "best_ratio": max(real_rates) / max(pure_rates), "cpu_ms_per_image": cpu_ms,
              "mean_loss": float(np.mean(losses))}

    if not args.no_decompose:
        batches = list(bench.sampler.batches(999, steps, args.batch_size))
        parts = {
            "real train_step loop (as above)": lambda: bench.amnet_steps(steps),
            "sampler (TripletSampler.batches)": lambda: bench.sampler_only(steps),
            "data (gather + to_input + indicator)": lambda: bench.data_only(batches),
            "AMNet model + losses + step (random inputs)": lambda: bench.model_only(steps, batches[0]),
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
            print(f"  {name:<46} {sec:8.3f} s   ({100 * sec / real_k:5.1f} % of the real loop)")
        result["decomposition_s_per_1000"] = per_k

    if device.type == "cuda" or args.gpu_paths:
        extra = {
            "pure backbone step, bf16 autocast": lambda: bench.backbone_steps(steps, autocast=True),
            "pure backbone step, bf16 autocast + channels-last": lambda: bench.backbone_steps(
                steps, autocast=True, channels_last=True),
        }
        print("GPU headroom of the pure step (the real train_step has no autocast / channels-last):")
        for name, fn in extra.items():
            fn()
            rate = b3 * steps / bl.timed(fn, device).wall
            print(f"  {name:<54} {rate:10.1f} img/s  ({rate / pure:.2f}x the fp32 pure step)")
            result[name] = rate

    if not args.no_candidates:
        fast = PrecomputedSampler(labels, seed=bench.tc.seed, two_change_fraction=bench.tc.two_change_fraction,
                                  hard_negative_fraction=bench.tc.hard_negative_fraction)
        variants = {"precomputed sampler neighbours": {"sampler": fast},
                    "+ one gather, fused normalise, no per-step sync": {"sampler": fast,
                                                                        "step_fn": candidate_train_step}}
        if device.type == "cuda" or args.gpu_paths:
            on_dev = images.to(device)
            variants.update({
                "decoded pool on the GPU (real train_step)": {"images": on_dev},
                "pool on GPU + sampler + one gather + no sync": {"images": on_dev, "sampler": fast,
                                                                 "step_fn": candidate_train_step},
                "... + bf16 autocast (forward + loss)": {"images": on_dev, "sampler": fast,
                                                         "step_fn": candidate_train_step, "autocast": True},
            })
        for kw in variants.values():
            bench.candidate_steps(max(2, steps // 10), **kw)  # warm-up
        bl.sync(device)
        runs: dict[str, list[float]] = {"real": [], **{k: [] for k in variants}}
        for _ in range(max(1, args.repeats)):  # rounds: real, then each candidate, so load hits all alike
            runs["real"].append(b3 * steps / bl.timed(lambda: bench.amnet_steps(steps), device).wall)
            for name, kw in variants.items():
                runs[name].append(b3 * steps / bl.timed(lambda kw=kw: bench.candidate_steps(steps, **kw),
                                                        device).wall)
        real_now = bl.median(runs["real"])
        print(f"candidate changes to run_train / train_step (benchmarks/train.py, not in src/), median of "
              f"{max(1, args.repeats)} rounds; the real loop in the same rounds: {real_now:.1f} img/s:")
        cand = {}
        for name in variants:
            cand[name] = bl.median(runs[name])
            gain = bl.median([c / r for c, r in zip(runs[name], runs["real"], strict=True)])
            print(f"  {name:<52} {cand[name]:10.1f} img/s  x{gain:.2f} the real loop (per-round median), "
                  f"{cand[name] / pure:.3f} of the pure step")
        result.update(candidates=cand, real_before_candidates=real_now)
    if device.type == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    bl.dump({"train": result})
    return result


if __name__ == "__main__":
    main()
