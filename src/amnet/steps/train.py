"""Stage: AMNet training (Eq. 1–6) for one variant: amnet, no_memory or no_ranking."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from amnet.config import TrainConfig
from amnet.data.split import dataset_digest
from amnet.names import CONFIG_FILE, MODEL_FILE, TAG_DATASET_DIGEST, TRAINED_VARIANTS
from amnet.steps.cli_args import add_checkpoint_flag, base_parser, cli_config, print_result
from amnet.steps.settings import stage_config
from amnet.steps.tracked import run_tracked
from amnet.train import distributed
from amnet.train.amnet_train import run_train


def log_model(out: str):
    """After training: the whole searcher (backbone, memory, manipulator, vocabulary) as an MLflow pyfunc
    model of the training run (``amnet.ops.registry.servable``); its id goes into the output's ``mlflow_run.json``
    (featurization attaches the gallery to it, the register stage registers it)."""

    def _log(run) -> dict[str, str]:
        from amnet.ops.registry import servable

        model_id, _ = servable.log_searcher(run.run_id, out)
        return {"model_id": model_id}

    return _log


def validation_scorer(split: str, cfg: TrainConfig):
    """The validation queries' scorer the training loop calls after each epoch (``train.val_each_epoch``),
    rank 0 only; None when off or the split has no validation queries."""
    if not cfg.val_each_epoch or not distributed.is_main():
        return None
    from amnet.retrieval.validation import Validator

    validator = Validator.of(split)
    return validator.score if validator is not None else None


def run_step(split: str, attr_model: str, prototypes: str, out: str, variant: str = "amnet",
             config: Mapping[str, Any] | None = None, parent_run_id: str = "", progress: bool = True,
             checkpoint_dir: str = "", processes: int = 1, max_restarts: int = 0, seed: int = -1) -> dict:
    """Triplet pool + attribute CNN + prototypes -> the ``variant`` model artifact in ``out``; tracked
    with its config, model.pt and the MLflow PyTorch model; resumable state in ``checkpoint_dir``
    (default ``out/checkpoints``). ``processes`` > 1: that many ranks on this machine (one per GPU),
    started through torchrun's launcher API; rank 0 tracks and writes (``amnet.train.distributed``).
    ``seed`` >= 0: the training seed, over the config's (the pipeline's variants x seeds loop sets it)."""
    if seed >= 0:
        config = {**dict(config or {}), "seed": seed}
    if processes > 1 and distributed.world_size() == 1:
        return distributed.launch(run_step, processes, max_restarts, split=split, attr_model=attr_model,
                                  prototypes=prototypes, out=out, variant=variant, config=dict(config or {}),
                                  parent_run_id=parent_run_id, progress=progress, checkpoint_dir=checkpoint_dir)
    cfg = stage_config(TrainConfig, config, variant=variant)
    return run_tracked(f"train-{variant}", cfg,
                       lambda log: run_train(split, attr_model, prototypes or None, out, cfg, log, progress,
                                             checkpoint_dir, validation_scorer(split, cfg)),
                       parent_run_id, {"amnet.variant": variant, TAG_DATASET_DIGEST: dataset_digest(split)},
                       [os.path.join(out, CONFIG_FILE), os.path.join(out, MODEL_FILE)],
                       after=log_model(out), system_metrics=True,
                       io={"split": split, "attr_model": attr_model, "prototypes": prototypes or "", "out": out})


def run_on_nodes(split: str, attr_model: str, prototypes: str, out: str, variant: str,
                 config: Mapping[str, Any] | None, parent_run_id: str, checkpoint_dir: str,
                 cluster: Mapping[str, Any], marker_dir: str = "", labels: Mapping[str, str] | None = None) -> dict:
    """The same training as a Kubeflow Trainer TrainJob on ``cluster["num_nodes"]`` nodes
    (:func:`amnet.ops.cluster.trainjob.train_on_nodes`): every node runs this stage's command under torchrun and
    writes to ``out`` (a URI the nodes reach: S3). The config is checked here first, so a bad key fails
    the task before any node is scheduled."""
    from amnet.ops.cluster.trainjob import train_on_nodes

    stage_config(TrainConfig, config, variant=variant)
    return train_on_nodes(split, attr_model, prototypes, out, variant, config, parent_run_id, checkpoint_dir,
                          cluster, marker_dir=marker_dir, labels=labels)


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step train", "Train AMNet (or the no_memory / no_ranking baseline) on triplets "
                    "sampled from SPLIT/triplet_pool: L = λ·La + (1−λ)·Lt (Eq. 6), SGD with momentum. "
                    "Checkpoints every epoch (OUT/checkpoints or --checkpoint-dir); a rerun resumes.",
                    config=TrainConfig)
    p.add_argument("--split", required=True, help="output of `amnet data split`")
    p.add_argument("--attr-model", required=True, help="output of `amnet step pretrain` (initialisation)")
    p.add_argument("--prototypes", default="", help="output of `amnet step prototypes` (not for no_memory)")
    p.add_argument("--variant", choices=TRAINED_VARIANTS, help="which model to train (default: amnet)")
    p.add_argument("--out", required=True, help="model artifact folder")
    add_checkpoint_flag(p)
    p.add_argument("--processes", type=int, default=1, help="ranks on this machine (one per GPU), started with "
                   "torchrun's launcher; or run this command under `torchrun --nproc_per_node=N`")
    args = p.parse_args(argv)
    config = cli_config(TrainConfig, args)
    variant = args.variant or config.pop("variant", "amnet")
    print_result(run_step(args.split, args.attr_model, args.prototypes, args.out, variant, config,
                          args.parent_run_id, progress=not args.quiet, checkpoint_dir=args.checkpoint_dir,
                          processes=args.processes), as_json=args.json)
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
