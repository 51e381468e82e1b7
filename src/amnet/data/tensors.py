"""Encoded image bytes -> uint8 tensors, and the normalisation the backbones expect.

Images are decoded once per stage into a compact (N, 3, S, S) uint8 tensor (64 px: 12 KiB per
image), so CPU training spends its time in the network rather than in JPEG decoding. Streaming
stages (featurization) call :func:`decode_batch` shard by shard instead.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image

from amnet.models.backbones import NORMALIZE_MEAN, NORMALIZE_STD

MEAN = torch.tensor(NORMALIZE_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(NORMALIZE_STD).view(1, 3, 1, 1)


def decode_one(data: bytes, size: int) -> np.ndarray:
    """Decode and resize one image to (3, size, size) uint8; JPEG draft mode skips work when shrinking."""
    img = Image.open(io.BytesIO(data))
    if img.format == "JPEG":
        img.draft("RGB", (size, size))
    img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def decode_batch(blobs: Sequence[bytes], size: int, workers: int = 2) -> torch.Tensor:
    """(N, 3, size, size) uint8 tensor of the decoded images (PIL releases the GIL while decoding)."""
    if len(blobs) == 0:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    if workers > 1 and len(blobs) > 64:
        with ThreadPoolExecutor(workers) as pool:
            arrays = list(pool.map(lambda b: decode_one(b, size), blobs, chunksize=32))
    else:
        arrays = [decode_one(b, size) for b in blobs]
    return torch.from_numpy(np.stack(arrays))


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def decode_batch_torchvision(blobs: Sequence[bytes], size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, 3, size, size) uint8 on ``device``, JPEGs decoded by ``torchvision.io.decode_jpeg`` there
    (nvJPEG on CUDA: no CPU decode at all) and resized with antialiased bilinear interpolation.

    Other formats (PNG, WebP...) go through PIL. The pixels differ slightly from :func:`decode_batch`
    (PIL's DCT-domain draft scaling): featurize queries and gallery with the same decoder.
    """
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders for torchcodec (not pinned here)
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg

    device = torch.device(device)
    out = torch.empty((len(blobs), 3, size, size), dtype=torch.uint8, device=device)
    jpegs = [i for i, b in enumerate(blobs) if is_jpeg(b)]
    if jpegs:
        data = [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in jpegs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        for i, img in zip(jpegs, images, strict=True):
            if img.shape[-2:] != (size, size):
                img = torch.nn.functional.interpolate(img[None].float(), size=(size, size), mode="bilinear",
                                                      antialias=True, align_corners=False)[0]
                img = img.round_().clamp_(0, 255)
            out[i] = img.to(torch.uint8)
    for i, b in enumerate(blobs):
        if not is_jpeg(b):
            out[i] = torch.from_numpy(np.array(decode_one(b, size))).to(device)  # a writable copy
    return out


def to_input(images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (B, 3, S, S) -> normalised float (B, 3, S, S) on ``device``."""
    x = images.to(device, non_blocking=True).float().div_(255.0)
    return (x - MEAN.to(x.device)) / STD.to(x.device)
