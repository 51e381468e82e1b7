"""The GPU check: the real pipeline stages on CUDA, then the rate ratios of featurize.py and train.py.

Meant for a machine lent for a few minutes with PyTorch, torchvision, numpy, pandas, pyarrow and
PIL but no kfp / mlflow / boto3 / faiss and no network: those four are blocked at import time here
too, so a CPU run of ``--smoke`` proves the GPU run cannot trip over them. Run it through
``benchmarks/gpu_run.sh`` (sets PYTHONPATH=src:. instead of installing the package).

1. stages, as the pipeline calls them (torch threads matched first, as ``run_tracked`` does): render the
   built-in dataset, ``run_split``, ``run_pretrain`` (1 epoch), ``run_prototypes``, ``run_train`` (a few
   hundred steps), ``run_featurize`` of the gallery with the default decoder and with
   ``decoder="torchvision"`` (nvJPEG);
2. ``benchmarks/featurize.py`` (AlexNet at 224 px, then the small CNN at 64 px): end to end / pure forward
   (both bf16 + channels-last on CUDA, as the real path), per-stage breakdown, which optimisations the
   code has (source inspection), without the speed options, fp32 and the other decoder measured in the
   same rounds, the candidate change (fused normalisation), peak memory;
3. ``benchmarks/train.py`` (AlexNet, then the small CNN): train_step / pure backbone step (both bf16 on
   CUDA), decomposition, pure-step headroom, fp32, pool in pinned host memory and the candidate change.

Every phase prints its wall time; phases after ``--budget-s`` seconds are skipped (printed as such).
A JSON summary goes to ``--out``/gpu_check.json.

    benchmarks/gpu_run.sh            # on the GPU machine (writes to $OUT)
    PYTHON=.venv/bin/python benchmarks/gpu_run.sh --smoke    # here, on the CPU: tiny sizes, same code
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

BLOCKED = ("mlflow", "boto3", "botocore", "s3transfer", "kfp", "faiss")


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"{fullname} is blocked by gpu_check.py: the GPU machine has no "
                              f"{fullname.split('.')[0]}; amnet's runtime, model_store, model, data, train and "
                              "retrieval modules must not need it")
        return None


def block_imports() -> None:
    leaked = sorted({n.split(".")[0] for n in sys.modules} & set(BLOCKED))
    if leaked:
        raise SystemExit(f"already imported before the check: {', '.join(leaked)}")
    sys.meta_path.insert(0, _Blocker())


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU test of this script)")
    p.add_argument("--out", default="", help="folder for gpu_check.json (default: a temporary folder)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--budget-s", type=float, default=240.0, help="skip the phases that start after this")
    p.add_argument("--skip", default="", help="comma separated phases to skip: stages, featurize-small, "
                   "train-small, featurize-alexnet, train-alexnet")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    block_imports()
    start = time.perf_counter()
    summary: dict = {"smoke": args.smoke, "phases": {}, "errors": {}}
    out = args.out or tempfile.mkdtemp(prefix="amnet-gpucheck-")
    os.makedirs(out, exist_ok=True)

    import torch

    # every module the stages need, imported with mlflow / boto3 / kfp / faiss blocked
    import amnet.data.split  # noqa: F401
    import amnet.model_store  # noqa: F401
    import amnet.retrieval.featurize  # noqa: F401
    import amnet.runtime  # noqa: F401
    import amnet.train.amnet_train  # noqa: F401
    import amnet.train.pretrain  # noqa: F401
    import amnet.train.prototypes  # noqa: F401

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import benchlib as bl

    from amnet.runtime import available_cpus, match_torch_threads

    device = bl.resolve_device(args.device)
    bl.use_device_in_stages(device)
    match_torch_threads()  # what every stage does first (amnet.steps.tracked.run_tracked)
    print(f"gpu_check{' --smoke' if args.smoke else ''}: imports OK with {', '.join(BLOCKED)} blocked; "
          f"{bl.describe_env(device)} ({available_cpus()} available to this process); "
          f"torchvision {__import__('torchvision').__version__}", flush=True)
    if device.type != "cuda" and not args.smoke:
        print("WARNING: no CUDA device; the numbers below are CPU numbers", flush=True)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    s = args.smoke

    def phase(name: str, fn):
        elapsed = time.perf_counter() - start
        if name in skip or elapsed > args.budget_s:
            why = "--skip" if name in skip else f"budget {args.budget_s:.0f} s spent"
            print(f"== {name}: SKIPPED ({why})", flush=True)
            summary["phases"][name] = {"skipped": why}
            return None
        print(f"== {name} (t = {elapsed:.0f} s)", flush=True)
        t = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # keep going: the other phases' numbers are still worth having
            traceback.print_exc()
            summary["errors"][name] = f"{type(exc).__name__}: {exc}"
            value = None
        took = time.perf_counter() - t
        print(f"   {name}: {took:.1f} s", flush=True)
        summary["phases"][name] = {"seconds": round(took, 2), "result": value}
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return value

    from amnet.config import FeaturizeConfig, PretrainConfig, SplitConfig, TrainConfig
    from amnet.data.split import run_split
    from amnet.data.synth import generate
    from amnet.retrieval.featurize import run_featurize
    from amnet.train.amnet_train import run_train
    from amnet.train.pretrain import run_pretrain
    from amnet.train.prototypes import run_prototypes

    work = tempfile.mkdtemp(prefix="amnet-gpucheck-work-")
    d = {k: os.path.join(work, k) for k in ("dataset", "split", "attr", "protos", "amnet", "features")}
    workers = max(1, min(16, os.cpu_count() or 1))
    n_images = 1200 if s else 8000
    split_cfg = (SplitConfig(per_value=20, gallery_size=300, num_queries=20) if s
                 else SplitConfig(per_value=200, gallery_size=2000, num_queries=300))
    train_steps = 5 if s else 300

    def stage_rates():
        r = {"synth": generate(d["dataset"], n_images, seed=0, image_size=128, progress=False, workers=workers)}
        print(f"   synth: {n_images} images, {r['synth']['images_per_s']} img/s ({workers} workers)", flush=True)
        r["split"] = {k: v for k, v in run_split(d["dataset"], d["split"], split_cfg, progress=False).items()
                      if k in ("attr_train", "gallery", "triplet_pool", "seconds")}
        print(f"   split: {r['split']}", flush=True)
        r["pretrain"] = run_pretrain(d["split"], d["attr"], PretrainConfig(epochs=1), progress=False)
        print(f"   pretrain 1 epoch: {r['pretrain']['images_per_s']:.0f} img/s, "
              f"{r['pretrain']['seconds']} s", flush=True)
        r["prototypes"] = run_prototypes(d["split"], d["attr"], d["protos"], progress=False)
        tc = TrainConfig(epochs=1, steps_per_epoch=train_steps)
        r["train"] = run_train(d["split"], d["attr"], d["protos"], d["amnet"], tc, progress=False)
        print(f"   run_train {train_steps} steps x {tc.batch_size} triplets: {r['train']['images_per_s']:.0f} img/s "
              f"({r['train']['images_per_s'] / 3:.0f} triplets/s), loss {r['train']['loss']:.3f}, "
              f"{r['train']['seconds']} s", flush=True)
        for decoder in ("pil", "torchvision"):
            key = "featurize" if decoder == "pil" else "featurize_torchvision"
            out = d["features"] + ("" if decoder == "pil" else "-torchvision")
            try:
                r[key] = run_featurize(d["split"], d["amnet"], out, FeaturizeConfig(decoder=decoder), progress=False)
            except Exception as exc:  # decode_jpeg on cuda needs torchvision built with nvjpeg
                if decoder == "pil":
                    raise
                print(f"   run_featurize decoder=torchvision failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            meta = json.loads(Path(out, "features.json").read_text())
            print(f"   run_featurize gallery, decoder {decoder}: {r[key]['count']} images, "
                  f"{r[key]['images_per_s']:.0f} img/s (model load included), precision {meta.get('precision')}",
                  flush=True)
        return r

    phase("stages", stage_rates)  # the real stage functions, small CNN at 64 px

    fbench = bl.load_bench("featurize")
    tbench = bl.load_bench("train")
    dev = ["--device", str(device.type)]
    if s:
        feat_small = ["--num-images", "600", "--shard-size", "300", "--unique", "200", "--memory-sizes", "300,900",
                      "--repeats", "1"]
        feat_alex = ["--backbone", "alexnet", "--num-images", "48", "--batch-size", "16", "--unique", "16",
                     "--shard-size", "24", "--memory-sizes", "", "--repeats", "1", "--no-breakdown"]
        train_small = ["--steps", "3", "--pool", "800", "--repeats", "1"]
        train_alex = ["--backbone", "alexnet", "--steps", "2", "--batch-size", "4", "--pool", "300", "--repeats", "1",
                      "--no-decompose", "--gpu-paths"]
        feat_alex.append("--gpu-paths")  # the CUDA-only parts (headroom, optimisation check) run on the CPU too
    else:
        feat_small = ["--num-images", "10000", "--memory-sizes", "5000,20000"]
        feat_alex = ["--backbone", "alexnet", "--num-images", "6000", "--unique", "1000", "--memory-sizes", ""]
        train_small = ["--steps", "100", "--pool", "4000"]
        train_alex = ["--backbone", "alexnet", "--steps", "40", "--batch-size", "64", "--pool", "3000"]

    # the GPU goals first (AlexNet at 224 px), in case the budget runs out
    phase("featurize-alexnet", lambda: fbench.main(feat_alex + dev))
    phase("train-alexnet", lambda: tbench.main(train_alex + dev))
    phase("featurize-small", lambda: fbench.main(feat_small + dev))
    phase("train-small", lambda: tbench.main(train_small + dev))

    total = time.perf_counter() - start
    summary["seconds"] = round(total, 1)
    summary["device"] = str(device) + (f" {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
    path = os.path.join(out, "gpu_check.json")
    with open(path, "w") as f:
        json.dump(summary, f, indent=2, default=float)
    print(f"== done in {total:.0f} s; {len(summary['errors'])} phase error(s); summary {path}", flush=True)
    for name, err in summary["errors"].items():
        print(f"   ERROR {name}: {err}", flush=True)
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
