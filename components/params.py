"""Pipeline parameters -> per-stage config overrides (dotted keys), as typed JSON dicts."""

from typing import NamedTuple

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def stage_params(
    per_value: int,
    gallery_size: int,
    num_queries: int,
    backbone: str,
    image_size: int,
    pretrain_epochs: int,
    epochs: int,
    steps_per_epoch: int,
    lr: float,
    lam: float,
    margin: float,
    batch_size: int,
    seed: int,
) -> NamedTuple("StageParams", split=dict, pretrain=dict, train=dict):
    """Name the overrides each stage's config receives (KFP cannot build typed dicts from parameters)."""
    from collections import namedtuple

    split = {"per_value": per_value, "gallery_size": gallery_size, "num_queries": num_queries, "seed": seed}
    pretrain = {"model.backbone": backbone, "model.image_size": image_size, "epochs": pretrain_epochs,
                "seed": seed}
    train = {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "lr": lr, "lam": lam, "margin": margin,
             "batch_size": batch_size, "seed": seed}
    return namedtuple("StageParams", ["split", "pretrain", "train"])(split, pretrain, train)
