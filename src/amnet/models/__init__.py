"""AMNet's model layer: pure torch modules (no I/O), importable with torch and torchvision only."""

from amnet.models.amnet import AMNET_VARIANTS, AMNet
from amnet.models.attribute_cnn import AttributeCNN, attribute_loss, predict_labels
from amnet.models.backbones import (
    NORMALIZE_MEAN,
    NORMALIZE_STD,
    LoadReport,
    build_backbone,
    load_initial_weights,
)
from amnet.models.losses import amnet_loss, classification_loss, triplet_ranking_loss
from amnet.models.manipulator import Manipulator
from amnet.models.memory import MemoryBlock, indicator_from_targets, make_indicator

__all__ = [
    "AMNET_VARIANTS",
    "AMNet",
    "AttributeCNN",
    "LoadReport",
    "Manipulator",
    "MemoryBlock",
    "NORMALIZE_MEAN",
    "NORMALIZE_STD",
    "amnet_loss",
    "attribute_loss",
    "build_backbone",
    "classification_loss",
    "indicator_from_targets",
    "load_initial_weights",
    "make_indicator",
    "predict_labels",
    "triplet_ranking_loss",
]
