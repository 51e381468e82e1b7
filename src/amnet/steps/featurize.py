"""Stage: gallery featurization (§4): streaming, fp16 shards, resumable per shard."""

from __future__ import annotations

from amnet.config import FeaturizeConfig
from amnet.featurize import run_featurize
from amnet.steps.common import base_parser, print_result, resolve, run_tracked


def run_step(split: str, model: str, out: str, params: dict, parent_run_id: str = "", variant: str = "",
             progress: bool = True) -> dict:
    cfg = resolve(FeaturizeConfig, params)
    stage = f"featurize-{variant}" if variant else "featurize"
    return run_tracked(stage, cfg, lambda log: run_featurize(split, model, out, cfg, progress), parent_run_id,
                       {"amnet.variant": variant} if variant else None,
                       io={"split": split, "model": model, "out": out})


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step featurize", "Run SPLIT/gallery through a model's representation learner "
                    "(never manipulated) and write fp16 feature shards; skips shards already written.",
                    config=FeaturizeConfig)
    p.add_argument("--split", required=True, help="output of `amnet data split`")
    p.add_argument("--model", required=True, help="output of `amnet step train` or `pretrain`")
    p.add_argument("--out", required=True, help="folder for feature shards + features.json")
    args = p.parse_args(argv)
    cfg = resolve(FeaturizeConfig, None, args.config, args.overrides)
    print_result(run_tracked("featurize", cfg, lambda log: run_featurize(args.split, args.model, args.out, cfg,
                                                                         not args.quiet), args.parent_run_id,
                             io={"split": args.split, "model": args.model, "out": args.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
