"""Stage: attribute-CNN pretraining (§3.4, §4)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from amnet.config import PretrainConfig
from amnet.data.split import dataset_digest
from amnet.names import CONFIG_FILE, TAG_DATASET_DIGEST
from amnet.steps.cli_args import add_checkpoint_flag, base_parser, cli_config, print_result
from amnet.steps.settings import stage_config
from amnet.steps.tracked import run_tracked
from amnet.train import distributed
from amnet.train.pretrain import run_pretrain


def run_step(split: str, out: str, config: Mapping[str, Any] | None = None, parent_run_id: str = "",
             progress: bool = True, checkpoint_dir: str = "", processes: int = 1, max_restarts: int = 0) -> dict:
    """attr_train shards of ``split`` -> attribute CNN artifact (model.pt, config.yaml) in ``out``;
    resumable state in ``checkpoint_dir`` (default ``out/checkpoints``). ``processes`` > 1: that many
    ranks on this machine (one per GPU) through torchrun's launcher API; rank 0 tracks and writes."""
    if processes > 1 and distributed.world_size() == 1:
        return distributed.launch(run_step, processes, max_restarts, split=split, out=out, config=dict(config or {}),
                                  parent_run_id=parent_run_id, progress=progress, checkpoint_dir=checkpoint_dir)
    cfg = stage_config(PretrainConfig, config)
    return run_tracked("pretrain", cfg, lambda log: run_pretrain(split, out, cfg, log, progress, checkpoint_dir),
                       parent_run_id, {TAG_DATASET_DIGEST: dataset_digest(split)},
                       artifacts=[os.path.join(out, CONFIG_FILE)], io={"split": split, "out": out})


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step pretrain", "Train the attribute CNN: backbone + one softmax branch per attribute "
                    "(§3.4, §4) on SPLIT/attr_train; reports per-attribute accuracy on a held-out part. "
                    "Resumes from OUT/checkpoints (or --checkpoint-dir) when rerun.", config=PretrainConfig)
    p.add_argument("--split", required=True, help="output of `amnet data split` (folder or s3://)")
    p.add_argument("--out", required=True, help="model artifact folder (model.pt, config.yaml)")
    p.add_argument("--weights", help="initial backbone weights: a state-dict file, local path or s3:// "
                   "(torchvision names for alexnet/resnet*; nothing is ever downloaded); = --set model.weights=...")
    add_checkpoint_flag(p)
    p.add_argument("--processes", type=int, default=1, help="ranks on this machine (one per GPU), started with "
                   "torchrun's launcher; or run this command under `torchrun --nproc_per_node=N`")
    args = p.parse_args(argv)
    extra = [f"model.weights={args.weights}"] if args.weights else []
    print_result(run_step(args.split, args.out, cli_config(PretrainConfig, args, extra), args.parent_run_id,
                          progress=not args.quiet, checkpoint_dir=args.checkpoint_dir,
                          processes=args.processes), as_json=args.json)
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
