"""Stage: AMNet training (Eq. 1–6) for one variant: amnet, no_memory or no_ranking."""

from __future__ import annotations

import os

from amnet.config import TrainConfig
from amnet.steps.common import base_parser, print_result, resolve, run_tracked
from amnet.train.amnet_train import run_train


def log_model(out: str):
    """After training: the representation learner as an MLflow PyTorch model with a signature."""

    def _log(run) -> None:
        import torch

        from amnet import tracking
        from amnet.model_store import load_model

        loaded = load_model(out)
        size = loaded.model_config.image_size
        tracking.log_pytorch_model(run.run_id, loaded.model.backbone, torch.zeros(2, 3, size, size))

    return _log


def run_step(split: str, attr_model: str, prototypes: str, out: str, variant: str, params: dict,
             parent_run_id: str = "", progress: bool = True) -> dict:
    cfg = resolve(TrainConfig, {**params, "variant": variant})
    return run_tracked(f"train-{variant}", cfg,
                       lambda log: run_train(split, attr_model, prototypes or None, out, cfg, log, progress),
                       parent_run_id, {"amnet.variant": variant},
                       [os.path.join(out, "config.yaml"), os.path.join(out, "model.pt")],
                       after=log_model(out),
                       io={"split": split, "attr_model": attr_model, "prototypes": prototypes or "", "out": out})


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step train", "Train AMNet (or the no_memory / no_ranking baseline) on triplets "
                    "sampled from SPLIT/triplet_pool: L = λ·La + (1−λ)·Lt (Eq. 6), SGD with momentum. "
                    "Checkpoints every epoch; a rerun resumes.", config=TrainConfig)
    p.add_argument("--split", required=True, help="output of `amnet data split`")
    p.add_argument("--attr-model", required=True, help="output of `amnet step pretrain` (initialisation)")
    p.add_argument("--prototypes", default="", help="output of `amnet step prototypes` (not for no_memory)")
    p.add_argument("--variant", default="amnet", choices=["amnet", "no_memory", "no_ranking"])
    p.add_argument("--out", required=True, help="model artifact folder")
    args = p.parse_args(argv)
    cfg = resolve(TrainConfig, {"variant": args.variant}, args.config, args.overrides)
    print_result(run_tracked(f"train-{cfg.variant}", cfg, lambda log: run_train(
        args.split, args.attr_model, args.prototypes or None, args.out, cfg, log, not args.quiet),
        args.parent_run_id, {"amnet.variant": cfg.variant},
        io={"split": args.split, "attr_model": args.attr_model, "prototypes": args.prototypes, "out": args.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
