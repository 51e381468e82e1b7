"""A stage of another git revision, run beside this tree's: the ``--baseline-rev`` of featurize.py and train.py.

Not a benchmark itself. :func:`compare` extracts ``src/`` of a revision of this repository with
``git archive`` into a temporary folder, then runs this file as a worker in a fresh Python process per
measurement, alternately with that folder and with this tree's ``src/`` first on ``PYTHONPATH`` (same
inputs, same worker code, order alternating per round, so load from other processes hits both alike).
The worker imports only the standard library at the top and the revision's own ``amnet`` inside: it
builds a random-weight model with that revision's ``build_model`` / ``save_model`` and times that
revision's stage function, so each side runs its own code paths with its own defaults:

* ``featurize``: ``load_model`` (median of 3), then ``run_featurize`` of ``--split``'s gallery
  (``FeaturizeConfig(batch_size=...)``, the rest the revision's defaults), the whole call timed;
* ``train``: a random attribute CNN, that revision's ``run_prototypes``, then ``run_train`` of one
  epoch of ``--steps`` steps on ``--split``'s triplet pool (``TrainConfig(epochs=1, steps_per_epoch=...,
  batch_size=...)``, the rest the revision's defaults), the whole call timed.

A revision whose stage functions live elsewhere, or take other arguments, fails with the worker's
error printed; ``MODULES`` lists where the worker looks.

    PYTHONPATH=SRC python benchmarks/revision.py featurize|train --split SPLIT --work DIR [--backbone small] ...
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = {  # function -> modules that have held it, newest first
    "run_featurize": ("amnet.retrieval.featurize", "amnet.featurize"),
    "run_prototypes": ("amnet.train.prototypes", "amnet.prototypes"),
    "run_train": ("amnet.train.amnet_train",),
    "save_model": ("amnet.model_store", "amnet.train.checkpoint"),
    "build_model": ("amnet.model_store",),
    "load_model": ("amnet.model_store",),
    "load_split_vocab": ("amnet.data.split",),
}


# ------------------------------------------------------------------------------------- parent side
def extract_src(rev: str, dest: str) -> str:
    """``src/`` of ``rev`` (a commit, tag or branch of this repository) extracted into ``dest``; returns
    the full commit id."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout.strip()
        archive = subprocess.run(["git", "archive", "--format=tar", commit, "src"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        detail = detail.decode() if isinstance(detail, bytes) else detail
        raise SystemExit(f"--baseline-rev {rev}: cannot read it from the git repository at {ROOT} "
                         f"({detail.strip() or exc})") from exc
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return commit


def run_worker(src: str, task: str, args: list[str], device: str, threads: int = 0) -> dict:
    """One worker process with ``src`` first on ``PYTHONPATH``; returns its JSON result."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the stage functions pick cuda whenever they see one
    cmd = [sys.executable, __file__, task, "--expect-src", src, *args]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("JSON ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"worker {task} with {src} failed (exit {proc.returncode}):\n"
                         f"{(proc.stderr or proc.stdout)[-3000:]}")
    return json.loads(lines[-1][5:])


def compare(rev: str, task: str, args: list[str], rounds: int, device: str, threads: int = 0) -> dict:
    """Run ``task`` with ``args`` at this tree and at ``rev``, ``rounds`` times each, alternating.

    Returns ``{"rev", "commit", "tree": [results], "base": [results]}`` (results in round order)."""
    with tempfile.TemporaryDirectory(prefix="amnet-baseline-") as tmp:
        commit = extract_src(rev, tmp)
        sides = {"tree": str(ROOT / "src"), "base": os.path.join(tmp, "src")}
        out: dict = {"rev": rev, "commit": commit, "tree": [], "base": []}
        for r in range(rounds):
            for side in (("tree", "base") if r % 2 == 0 else ("base", "tree")):
                out[side].append(run_worker(sides[side], task, [*args, "--work", os.path.join(tmp, f"{side}-{r}")],
                                            device, threads))
    return out


def speedup(result: dict, key: str = "seconds") -> float:
    """Median over rounds of base seconds / tree seconds (> 1: this tree is faster)."""
    return statistics.median(b[key] / t[key] for t, b in zip(result["tree"], result["base"], strict=True))


def rate(result: dict) -> str:
    """The img/s the stage function itself reported, as text ("n/a" when it reported none)."""
    value = result.get("stage_images_per_s")
    return f"{value:.1f}" if isinstance(value, (int, float)) else "n/a"


# ------------------------------------------------------------------------------------- worker side
def _find(name: str):
    for module in MODULES[name]:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        if hasattr(mod, name):
            return getattr(mod, name)
    raise SystemExit(f"this revision has no {name} in {', '.join(MODULES[name])}")


def _random_model(out: str, kind: str, args, vocab) -> None:
    import torch

    from amnet import config as cfgmod

    torch.manual_seed(0)
    model_cfg = cfgmod.ModelConfig(backbone=args.backbone, image_size=args.image_size, feature_dim=args.feature_dim)
    net = _find("build_model")(kind, kind, model_cfg, vocab)
    _find("save_model")(out, kind, kind, net, cfgmod.to_dict(model_cfg), vocab.to_json())


def _featurize(args) -> dict:
    import torch

    from amnet.config import FeaturizeConfig

    vocab = _find("load_split_vocab")(args.split)
    model = os.path.join(args.work, "model")
    _random_model(model, "amnet", args, vocab)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    load_model = _find("load_model")
    loads = []
    for _ in range(3):
        start = time.perf_counter()
        load_model(model, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        loads.append(time.perf_counter() - start)
    start = time.perf_counter()
    res = _find("run_featurize")(args.split, model, os.path.join(args.work, "features"),
                                 FeaturizeConfig(batch_size=args.batch_size), progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"count": res["count"], "seconds": seconds, "images_per_s": res["count"] / seconds,
            "load_model_s": statistics.median(loads), "stage_images_per_s": res.get("images_per_s")}


def _train(args) -> dict:
    import torch

    from amnet.config import TrainConfig

    vocab = _find("load_split_vocab")(args.split)
    attr, protos = os.path.join(args.work, "attr"), os.path.join(args.work, "prototypes")
    _random_model(attr, "attribute_cnn", args, vocab)
    _find("run_prototypes")(args.split, attr, protos, progress=False)
    cfg = TrainConfig(epochs=1, steps_per_epoch=args.steps, batch_size=args.batch_size)
    start = time.perf_counter()
    res = _find("run_train")(args.split, attr, protos, os.path.join(args.work, "amnet"), cfg, progress=False)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    images = 3 * args.batch_size * args.steps
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds,
            "stage_images_per_s": res.get("images_per_s")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=("featurize", "train"), help="the stage to time")
    p.add_argument("--split", required=True, help="a split folder (featurize: gallery/; train: triplet_pool/ and "
                   "attr_train/), attributes.json beside them")
    p.add_argument("--work", required=True, help="folder for the models and outputs of this run")
    p.add_argument("--backbone", default="small")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--feature-dim", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="train: steps of the one epoch")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--expect-src", default="", help="fail unless amnet is imported from this folder")
    args = p.parse_args(argv)
    import amnet

    where = Path(amnet.__file__).resolve()
    if args.expect_src and Path(args.expect_src).resolve() not in where.parents:
        raise SystemExit(f"amnet imported from {where}, not from {args.expect_src}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    result = _featurize(args) if args.task == "featurize" else _train(args)
    print("JSON " + json.dumps({"amnet": str(where.parent), **result}))
    return 0


if __name__ == "__main__":
    if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]  # benchmarks/ holds train.py, search.py ...: no shadowing of the revision's imports
    sys.exit(main())
