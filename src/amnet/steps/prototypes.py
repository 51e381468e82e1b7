"""Stage: memory initialisation from prototype attribute representations (§3.4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from amnet.config import PrototypesConfig
from amnet.data.split import dataset_digest
from amnet.names import TAG_DATASET_DIGEST
from amnet.steps.cli_args import base_parser, cli_config, print_result
from amnet.steps.settings import stage_config
from amnet.steps.tracked import run_tracked
from amnet.train.prototypes import run_prototypes


def run_step(split: str, attr_model: str, out: str, config: Mapping[str, Any] | None = None,
             parent_run_id: str = "", progress: bool = True) -> dict:
    """attr_train shards + attribute CNN -> the C x Q memory (prototypes.pt) in ``out``."""
    cfg = stage_config(PrototypesConfig, config)
    return run_tracked("prototypes", cfg, lambda log: run_prototypes(split, attr_model, out, cfg, progress),
                       parent_run_id, {TAG_DATASET_DIGEST: dataset_digest(split)},
                       io={"split": split, "attr_model": attr_model, "out": out})


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step prototypes", "Average the attribute CNN's representation of SPLIT/attr_train "
                    "per attribute value: the C x Q memory that initialises AMNet (§3.4).", config=PrototypesConfig)
    p.add_argument("--split", required=True, help="output of `amnet data split`")
    p.add_argument("--attr-model", required=True, help="output of `amnet step pretrain`")
    p.add_argument("--out", required=True, help="folder for prototypes.pt")
    args = p.parse_args(argv)
    print_result(run_step(args.split, args.attr_model, args.out, cli_config(PrototypesConfig, args),
                          args.parent_run_id, progress=not args.quiet), as_json=args.json)
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
