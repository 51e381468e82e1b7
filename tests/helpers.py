"""Tiny real datasets for tests (rendered by the built-in generator, small sizes); benchmarks/ and quality/
scripts by path; hand-made image bytes and manifest rows; a headless Chromium page."""

from __future__ import annotations

import importlib.util
import io
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
QUALITY = Path(__file__).resolve().parents[1] / "quality"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


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


def tiny_split_and_attribute_cnn(root: Path, model: list[str], shard_size: int) -> Path:
    """A tiny dataset (400 images, 32 px) under ``root``, its split in ``root/split`` (``shard_size`` rows a
    shard) and a 1-epoch attribute CNN in ``root/attr`` (``model``: its ``--set`` options); the split."""
    from amnet.cli import main

    data = tiny_dataset(root, num_images=400, image_size=32)
    split = root / "split"
    assert main(["data", "split", data, "--out", str(split), "--per-value", "4", "--gallery-size", "60",
                 "--num-queries", "5", "--shard-size", str(shard_size), "--no-progress"]) == 0
    assert main(["step", "pretrain", "--split", str(split), "--out", str(root / "attr"), "--quiet", *model,
                 "--set", "epochs=1", "--set", "batch_size=32"]) == 0
    return split


def jpeg(width: int = 8, height: int = 8, color=(200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: a decompression bomb that is tiny on disk."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def row(image_id: str, image: str, color: str = "red", shape: str = "round") -> dict:
    """A manifest row of the two-attribute (colour, shape) test vocabulary."""
    return {"image_id": image_id, "image": image, "color": color, "shape": shape}


@contextmanager
def chromium_page(viewport: dict[str, int]) -> Iterator[tuple[object, object]]:
    """(``playwright.sync_api``, a page of Debian's headless Chromium with ``viewport``); skips the test
    without Playwright or the browser (never Playwright's own browser download)."""
    import pytest

    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no {CHROMIUM}: apt-get install -y chromium")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield sync_api, browser.new_page(viewport=viewport)
        finally:
            browser.close()
