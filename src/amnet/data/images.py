"""Safe image handling: read, check and decode untrusted image bytes; keep paths inside the dataset.

Images come from datasets we did not make, so three things are guarded here:

* **Decompression bombs**: the pixel count is read from the header (``Image.open`` parses only the
  header) and compared with ``max_pixels`` *before* any pixel is decoded.
* **Truncated or corrupt files**: ``check_image`` fully decodes the image (``img.load()``) with
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` forced off, so a cut-off JPEG is rejected here and not in the
  middle of a training epoch.
* **Path escapes**: ``resolve_image_path`` refuses manifest paths that leave the dataset root
  (``..``, absolute paths elsewhere, symlinks pointing out, S3 URIs outside the dataset prefix).

Only the common raster formats are parsed (``FORMATS``); Pillow's other plugins (EPS runs
Ghostscript, for instance) are never reached through these functions.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, ImageFile, ImageOps

from amnet import storage
from amnet.errors import AmnetError

MAX_PIXELS = 40_000_000  # default pixel limit (e.g. 8000 x 5000); larger images are quarantined
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # Pillow plugins we agree to run

_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PIL_STATE_LOCK = threading.Lock()


@contextmanager
def _strict_pil(max_pixels: int) -> Iterator[None]:
    """Temporarily set Pillow's global guards for one check, then restore them exactly.

    Pillow keeps its limits in module globals. For the duration of a check we: silence
    ``DecompressionBombWarning`` (we enforce our own limit and report it as a reason), raise
    ``Image.MAX_IMAGE_PIXELS`` to ``max_pixels`` only if the caller asked for more than Pillow allows
    (so Pillow never rejects what the caller accepts), and force ``LOAD_TRUNCATED_IMAGES`` off so a
    truncated file always fails. A module lock keeps concurrent checks from interleaving.
    """
    with _PIL_STATE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved_limit, saved_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        if saved_limit is not None and max_pixels > saved_limit:
            Image.MAX_IMAGE_PIXELS = max_pixels
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved_limit, saved_truncated


def _over_limit(width: int, height: int, max_pixels: int) -> str:
    return f"image over pixel limit ({width}×{height} > {max_pixels})"


def check_image(data: bytes, max_pixels: int = MAX_PIXELS) -> str | None:
    """None if ``data`` is a complete, decodable image within ``max_pixels``; else a short reason.

    Reasons: ``"empty file"``, ``"not an image (or an unsupported format)"``,
    ``"image over pixel limit (W×H > N)"``, ``"truncated or corrupt image"``. The size is checked
    from the header before decoding, so a decompression bomb costs only a header parse.
    """
    if not data:
        return "empty file"
    with _strict_pil(max_pixels):
        try:
            img = Image.open(io.BytesIO(data), formats=FORMATS)
        except Image.DecompressionBombError as exc:
            # Pillow's own header check fired: only possible above 2 x max(max_pixels, its limit).
            found = re.search(r"\((\d+) pixels\)", str(exc))
            return f"image over pixel limit ({found.group(1) if found else '?'} pixels > {max_pixels})"
        except Image.UnidentifiedImageError:
            return "not an image (or an unsupported format)"
        except Exception:  # header parsers raise SyntaxError, ValueError, struct.error, OSError...
            return "truncated or corrupt image"
        with img:
            width, height = img.size
            if width * height > max_pixels:
                return _over_limit(width, height, max_pixels)
            try:
                img.load()
            except Image.DecompressionBombError:  # e.g. a GIF frame larger than its logical screen
                return _over_limit(width, height, max_pixels)
            except Exception:  # decoders raise OSError, SyntaxError, ValueError, EOFError...
                return "truncated or corrupt image"
    return None


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """RGB image; transparent areas become white (catalogue photos are shot on white)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def decode_rgb(data: bytes, size: int) -> Image.Image:
    """Decode encoded image bytes to an RGB ``size`` x ``size`` image (the training input).

    JPEGs are decoded with DCT scaling (``draft``) when much larger than ``size``, EXIF rotation is
    applied, transparency becomes white and the final resize is bilinear with Pillow's reducing
    gap: fast, and antialiased when shrinking. The aspect ratio is not kept (the paper's protocol).
    Raises AmnetError for bytes that are not a decodable image (run ``amnet data validate`` first).
    """
    if size < 1:
        raise AmnetError(f"image size must be >= 1 (got {size})")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
        if img.format == "JPEG":
            img.draft("RGB", (size, size))
        img = ImageOps.exif_transpose(img)
        rgb = _flatten_alpha(img)
        return rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    except AmnetError:
        raise
    except Exception as exc:
        raise AmnetError(
            f"image could not be decoded ({type(exc).__name__}); validate the dataset with "
            "`amnet data validate` before training"
        ) from exc


def _resolve_s3(root: str, image: str) -> str | None:
    """Full URI of ``image`` inside the S3 dataset ``root``; None if it leaves the root's prefix."""
    bucket, prefix = storage.split_s3(root)
    prefix = prefix.strip("/")
    if _URI_SCHEME.match(image):
        if not storage.is_s3(image):
            return None
        image_bucket, key = storage.split_s3(image)
        if image_bucket != bucket:
            return None
    elif image.startswith("/"):
        return None  # an absolute local path is never inside an S3 dataset
    else:
        key = f"{prefix}/{image}" if prefix else image
    if ".." in key.split("/"):
        # S3 does not interpret "..", but the manifest author meant a relative path: resolve it.
        key = posixpath.normpath("/" + key).lstrip("/")
    if not key or (prefix and not key.startswith(prefix + "/")):
        return None
    return f"{storage.S3_PREFIX}{bucket}/{key}"


def _resolve_local(root: str, image: str) -> str | None:
    """Real path of ``image`` under the local dataset ``root``; None if it resolves outside it."""
    if _URI_SCHEME.match(image):
        return None  # s3:// or other URIs are never inside a local dataset
    candidate = image if os.path.isabs(image) else os.path.join(root, image)
    real_root = os.path.realpath(root)
    real = os.path.realpath(candidate)  # follows symlinks: a link pointing out counts as escaping
    if real == real_root or os.path.commonpath([real, real_root]) != real_root:
        return None
    return real


def resolve_image_path(dataset_root: str, image: str) -> str | None:
    """The full path or URI of a manifest ``image`` entry, or None if it is not inside the dataset.

    Relative paths are joined to ``dataset_root``. Local paths are compared after
    ``os.path.realpath``, so ``..`` segments, absolute paths elsewhere and symlinks that point out of
    the root are all refused. For an ``s3://`` dataset, a relative key or an ``s3://`` URI must stay
    under the dataset's bucket and prefix. Empty paths and paths with NUL bytes give None too.
    """
    image = str(image)
    if not image or "\x00" in image:
        return None
    try:
        if storage.is_s3(dataset_root):
            return _resolve_s3(str(dataset_root), image)
        return _resolve_local(str(dataset_root), image)
    except (ValueError, OSError, AmnetError):  # bad URI, over-long path, symlink loop...
        return None


def read_image_file(uri: str) -> tuple[bytes | None, str | None]:
    """``(bytes, None)`` or ``(None, reason)`` for an image file that is missing or unreadable.

    A missing file is a per-row problem (``"missing image file"``); any other S3 failure
    (credentials, endpoint) is not, and propagates as AmnetError so it is not mistaken for
    thousands of missing images.
    """
    if storage.is_s3(uri):
        try:
            return storage.read_bytes(uri), None
        except AmnetError:
            if not storage.exists(uri):  # raises itself for errors other than "not found"
                return None, "missing image file"
            raise
    if not os.path.exists(uri):
        return None, "missing image file"
    if not os.path.isfile(uri):
        return None, "image path is not a regular file"
    try:
        return storage.read_bytes(uri), None
    except OSError as exc:
        return None, f"unreadable image file ({type(exc).__name__})"
    except AmnetError:  # vanished between the check and the read
        return None, "missing image file"
