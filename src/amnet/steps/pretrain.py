"""Stage: attribute-CNN pretraining (§3.4, §4)."""

from __future__ import annotations

import os

from amnet.config import PretrainConfig
from amnet.steps.common import base_parser, print_result, resolve, run_tracked
from amnet.train.pretrain import run_pretrain


def run_step(split: str, out: str, params: dict, parent_run_id: str = "", progress: bool = True) -> dict:
    cfg = resolve(PretrainConfig, params)
    return run_tracked("pretrain", cfg, lambda log: run_pretrain(split, out, cfg, log, progress), parent_run_id,
                       artifacts=[os.path.join(out, "config.yaml")], io={"split": split, "out": out})


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step pretrain", "Train the attribute CNN: backbone + one softmax branch per attribute "
                    "(§3.4, §4) on SPLIT/attr_train; reports per-attribute accuracy on a held-out part. "
                    "Resumes from OUT/checkpoints when rerun.", config=PretrainConfig)
    p.add_argument("--split", required=True, help="output of `amnet data split` (folder or s3://)")
    p.add_argument("--out", required=True, help="model artifact folder (model.pt, config.yaml)")
    p.add_argument("--weights", help="initial backbone weights: a state-dict file, local path or s3:// "
                   "(torchvision names for alexnet/resnet*; nothing is ever downloaded)")
    args = p.parse_args(argv)
    extra = [f"model.weights={args.weights}"] if args.weights else []
    cfg = resolve(PretrainConfig, None, args.config, args.overrides + extra)
    print_result(run_tracked("pretrain", cfg, lambda log: run_pretrain(args.split, args.out, cfg, log,
                                                                       not args.quiet), args.parent_run_id,
                             io={"split": args.split, "out": args.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
