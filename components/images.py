"""The container images every component runs in: one setting, tagged with the package version.

The registry is read from ``AMNET_IMAGE_REGISTRY`` when the pipeline is compiled (default
``ghcr.io/amnet-project``); the images themselves are built from ``images/``.
"""

from __future__ import annotations

import os
from importlib.metadata import version

REGISTRY = os.environ.get("AMNET_IMAGE_REGISTRY", "ghcr.io/amnet-project").rstrip("/")
PROJECT_IMAGE = f"{REGISTRY}/amnet:{version('amnet')}"  # CPU image: data, evaluation, report, tracking
GPU_IMAGE = f"{PROJECT_IMAGE}-cuda"  # CUDA image: training and featurization
