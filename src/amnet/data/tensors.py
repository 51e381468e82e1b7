"""Encoded image bytes -> uint8 tensors, and the normalisation the backbones expect.

Images are decoded once per stage into compact (N, 3, S, S) uint8 (64 px: 12 KiB per image), so CPU
training spends its time in the network rather than in JPEG decoding. The AMNet triplet pool, which
grows with the catalogue, is decoded shard by shard into a local file (:class:`DiskPool`) whose rows
are read per batch, so memory does not grow with the pool. Streaming stages (featurization) call
:func:`decode_batch` shard by shard.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
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


class DiskPool:
    """A decoded uint8 image pool in a local file: ``pool[rows]`` -> (len(rows), 3, S, S) uint8 tensor.

    :meth:`build` decodes a set's shards a slice at a time into the file (memory: one shard's encoded
    bytes plus one decoded slice), keeping the (N, M) label matrix. Reads are ``preadv`` into a fresh
    buffer (pinned with ``pin=True``, for asynchronous copies to a GPU): the file's pages stay in the
    kernel's page cache, not in this process's resident memory. :meth:`to_device` loads the whole pool
    onto a device (the GPU path when it fits). ``close()`` deletes the file.
    """

    device = torch.device("cpu")  # where ``pool[rows]`` returns its tensor (train_step moves rows here)

    def __init__(self, path: str, count: int, size: int, labels: np.ndarray, workdir: str = "",
                 groups: np.ndarray | None = None):
        self.path, self.count, self.size, self.labels = path, count, size, labels
        # (N,) variant-group code per row (-1 = none); None: the shards carry no ``item_group``
        self.groups = groups
        self.row_bytes = 3 * size * size
        self.pin = False
        self._workdir = workdir
        self._fd = os.open(path, os.O_RDONLY)

    @classmethod
    def build(cls, prefix: str, size: int, workers: int = 2, workdir: str | None = None,
              slice_rows: int = 512) -> DiskPool:
        """Decode every shard under ``prefix`` (``image_bytes``, ``labels``, and ``item_group`` when the
        split wrote one) into a file in a new folder under ``workdir`` (default ``$AMNET_TMPDIR``, else
        the system temp folder)."""
        from amnet.data import shards  # local: shards is I/O, tensors is imported by pure-compute modules

        folder = tempfile.mkdtemp(prefix="amnet-pool-", dir=workdir or os.environ.get("AMNET_TMPDIR") or None)
        path = os.path.join(folder, f"pool-{size}px.u8")
        labels, groups, count = [], [], 0
        try:
            with open(path, "wb") as fh:
                for _, df in shards.iter_shards(prefix):
                    blobs = df["image_bytes"].tolist()
                    for i in range(0, len(blobs), slice_rows):
                        x = decode_batch(blobs[i : i + slice_rows], size, workers)  # (B, 3, S, S), HWC in memory
                        fh.write(x.permute(0, 2, 3, 1).contiguous().numpy().tobytes())  # rows stored as (S, S, 3)
                    labels += [np.asarray(v, dtype=np.int16) for v in df["labels"]]
                    groups.append(df["item_group"].to_numpy(np.int64) if "item_group" in df.columns else None)
                    count += len(df)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        matrix = np.stack(labels) if labels else np.zeros((0, 0), dtype=np.int16)
        codes = np.concatenate(groups) if groups and all(g is not None for g in groups) else None
        return cls(path, count, size, matrix, workdir=folder, groups=codes)

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return self.count * self.row_bytes

    def __getitem__(self, rows) -> torch.Tensor:
        rows = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        out = torch.empty((len(rows), self.size, self.size, 3), dtype=torch.uint8, pin_memory=self.pin)
        buf = out.numpy().reshape(len(rows), self.row_bytes)
        for i, row in enumerate(rows.tolist()):
            if not 0 <= row < self.count:
                raise IndexError(f"pool row {row} out of range 0..{self.count - 1}")
            os.preadv(self._fd, [buf[i]], row * self.row_bytes)
        # (B, 3, S, S) with the channels-last strides decode_batch gives: the same convolution kernels run
        return out.permute(0, 3, 1, 2)

    def to_device(self, device: torch.device | str, slice_rows: int = 4096) -> torch.Tensor:
        """The whole pool as one (N, 3, S, S) uint8 tensor on ``device``, copied a slice at a time."""
        out = torch.empty((self.count, 3, self.size, self.size), dtype=torch.uint8, device=device,
                          memory_format=torch.channels_last)
        for start in range(0, self.count, slice_rows):
            rows = np.arange(start, min(start + slice_rows, self.count))
            out[start : start + len(rows)] = self[rows].to(device)
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> DiskPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
