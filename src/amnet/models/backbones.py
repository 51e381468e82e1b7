"""Representation learners: images (B, 3, S, S), normalized with NORMALIZE_MEAN/STD -> r (B, Q).

Every backbone ends in a non-negative Q-D vector, like AlexNet's post-ReLU fc7 that the paper uses as
its representation (§4): the attribute branches read it, prototypes average it, and retrieval ranks
gallery images by Euclidean distance between such vectors. ``out_dim`` on each backbone is Q, always
``cfg.feature_dim``.

- ``small``: 4 conv-BN-ReLU blocks (widths w, 2w, 4w, 8w; stride 2 each, so 64 px -> a 4x4 map),
  average pooling to a 4x4 grid (spatial layout kept), then Linear(16*8w -> Q) + ReLU. Sized for
  64-128 px on a small CPU.
- ``alexnet``: torchvision AlexNet up to fc7 + ReLU (4096-D). If ``feature_dim != 4096`` a
  Linear(4096 -> Q) + ReLU projection follows (the paper's setting is ``feature_dim=4096``).
  Input >= 64 px (the conv/pool stack needs it; adaptive pooling handles any larger size).
- ``resnet18`` / ``resnet50``: torchvision ResNet up to global pooling (512-D / 2048-D), then
  Linear -> Q + ReLU when that differs from ``feature_dim``. Input >= 32 px.

torchvision models are built with ``weights=None`` (never downloaded). Parameter names match
torchvision's, so an ImageNet state dict loads with :func:`load_initial_weights` (extra and
mismatched keys such as the 1000-way classifier are skipped and reported).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn as nn
import torchvision

from amnet.errors import ConfigError


class BackboneSpec(Protocol):
    """What a backbone is built from (``amnet.config.ModelConfig`` fits; models/ imports no config)."""

    backbone: str
    image_size: int
    feature_dim: int
    width: int

# ImageNet statistics; the data layer normalizes every image with them before any backbone.
NORMALIZE_MEAN = (0.485, 0.456, 0.406)
NORMALIZE_STD = (0.229, 0.224, 0.225)

ALEXNET_FC7 = 4096
SMALL_GRID = 4  # spatial grid the small CNN keeps before its fully connected layer
MIN_IMAGE_SIZE = {"small": 32, "alexnet": 64, "resnet18": 32, "resnet50": 32}


def _projection(in_dim: int, out_dim: int) -> nn.Module:
    """Linear + ReLU to Q, or nothing when the native dimension already is Q."""
    if in_dim == out_dim:
        return nn.Identity()
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(inplace=True))


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Four stride-2 conv-BN-ReLU blocks + 4x4 average pool + Linear/ReLU to Q.

    Stride-2 convolutions (no pooling layers, no full-resolution conv) keep a train step cheap on a
    2-core CPU (see benchmarks/model_rate.py); adaptive pooling to a 4x4 grid makes any input >= 32 px
    work while keeping where each part of the garment is.
    """

    def __init__(self, width: int = 32, feature_dim: int = 256):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn_relu(3, w),  # (B, w, S/2, S/2)
            *_conv_bn_relu(w, 2 * w),  # (B, 2w, S/4, S/4)
            *_conv_bn_relu(2 * w, 4 * w),  # (B, 4w, S/8, S/8)
            *_conv_bn_relu(4 * w, 8 * w),  # (B, 8w, S/16, S/16)
        )
        # Keep a 4x4 spatial grid: collar (top), sleeves (sides), length and fit are *where* things
        # are; global pooling threw that away (held-out attribute accuracy 0.75 -> 0.85 with the grid).
        self.pool = nn.AdaptiveAvgPool2d(SMALL_GRID)
        self.fc = nn.Sequential(nn.Linear(8 * w * SMALL_GRID**2, feature_dim), nn.ReLU(inplace=True))
        self.out_dim = feature_dim
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)  # (B, 8w * 16)
        return self.fc(x)  # (B, Q)


class AlexNetFc7(nn.Module):
    """torchvision AlexNet truncated after fc7 + ReLU (the paper's 4096-D representation, §4)."""

    def __init__(self, feature_dim: int = ALEXNET_FC7):
        super().__init__()
        net = torchvision.models.alexnet(weights=None)
        self.features = net.features  # (B, 256, h, w)
        self.avgpool = net.avgpool  # adaptive -> (B, 256, 6, 6) for any input >= 64 px
        # Dropout, fc6, ReLU, Dropout, fc7, ReLU: indices match torchvision's "classifier.1/4".
        self.classifier = nn.Sequential(*list(net.classifier.children())[:6])
        self.proj = _projection(ALEXNET_FC7, feature_dim)
        self.out_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x)).flatten(1)  # (B, 9216)
        x = self.classifier(x)  # (B, 4096) fc7
        return self.proj(x)  # (B, Q)


def resnet_features(name: str, feature_dim: int) -> nn.Module:
    """torchvision ResNet whose ``fc`` is replaced by the projection to Q (or Identity).

    Keeping the torchvision module itself keeps its parameter names, so an ImageNet checkpoint loads
    as is (its 1000-way ``fc.weight`` is reported as unexpected/mismatched and skipped).
    """
    net = getattr(torchvision.models, name)(weights=None)
    net.fc = _projection(net.fc.in_features, feature_dim)  # (B, 512 | 2048) -> (B, Q)
    net.out_dim = feature_dim
    return net


def build_backbone(cfg: BackboneSpec) -> nn.Module:
    """The representation learner named by ``cfg.backbone``; output (B, cfg.feature_dim)."""
    cfg.validate()
    if cfg.image_size < MIN_IMAGE_SIZE[cfg.backbone]:
        raise ConfigError(
            f"backbone {cfg.backbone} needs image_size >= {MIN_IMAGE_SIZE[cfg.backbone]} (got {cfg.image_size})"
        )
    if cfg.backbone == "small":
        return SmallCNN(cfg.width, cfg.feature_dim)
    if cfg.backbone == "alexnet":
        return AlexNetFc7(cfg.feature_dim)
    return resnet_features(cfg.backbone, cfg.feature_dim)


@dataclass
class LoadReport:
    """What :func:`load_initial_weights` did; ``str()`` gives a one-line summary for logs."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the module, not in the weights
    unexpected: list[str] = field(default_factory=list)  # in the weights, not in the module
    mismatched: list[str] = field(default_factory=list)  # same name, different shape: skipped

    def __str__(self) -> str:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f", ... (+{len(keys) - 5})" if len(keys) > 5 else "")

        parts = [f"loaded {len(self.loaded)} tensors"]
        for name in ("missing", "unexpected", "mismatched"):
            keys = getattr(self, name)
            if keys:
                parts.append(f"{name} {len(keys)}: {show(keys)}")
        return "; ".join(parts)


def load_initial_weights(module: nn.Module, weights: dict[str, torch.Tensor] | bytes, prefix: str = "") -> LoadReport:
    """Initialise ``module`` from a state dict (non-strict) and report what matched.

    ``weights`` is a state dict (the caller reads the file with ``torch.load(weights_only=True)``),
    the raw bytes of such a file, or a model artifact dict holding ``"state_dict"``. With ``prefix``
    only keys starting with it are used, prefix removed (``prefix="backbone."`` takes the backbone
    out of an AttributeCNN / AMNet state dict). Keys whose shapes differ are skipped, not fatal.
    """
    if isinstance(weights, (bytes, bytearray)):
        weights = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    if "state_dict" in weights and isinstance(weights["state_dict"], dict):
        weights = weights["state_dict"]
    if prefix:
        weights = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    own = module.state_dict()
    report = LoadReport()
    usable = {}
    for key, value in weights.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.mismatched.append(f"{key} {tuple(value.shape)}->{tuple(own[key].shape)}")
        else:
            usable[key] = value
    module.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    report.missing = [k for k in own if k not in weights]
    return report
