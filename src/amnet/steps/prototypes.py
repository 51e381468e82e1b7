"""Stage: memory initialisation from prototype attribute representations (§3.4)."""

from __future__ import annotations

from amnet.config import FeaturizeConfig
from amnet.prototypes import run_prototypes
from amnet.steps.common import base_parser, print_result, resolve, run_tracked


def run_step(split: str, attr_model: str, out: str, params: dict, parent_run_id: str = "",
             progress: bool = True) -> dict:
    cfg = resolve(FeaturizeConfig, params)
    return run_tracked("prototypes", cfg,
                       lambda log: run_prototypes(split, attr_model, out, cfg.batch_size, progress), parent_run_id,
                       io={"split": split, "attr_model": attr_model, "out": out})


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step prototypes", "Average the attribute CNN's representation of SPLIT/attr_train "
                    "per attribute value: the C x Q memory that initialises AMNet (§3.4).", config=FeaturizeConfig)
    p.add_argument("--split", required=True, help="output of `amnet data split`")
    p.add_argument("--attr-model", required=True, help="output of `amnet step pretrain`")
    p.add_argument("--out", required=True, help="folder for prototypes.pt")
    args = p.parse_args(argv)
    cfg = resolve(FeaturizeConfig, None, args.config, args.overrides)
    print_result(run_tracked("prototypes", cfg, lambda log: run_prototypes(
        args.split, args.attr_model, args.out, cfg.batch_size, not args.quiet), args.parent_run_id,
        io={"split": args.split, "attr_model": args.attr_model, "out": args.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
