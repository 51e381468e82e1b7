"""Tiny real datasets for tests (rendered by the built-in generator, small sizes); benchmarks/ and quality/
scripts by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
QUALITY = Path(__file__).resolve().parents[1] / "quality"


def tiny_dataset(root: Path, num_images: int = 900, seed: int = 0, image_size: int = 64) -> str:
    from amnet.data.synth import generate

    out = root / f"synth-{num_images}-{seed}-{image_size}"
    if not (out / "manifest.parquet").exists():
        generate(str(out), num_images=num_images, seed=seed, image_size=image_size, progress=False)
    return str(out)


def load_benchmark(name: str, folder: Path = BENCHMARKS):
    """Import ``<folder>/<name>.py`` as a module (benchmarks/ and quality/ are not packages), for tests of its
    parts."""
    spec = importlib.util.spec_from_file_location(f"{folder.name}_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script executes
    spec.loader.exec_module(module)
    return module


def load_quality(name: str):
    """Import ``quality/<name>.py`` as a module."""
    return load_benchmark(name, QUALITY)
