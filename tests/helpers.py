"""Tiny real datasets for tests (rendered by the built-in generator, small sizes)."""

from __future__ import annotations

from pathlib import Path


def tiny_dataset(root: Path, num_images: int = 900, seed: int = 0, image_size: int = 64) -> str:
    from amnet.data.synth import generate

    out = root / f"synth-{num_images}-{seed}-{image_size}"
    if not (out / "manifest.parquet").exists():
        generate(str(out), num_images=num_images, seed=seed, image_size=image_size, progress=False)
    return str(out)
