"""Gallery featurization rate through the real code path, as a ratio to the pure model forward rate.

End to end = ``amnet.retrieval.featurize.run_featurize`` on gallery Parquet shards (read, JPEG decode + resize,
normalise, forward, fp16 features, Parquet write, one shard at a time), with an untrained model
artifact written by the real ``save_model`` (random weights: they do not change the rate). The
denominator is the same model's forward on random tensors already on the device, with exactly the
batch shapes ``featurize_frame`` sees (full batches plus each shard's remainder). Both are measured in
this run, interleaved A B B A, so load from other processes hits both; the ratio is printed per pair
and overall. A per-stage breakdown (an instrumented copy of ``featurize_frame``'s loop, calling the
same functions) says what bounds the rate. The real path decodes one batch ahead of the forward with
``decode_workers`` threads (on CUDA: pinned memory, bf16 autocast and channels-last); the pure forward
runs in the same precision and memory format as the real path, so the ratio compares like with like.
In the same rounds as the real path, end to end: ``run_featurize`` with prefetch off, 2 decode threads
and fp32; on CUDA in fp32 and with the other decoder (``decoder="torchvision"``: decode_jpeg on the
model's device, nvJPEG on CUDA; not the default); and the candidate change not in src/ (the real
``run_featurize`` with ``to_input`` swapped for one in-place multiply-add, ``benchlib.fused_to_input``).
Peak resident memory is measured in a fresh process per gallery size (same shard size): streaming
means the peak does not grow with the gallery.

``--baseline-rev REV`` also times ``load_model`` and ``run_featurize`` (the whole call) at this tree and
at git revision REV of this repository, in alternating fresh processes on the same gallery
(``benchmarks/revision.py``), and prints this tree's speed-up over REV.

The gallery is the built-in synthetic generator's garments (``--unique`` distinct images rendered at
``--source-size`` px, cycled to ``--num-images`` rows with their own ids), in shards of the split's
default size; ``--split DIR`` uses the gallery of a real ``amnet data split`` output instead.

    .venv/bin/python benchmarks/featurize.py [--backbone small|alexnet] [--image-size S] [--num-images N]
        [--device auto|cpu|cuda] [--precision auto|fp32|bf16] [--decode-workers N] [--decoder pil|torchvision]
        [--memory-sizes 5000,20000] [--split DIR] [--baseline-rev REV]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402
import revision  # noqa: E402

import amnet.retrieval.featurize  # noqa: E402
from amnet import storage  # noqa: E402
from amnet.config import FeaturizeConfig, SplitConfig  # noqa: E402
from amnet.data import shards  # noqa: E402
from amnet.data.tensors import decode_batch, decode_batch_torchvision, to_input  # noqa: E402
from amnet.runtime import decode_workers, use_bf16  # noqa: E402

GOAL_CPU_RATIO = 0.7
GOAL_GPU_ALEXNET = 10_000.0  # img/s end to end, AlexNet at 224 px on one H100
GPU_OPTIMISATIONS = {  # the GPU path's optimisations -> markers of each in the featurization source
    "bf16 autocast": ("autocast",),
    "channels-last": ("channels_last",),
    "pinned host memory": ("pin_memory",),
    "decode overlapped with forward (loader workers / prefetch)": ("DataLoader", "prefetch"),
    "decode threads from the CPUs available (not fixed at 2)": ("decode_workers(",),
    "GPU JPEG decode (torchvision.io.decode_jpeg on the device; FeaturizeConfig.decoder)": ("decode_jpeg",),
    "fused normalisation (one in-place multiply-add)": (".mul_(", "addcmul"),
    "model load without a throw-away weight init (meta device / skip_init)": ('device("meta")', "skip_init"),
}
PLAIN = "run_featurize, prefetch off, 2 decode threads, fp32, decoder pil"
CANDIDATE = "real path + fused normalise (candidate)"


def real_workers(cfg: FeaturizeConfig, device: torch.device) -> int:
    """The decode threads run_featurize uses for ``cfg`` on ``device`` (fewer beside a CPU model)."""
    return decode_workers(cfg.decode_workers, beside_cpu_model=device.type == "cpu")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="small", choices=["small", "alexnet", "resnet18", "resnet50"])
    p.add_argument("--image-size", type=int, default=0, help="model input px (default: 64 small, 224 others)")
    p.add_argument("--feature-dim", type=int, default=0, help="Q (default: 256 small, 4096 others)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--num-images", type=int, default=0,
                   help="gallery rows for the rate (default: small 4000; others 600 on CPU, 20000 on CUDA)")
    p.add_argument("--shard-size", type=int, default=SplitConfig().shard_size)
    p.add_argument("--batch-size", type=int, default=FeaturizeConfig().batch_size)
    p.add_argument("--precision", default=FeaturizeConfig().precision, choices=["auto", "fp32", "bf16"],
                   help="FeaturizeConfig.precision of the real path (auto: bf16 on CUDA, fp32 on the CPU)")
    p.add_argument("--decode-workers", type=int, default=FeaturizeConfig().decode_workers,
                   help="FeaturizeConfig.decode_workers of the real path (0 = auto: amnet.runtime.decode_workers)")
    p.add_argument("--decoder", default=FeaturizeConfig().decoder, choices=["pil", "torchvision"],
                   help="FeaturizeConfig.decoder of the real path (torchvision: decode_jpeg on the model's device)")
    p.add_argument("--source-size", type=int, default=0,
                   help="rendered JPEG px (default: 128 for inputs <= 128 px, else 256)")
    p.add_argument("--unique", type=int, default=1000, help="distinct rendered images, cycled")
    p.add_argument("--repeats", type=int, default=2, help="A/B pairs (forward, end to end), order alternating")
    p.add_argument("--memory-sizes", default="5000,20000",
                   help="gallery sizes for the peak-memory check, comma separated ('' = skip)")
    p.add_argument("--no-breakdown", action="store_true")
    p.add_argument("--no-candidates", action="store_true", help="skip the variant and candidate-change measurements")
    p.add_argument("--baseline-rev", default="", metavar="REV",
                   help="also time run_featurize at this tree and at git revision REV, alternately (fresh processes)")
    p.add_argument("--split", help="use this split's gallery shards instead of synthetic ones (rate only)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--workdir", help="keep shards and models here (default: a temporary folder)")
    p.add_argument("--gpu-paths", action="store_true", help=argparse.SUPPRESS)  # run the CUDA-only parts anyway
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cfg = bl.model_config(args.backbone, args.image_size or None, args.feature_dim or None)
    args.image_size, args.feature_dim = cfg.image_size, cfg.feature_dim
    args.source_size = args.source_size or (128 if args.image_size <= 128 else 256)
    return args


# ----------------------------------------------------------------------------------------- measurements
def real_settings(cfg: FeaturizeConfig, device: torch.device) -> tuple[bool, bool]:
    """(bf16 autocast, channels-last) as ``amnet.retrieval.featurize.featurize_frame`` / ``run_featurize``
    decide them (``amnet.runtime.InferenceMode``)."""
    from amnet.runtime import InferenceMode

    mode = InferenceMode.choose(device, cfg.precision)
    return mode.bf16, mode.channels_last


def forward_pass(loaded, sizes: list[int], device: torch.device, cfg: FeaturizeConfig) -> bl.Timed:
    """The model alone over the batch shapes of one gallery pass (random inputs already on ``device``), in
    the precision and memory format the real path uses for ``cfg`` on ``device``."""
    size = loaded.model_config.image_size
    bf16, channels_last = real_settings(cfg, device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    loaded.model.to(memory_format=fmt)
    inputs = {b: torch.randn(b, 3, size, size, device=device).contiguous(memory_format=fmt) for b in set(sizes)}

    def run() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):  # as featurize_frame
            for b in sizes:
                loaded.model.represent(inputs[b])

    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loaded.model.represent(inputs[max(inputs)])  # warm-up (allocator, cudnn autotune, thread pool)
    bl.sync(device)
    return bl.timed(run, device)


def end_to_end(split: str, model: str, out: str, cfg: FeaturizeConfig, device: torch.device) -> tuple[bl.Timed, dict]:
    from amnet.retrieval.featurize import run_featurize

    result = {}

    def run() -> None:
        result.update(run_featurize(split, model, out, cfg, progress=False))

    t = bl.timed(run, device)
    return t, result


def plain_config(cfg: FeaturizeConfig) -> FeaturizeConfig:
    """``cfg`` without the speed options: no prefetch, 2 decode threads, fp32, the PIL decoder (on CUDA the
    copy is still pinned and channels-last)."""
    return FeaturizeConfig(batch_size=cfg.batch_size, decode_workers=2, prefetch=False, precision="fp32",
                           decoder="pil")


def breakdown(split: str, model: str, cfg: FeaturizeConfig, device: torch.device, out: str) -> dict[str, float]:
    """Seconds per stage of ``run_featurize``: model load, then ``featurize_frame``'s work + the shard read /
    write around it, timed one after the other (same functions, same settings; the real path overlaps
    decode with the forward, so its wall time is less than this sum)."""
    from amnet.model_store import load_model

    batch_size = cfg.batch_size
    bf16, channels_last = real_settings(cfg, device)
    workers = real_workers(cfg, device)
    stages = dict.fromkeys(("model load", "read parquet", "decode+resize", "to_input", "forward", "fp16+frame",
                            "write parquet"), 0.0)
    t = time.perf_counter()
    loaded = load_model(model, device)
    if channels_last:
        loaded.model.to(memory_format=torch.channels_last)
    bl.sync(device)
    stages["model load"] = time.perf_counter() - t
    size = loaded.model_config.image_size
    count = 0
    for uri in shards.list_shards(storage.join(split, "gallery")):
        t0 = time.perf_counter()
        df = shards.read_table(uri)
        blobs = list(df["image_bytes"])
        t1 = time.perf_counter()
        stages["read parquet"] += t1 - t0
        feats = []
        for i in range(0, len(blobs), batch_size):
            a = time.perf_counter()
            if cfg.decoder == "torchvision":
                u8 = decode_batch_torchvision(blobs[i : i + batch_size], size, device)
            else:
                u8 = decode_batch(blobs[i : i + batch_size], size, workers)
                if device.type == "cuda":
                    u8 = u8.pin_memory()
            bl.sync(device)
            b = time.perf_counter()
            x = to_input(u8, device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            bl.sync(device)
            c = time.perf_counter()
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                r = loaded.model.represent(x)
            bl.sync(device)
            d = time.perf_counter()
            feats.append(r.float().cpu().numpy().astype(np.float16))
            e = time.perf_counter()
            stages["decode+resize"] += b - a
            stages["to_input"] += c - b
            stages["forward"] += d - c
            stages["fp16+frame"] += e - d
        a = time.perf_counter()
        matrix = np.concatenate(feats)
        frame = pd.DataFrame({"image_id": df["image_id"].to_numpy(), "labels": list(df["labels"]),
                              "feature": [row.tobytes() for row in matrix]})
        b = time.perf_counter()
        shards.write_table(os.path.join(out, os.path.basename(uri)), frame)
        c = time.perf_counter()
        stages["fp16+frame"] += b - a
        stages["write parquet"] += c - b
        count += len(df)
    stages["images"] = count
    return stages


def model_load_time(model_dir: str, device: torch.device, rounds: int = 3) -> float:
    """Median seconds of ``load_model`` over ``rounds`` loads."""
    from amnet.model_store import load_model

    return bl.median([bl.timed(lambda: load_model(model_dir, device), device).wall for _ in range(rounds)])


def decode_scaling(blobs: list[bytes], size: int) -> dict[int, float]:
    """decode_batch images/s with 1, 2, 4 threads and ``decode_workers()`` (what the real path uses)."""
    rates = {}
    for workers in sorted({1, 2, 4, decode_workers()}):
        if workers > (os.cpu_count() or 1) and workers > 2:
            continue
        decode_batch(blobs[:64], size, workers=workers)
        t = bl.timed(lambda w=workers: decode_batch(blobs, size, workers=w))
        rates[workers] = len(blobs) / t.wall
    return rates


def gpu_headroom(loaded, blobs: list[bytes], batch: int, device: torch.device) -> dict[str, float]:
    """Pure forward rates fp32 / bf16 / bf16 + channels-last (the real CUDA path uses the last), and the rate
    of ``decode_batch_torchvision`` on ``device`` (``FeaturizeConfig.decoder="torchvision"``)."""
    import copy

    size = loaded.model_config.image_size
    out: dict[str, float] = {}
    iters = 20 if device.type == "cuda" else 2
    x = torch.randn(batch, 3, size, size, device=device)
    plain = copy.deepcopy(loaded.model).to(memory_format=torch.contiguous_format)
    cl = copy.deepcopy(loaded.model).to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    variants = (("forward fp32", plain, x, False), ("forward bf16 autocast", plain, x, True),
                ("forward bf16 autocast + channels-last", cl, xc, True))
    for name, m, inp, amp in variants:
        def run(m=m, inp=inp, amp=amp) -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                for _ in range(iters):
                    m.represent(inp)
        run()
        bl.sync(device)
        out[name] = iters * batch / bl.timed(run, device).wall
    del plain, cl
    chunk = blobs[:batch]
    try:
        decode_batch_torchvision(chunk, size, device)
        bl.sync(device)
        reps = iters // 4 + 1
        t = bl.timed(lambda: [decode_batch_torchvision(chunk, size, device) for _ in range(reps)], device)
        out[f"{device.type} decode_batch_torchvision to {size} px"] = reps * len(chunk) / t.wall
    except Exception as exc:  # decode_jpeg on cuda needs torchvision built with nvjpeg
        print(f"  decode_batch_torchvision on {device.type} unavailable: {type(exc).__name__}: {exc}")
    return out

def candidates(split: str, model: str, cfg: FeaturizeConfig, device: torch.device, out: str,
               rounds: int, gpu_paths: bool = False) -> dict[str, list[float]]:
    """End-to-end img/s, in ``rounds`` rounds (load from other processes hits all alike), of the real
    ``run_featurize``; of ``run_featurize`` without the speed options, (CUDA) in fp32, and (CUDA, or
    ``gpu_paths``) with the other decoder; and of the real ``run_featurize`` with ``to_input`` swapped
    for ``benchlib.fused_to_input`` (the candidate)."""
    from dataclasses import replace

    configs = {PLAIN: plain_config(cfg)}
    if device.type == "cuda" and use_bf16(cfg.precision, device):
        configs["run_featurize, precision fp32 (the rest as the real path)"] = replace(cfg, precision="fp32")
    if device.type == "cuda" or gpu_paths:
        other = "pil" if cfg.decoder == "torchvision" else "torchvision"
        configs[f"run_featurize, decoder={other} (the rest as the real path)"] = replace(cfg, decoder=other)
    runs: dict[str, list[float]] = {"real": [], **{k: [] for k in configs}, CANDIDATE: []}
    failed: set[str] = set()

    def job(name: str, tag: int, config: FeaturizeConfig, fused: bool, r: int) -> None:
        with bl.swapped(amnet.retrieval.featurize, "to_input", bl.fused_to_input if fused else to_input):
            t, res = end_to_end(split, model, os.path.join(out, f"job{tag}-{r}"), config, device)
        runs[name].append(res["count"] / t.wall)

    jobs = list(enumerate([("real", cfg, False), *((name, other, False) for name, other in configs.items()),
                           (CANDIDATE, cfg, True)]))
    for r in range(rounds):  # each round runs every job once, the order rotated so no job always goes first
        for tag, (name, config, fused) in jobs[r % len(jobs):] + jobs[: r % len(jobs)]:
            if name in failed:
                continue
            try:
                job(name, tag, config, fused, r)
            except Exception as exc:  # e.g. decode_jpeg on cuda needs torchvision built with nvjpeg
                if name == "real":
                    raise
                print(f"  {name}: failed ({type(exc).__name__}: {str(exc)[:200]})")
                failed.add(name)
    return {k: v for k, v in runs.items() if v and k not in failed}


def optimisations_present() -> dict[str, bool]:
    import amnet.data.tensors
    import amnet.model_store
    import amnet.retrieval.featurize
    import amnet.runtime

    modules = (amnet.retrieval.featurize, amnet.runtime, amnet.data.tensors, amnet.model_store)
    source = "".join(inspect.getsource(m) for m in modules)
    return {name: any(m in source for m in markers) for name, markers in GPU_OPTIMISATIONS.items()}


def memory_child(args: argparse.Namespace) -> None:
    """One featurization in a fresh process: resident memory before, peak during (and tracemalloc's peak)."""
    import tracemalloc

    from amnet.model_store import load_model
    from amnet.retrieval.featurize import run_featurize

    device = bl.resolve_device(args.device)
    bl.use_device_in_stages(device)
    load_model(args.model, device)  # import + model weights are part of the baseline, not of the gallery
    import gc

    gc.collect()
    base = bl.rss_mb()
    tracemalloc.start()
    with tempfile.TemporaryDirectory(prefix="amnet-featmem-") as out:
        start = time.perf_counter()
        res = run_featurize(args.split, args.model, out, feat_config(args), progress=False)
        seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({"count": res["count"], "baseline_rss_mb": base, "peak_rss_mb": bl.peak_rss_mb(),
                      "tracemalloc_peak_mb": traced_peak / 2**20, "seconds": seconds,
                      "gpu_peak_mb": (torch.cuda.max_memory_allocated() / 2**20) if device.type == "cuda" else 0.0}))


# ------------------------------------------------------------------------------------------------- main
def feat_config(args: argparse.Namespace) -> FeaturizeConfig:
    cfg = FeaturizeConfig(batch_size=args.batch_size, decode_workers=args.decode_workers, precision=args.precision,
                          decoder=args.decoder)
    cfg.validate()
    return cfg


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return {}
    device = bl.resolve_device(args.device)
    bl.use_device_in_stages(device)
    if not args.num_images:
        args.num_images = 4000 if args.backbone == "small" else (20000 if device.type == "cuda" else 600)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False  # as the pipeline runs (it does not set it)
    cfg = feat_config(args)
    bf16, channels_last = real_settings(cfg, device)
    print(f"featurize benchmark: {args.backbone} at {args.image_size} px, Q = {args.feature_dim}, "
          f"batch {args.batch_size}, shards of {args.shard_size}; real path: decoder {cfg.decoder}, prefetch "
          f"{cfg.prefetch}, {real_workers(cfg, device)} decode threads, {'bf16' if bf16 else 'fp32'}"
          f"{', channels-last' if channels_last else ''}; {bl.describe_env(device)}")
    result: dict = {"backbone": args.backbone, "image_size": args.image_size, "feature_dim": args.feature_dim,
                    "batch_size": args.batch_size, "device": str(device), "precision": "bf16" if bf16 else "fp32",
                    "decode_workers": real_workers(cfg, device), "decoder": cfg.decoder}

    with tempfile.TemporaryDirectory(prefix="amnet-featbench-") as tmp:
        root = args.workdir or tmp
        model = bl.save_random_model(os.path.join(root, "model"), bl.model_config(
            args.backbone, args.image_size, args.feature_dim))
        t0 = time.perf_counter()
        labels, blobs = bl.render_pool(min(args.unique, args.num_images), args.source_size)
        if args.split:
            split = args.split
            args.num_images = sum(len(shards.read_table(u, ["image_id"]))
                                  for u in shards.list_shards(storage.join(split, "gallery")))
        else:
            split = bl.write_gallery(os.path.join(root, f"gallery-{args.num_images}"), args.num_images,
                                     args.shard_size, labels, blobs)
        print(f"gallery: {args.num_images} images ({len(blobs)} distinct, {args.source_size} px JPEG, "
              f"mean {np.mean([len(b) for b in blobs]) / 1024:.1f} KiB) ready in {time.perf_counter() - t0:.1f} s")

        from amnet.model_store import load_model

        loaded = load_model(model, device)
        uris = shards.list_shards(storage.join(split, "gallery"))
        first = uris[0]
        shard_rows = [len(shards.read_table(u, ["image_id"])) for u in uris]
        sizes = [min(args.batch_size, n - i) for n in shard_rows for i in range(0, n, args.batch_size)]
        # warm-up of the real path on one small shard's worth (thread pools, allocator)
        from amnet.retrieval.featurize import featurize_frame

        if channels_last:  # as run_featurize
            loaded.model.to(memory_format=torch.channels_last)
        featurize_frame(loaded, shards.read_table(first).head(args.batch_size), args.batch_size, device, cfg)

        fwd_rates, e2e_rates, ratios, cpu = [], [], [], {"forward": 0.0, "e2e": 0.0}
        for rep in range(args.repeats):
            order = ("fwd", "e2e") if rep % 2 == 0 else ("e2e", "fwd")
            pair = {}
            for what in order:
                if what == "fwd":
                    t = forward_pass(loaded, sizes, device, cfg)
                    cpu["forward"] += t.cpu
                else:
                    t, res = end_to_end(split, model, os.path.join(root, f"features-{rep}"), cfg, device)
                    assert res["count"] == args.num_images, res
                    cpu["e2e"] += t.cpu
                pair[what] = args.num_images / t.wall
            fwd_rates.append(pair["fwd"])
            e2e_rates.append(pair["e2e"])
            ratios.append(pair["e2e"] / pair["fwd"])
            print(f"  pair {rep + 1} ({' then '.join(order)}): end to end {pair['e2e']:8.1f} img/s, "
                  f"pure forward {pair['fwd']:8.1f} img/s, ratio {ratios[-1]:.3f}")
        e2e, fwd = bl.median(e2e_rates), bl.median(fwd_rates)
        cpu_ms = {k: 1000 * v / (args.num_images * args.repeats) for k, v in cpu.items()}
        print(f"RATIO featurize end-to-end / pure forward = {bl.median(ratios):.3f} (median of {len(ratios)} "
              f"pairs; {e2e:.1f} / {fwd:.1f} img/s; goal >= {GOAL_CPU_RATIO} on the CPU) "
              f"[{args.backbone} {args.image_size} px, {device.type}]")
        print(f"  best of each: {max(e2e_rates):.1f} / {max(fwd_rates):.1f} img/s = "
              f"{max(e2e_rates) / max(fwd_rates):.3f}; process CPU time per image: end to end {cpu_ms['e2e']:.2f} ms, "
              f"pure forward {cpu_ms['forward']:.2f} ms (CPU-time ratio {cpu_ms['forward'] / cpu_ms['e2e']:.3f})")
        result.update(e2e_images_per_s=e2e, forward_images_per_s=fwd, ratio=bl.median(ratios), ratios=ratios,
                      best_ratio=max(e2e_rates) / max(fwd_rates),
                      cpu_ms_per_image=cpu_ms, num_images=args.num_images)
        if device.type == "cuda" and args.backbone == "alexnet":
            print(f"  AlexNet end to end / {GOAL_GPU_ALEXNET:.0f} img/s goal on one H100 = "
                  f"{e2e / GOAL_GPU_ALEXNET:.3f}")

        if not args.no_breakdown:
            stages = breakdown(split, model, cfg, device, os.path.join(root, "features-breakdown"))
            n = stages.pop("images")
            total = sum(stages.values())
            print(f"stage breakdown (instrumented copy of run_featurize's work, one stage after the other, no "
                  f"prefetch overlap; {n} images, {n / total:.1f} img/s in all):")
            for name, sec in stages.items():
                print(f"  {name:<14} {1000 * sec / n * 1000:8.1f} ms per 1000 images  {100 * sec / total:5.1f} %")
            dec = decode_scaling(blobs[: min(len(blobs), 512)], args.image_size)
            print("  decode_batch alone: " + ", ".join(f"{w} thread{'s' * (w > 1)} {r:.0f} img/s"
                                                       for w, r in dec.items())
                  + f" (the real path uses decode_workers() = {real_workers(cfg, device)})")
            load = model_load_time(model, device)
            print(f"  model load alone: load_model {1000 * load:.0f} ms (median of 3)")
            result.update(stages_ms_per_1000={k: 1e6 * v / n for k, v in stages.items()}, decode_rates=dec,
                          model_load_s=load)

        if device.type == "cuda" or args.gpu_paths:
            present = optimisations_present()
            print("optimisations in the featurization path (by source inspection of amnet.retrieval.featurize, "
                  "amnet.runtime, amnet.data.tensors, amnet.model_store):")
            for name, ok in present.items():
                print(f"  {'present' if ok else 'ABSENT '}  {name}")
            head = gpu_headroom(loaded, blobs, args.batch_size, device)
            for name, rate in head.items():
                print(f"  {name:<44} {rate:10.1f} img/s  ({rate / e2e:.1f}x the end-to-end rate)")
            result.update(gpu_optimisations=present, gpu_headroom=head)

        if not args.no_candidates:
            runs = candidates(split, model, cfg, device, os.path.join(root, "features-cand"),
                              max(1, args.repeats), args.gpu_paths)
            real_now = bl.median(runs["real"])
            print(f"variants / candidates, end to end, median of {max(1, args.repeats)} rounds; the real "
                  f"run_featurize in the same rounds: {real_now:.1f} img/s:")
            cand = {}
            for name, rates in runs.items():
                if name == "real":
                    continue
                cand[name] = bl.median(rates)
                gain = bl.median([c / r for c, r in zip(rates, runs["real"], strict=True)])
                print(f"  {name:<70} {cand[name]:10.1f} img/s  x{gain:.2f} the real path (per-round median), "
                      f"{cand[name] / fwd:.3f} of the pure forward")
            result.update(candidates=cand, real_in_candidate_rounds=real_now)

        if args.baseline_rev:
            result["baseline"] = baseline(args, split, device)

        if args.memory_sizes.strip() and not args.split:
            result["memory"] = memory_check(args, root, model, labels, blobs, device)
    bl.dump({"featurize": result})
    return result


def baseline(args, split: str, device: torch.device) -> dict:
    """``load_model`` and ``run_featurize`` at this tree / at ``--baseline-rev``, alternating fresh processes
    (benchmarks/revision.py)."""
    worker = ["--split", split, "--backbone", args.backbone, "--image-size", str(args.image_size),
              "--feature-dim", str(args.feature_dim), "--batch-size", str(args.batch_size)]
    res = revision.compare(args.baseline_rev, "featurize", worker, max(1, args.repeats), device.type, args.threads)
    rev = args.baseline_rev
    print(f"run_featurize (whole call, each revision's FeaturizeConfig defaults but the batch size), this tree vs "
          f"{rev} = {res['commit'][:12]}, alternating fresh processes:")
    for r, (t, b) in enumerate(zip(res["tree"], res["base"], strict=True)):
        print(f"  round {r + 1}: this tree {t['seconds']:.2f} s ({t['images_per_s']:.1f} img/s), {rev} "
              f"{b['seconds']:.2f} s ({b['images_per_s']:.1f} img/s); load_model {1000 * t['load_model_s']:.0f} / "
              f"{1000 * b['load_model_s']:.0f} ms")
    gain, load_gain = revision.speedup(res), revision.speedup(res, "load_model_s")
    print(f"RATIO run_featurize speed-up of this tree over {rev} = {gain:.3f}; load_model {load_gain:.3f} "
          f"(per-round medians of {rev} seconds / this tree's, {len(res['tree'])} rounds) "
          f"[{args.backbone} {args.image_size} px, {device.type}]")
    return {**res, "speedup": gain, "load_model_speedup": load_gain}


def memory_check(args, root: str, model: str, labels, blobs, device: torch.device) -> list[dict]:
    sizes = [int(s) for s in args.memory_sizes.split(",") if s.strip()]
    print(f"peak memory, fresh process per gallery size, shards of {args.shard_size}, batch {args.batch_size}:")
    rows = []
    for n in sizes:
        split = bl.write_gallery(os.path.join(root, f"memgallery-{n}"), n, args.shard_size, labels, blobs)
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", "--split", split, "--model", model,
               "--device", str(device.type), "--batch-size", str(args.batch_size), "--backbone", args.backbone,
               "--image-size", str(args.image_size), "--feature-dim", str(args.feature_dim),
               "--precision", args.precision, "--decode-workers", str(args.decode_workers), "--decoder", args.decoder]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"memory child failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["growth_mb"] = row["peak_rss_mb"] - row["baseline_rss_mb"]
        rows.append(row)
        print(f"  {n:>8} images: RSS {row['baseline_rss_mb']:7.1f} MB before, peak {row['peak_rss_mb']:7.1f} MB "
              f"(+{row['growth_mb']:.1f} MB); tracemalloc peak {row['tracemalloc_peak_mb']:.1f} MB; "
              f"{row['count'] / row['seconds']:.0f} img/s" +
              (f"; GPU peak {row['gpu_peak_mb']:.0f} MB" if row["gpu_peak_mb"] else ""))
        shutil.rmtree(split, ignore_errors=True)
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"MEMORY peak RSS {a['peak_rss_mb']:.0f} MB at {a['count']} images -> {b['peak_rss_mb']:.0f} MB at "
              f"{b['count']} images ({b['count'] / a['count']:.0f}x the images, peak x"
              f"{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}; growth over the loaded model "
              f"{a['growth_mb']:.0f} -> {b['growth_mb']:.0f} MB)")
    return rows


if __name__ == "__main__":
    main()
