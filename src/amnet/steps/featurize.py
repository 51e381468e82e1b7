"""Stage: gallery featurization (§4): streaming, fp16 shards, resumable per shard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from amnet.config import FeaturizeConfig
from amnet.model_store import model_variant
from amnet.retrieval.featurize import run_featurize
from amnet.steps.cli_args import add_checkpoint_flag, base_parser, cli_config, print_result
from amnet.steps.settings import stage_config
from amnet.steps.tracked import run_tracked


def run_step(split: str, model: str, out: str, config: Mapping[str, Any] | None = None, parent_run_id: str = "",
             variant: str = "", progress: bool = True, checkpoint_dir: str = "", group: int = 0,
             groups: int = 1, attach: bool | None = None) -> dict:
    """Gallery shards + a model -> fp16 feature shards in ``out``; tracked as ``featurize-<variant>``
    (``variant`` "" = the model's own: amnet, no_memory, no_ranking or attribute_cnn); finished shards
    also kept in ``checkpoint_dir`` when given, for a retry with a fresh ``out``. ``group`` of ``groups``:
    one block of the gallery's shards (the pipeline's fan-out). ``attach`` (default: when ``groups`` is 1)
    attaches the features to the model's servable MLflow model; the pipeline leaves that to build-index,
    which sees the whole gallery and its index."""
    cfg = stage_config(FeaturizeConfig, config)
    variant = variant or model_variant(model)
    name = f"featurize-{variant}" if groups == 1 else f"featurize-{variant}-{group + 1}of{groups}"
    return run_tracked(name, cfg,
                       lambda log: run_featurize(split, model, out, cfg, progress, checkpoint_dir, group, groups),
                       parent_run_id, {"amnet.variant": variant},
                       after=attach_gallery(split, model, out) if (groups == 1 if attach is None else attach) else None,
                       io={"split": split, "model": model, "out": out}, system_metrics=True)


def run_part(split: str, model: str, out: str, config: Mapping[str, Any] | None, parent_run_id: str, variant: str,
             part: Mapping[str, Any], checkpoint_root: str, run_id: str, uris: list[str], out_uri: str) -> dict:
    """One task of the pipeline's featurization fan-out: block ``part`` (``{"group", "groups"}`` from
    :func:`amnet.steps.index.plan`) of the gallery, resumable under ``checkpoint_root`` (keyed by run,
    task and the input ``uris``); ``variant`` "" = the model's own. The gallery is attached to the
    servable model later, by build-index."""
    from amnet.steps.checkpoints import checkpoint_dir

    variant = variant or model_variant(model)
    group, groups = int(part.get("group", 0)), int(part.get("groups", 1))  # KFP hands JSON numbers as floats
    state = checkpoint_dir(checkpoint_root, out_uri, f"featurize-{variant}-{group}-{groups}", run_id, uris, config)
    return run_step(split, model, out, config, parent_run_id, variant=variant, checkpoint_dir=state, group=group,
                    groups=groups, attach=False)


def attach_gallery(split: str, model: str, out: str):
    """After featurizing with a trained model that has a servable MLflow model (its ``mlflow_run.json``
    names it): attach these gallery features to that same logged model (``amnet.ops.registry.servable``)."""

    def _attach(run) -> None:
        from amnet.ops.registry import servable
        from amnet.ops.tracking import lineage

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
    p.add_argument("--group", type=int, default=0, help="featurize only block GROUP (0-based) of --groups")
    p.add_argument("--groups", type=int, default=1,
                   help="split the gallery's shards into this many contiguous blocks (merge them with "
                   "`amnet step index`)")
    args = p.parse_args(argv)
    print_result(run_step(args.split, args.model, args.out, cli_config(FeaturizeConfig, args), args.parent_run_id,
                          progress=not args.quiet, checkpoint_dir=args.checkpoint_dir, group=args.group,
                          groups=args.groups), as_json=args.json)
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
