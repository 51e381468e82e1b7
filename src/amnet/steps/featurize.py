"""Stage: gallery featurization (§4): streaming, fp16 shards, resumable per shard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from amnet.config import FeaturizeConfig
from amnet.model_store import model_variant
from amnet.retrieval.featurize import run_featurize
from amnet.steps.common import add_checkpoint_flag, base_parser, cli_config, print_result, run_tracked, stage_config


def run_step(split: str, model: str, out: str, config: Mapping[str, Any] | None = None, parent_run_id: str = "",
             variant: str = "", progress: bool = True, checkpoint_dir: str = "") -> dict:
    """Gallery shards + a model -> fp16 feature shards in ``out``; tracked as ``featurize-<variant>``
    (``variant`` "" = the model's own: amnet, no_memory, no_ranking or attribute_cnn); finished shards
    also kept in ``checkpoint_dir`` when given, for a retry with a fresh ``out``."""
    cfg = stage_config(FeaturizeConfig, config)
    variant = variant or model_variant(model)
    return run_tracked(f"featurize-{variant}", cfg,
                       lambda log: run_featurize(split, model, out, cfg, progress, checkpoint_dir),
                       parent_run_id, {"amnet.variant": variant}, after=attach_gallery(split, model, out),
                       io={"split": split, "model": model, "out": out}, system_metrics=True)


def attach_gallery(split: str, model: str, out: str):
    """After featurizing with a trained model that has a servable MLflow model (its ``mlflow_run.json``
    names it): attach these gallery features to that same logged model (``amnet.ops.servable``)."""

    def _attach(run) -> None:
        from amnet.ops import lineage, servable

        model_id = lineage.read_marker(model).get("model_id")
        if model_id:
            servable.attach_gallery(model_id, out, split)
            run.set_tags({"amnet.model_id": model_id})

    return _attach


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step featurize", "Run SPLIT/gallery through a model's representation learner "
                    "(never manipulated) and write fp16 feature shards; skips shards already written.",
                    config=FeaturizeConfig)
    p.add_argument("--split", required=True, help="output of `amnet data split`")
    p.add_argument("--model", required=True, help="output of `amnet step train` or `pretrain`")
    p.add_argument("--out", required=True, help="folder for feature shards + features.json")
    add_checkpoint_flag(p, "also keep finished shards here; a rerun into a fresh --out copies them")
    args = p.parse_args(argv)
    print_result(run_step(args.split, args.model, args.out, cli_config(FeaturizeConfig, args), args.parent_run_id,
                          progress=not args.quiet, checkpoint_dir=args.checkpoint_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
