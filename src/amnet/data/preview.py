"""Contact sheet of a dataset: a grid of images, each with its attribute values printed under it.

Why: the fastest way to check that labels match pictures (for the synthetic generator and for any
imported dataset) is to look. Works on any dataset in the contract, local or ``s3://``; an image that
cannot be read shows as a grey tile marked "unreadable" instead of stopping the sheet.
"""

from __future__ import annotations

import argparse
import io
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from amnet import storage
from amnet.data.schema import load_manifest, load_vocabulary
from amnet.errors import AmnetError, ConfigError

TILE = 128  # image side in the sheet, pixels
LINE = 11  # text line height, pixels
PAD = 4
MAX_LINES = 8  # attributes shown per image (datasets with more get a "+k more" line)
COLUMNS = 8


def layout(n: int, num_attributes: int) -> tuple[int, int, int, int]:
    """(columns, rows, tile width, tile height) of a sheet of ``n`` images."""
    lines = min(num_attributes, MAX_LINES) + (1 if num_attributes > MAX_LINES else 0)
    cols = min(n, COLUMNS)
    rows = math.ceil(n / cols)
    return cols, rows, TILE + 2 * PAD, TILE + 2 * PAD + lines * LINE


def resolve(dataset: str, image: str) -> str:
    """An image cell as a readable URI: absolute paths and URIs as-is, others under the dataset."""
    if storage.is_s3(image) or os.path.isabs(image):
        return image
    return storage.join(dataset, image)


def _thumbnail(uri: str) -> Image.Image:
    """The image fitted into a TILE x TILE square (aspect kept), or a grey 'unreadable' tile."""
    tile = Image.new("RGB", (TILE, TILE), (200, 200, 200))
    try:
        with Image.open(io.BytesIO(storage.read_bytes(uri))) as im:
            im = im.convert("RGB")
            if max(im.size) > TILE:
                im.thumbnail((TILE, TILE), Image.BILINEAR)
            elif max(im.size) < TILE:  # small images are shown enlarged, so details stay visible
                f = TILE / max(im.size)
                im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.NEAREST)
            tile.paste(im, ((TILE - im.width) // 2, (TILE - im.height) // 2))
    except (AmnetError, OSError, ValueError):
        ImageDraw.Draw(tile).text((8, TILE // 2 - 6), "unreadable", fill=(150, 0, 0))
    return tile


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut with an ellipsis so it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def make_preview(dataset: str, out_png: str, n: int = 48, seed: int = 0) -> dict:
    """Write a PNG contact sheet of ``n`` randomly chosen images (seeded) of ``dataset``.

    Returns ``{"out", "images", "width", "height"}``. ``out_png`` may be local or ``s3://``.
    """
    if n < 1:
        raise ConfigError(f"--n must be >= 1 (got {n})")
    vocab = load_vocabulary(dataset)
    df = load_manifest(dataset, vocab)
    n = min(n, len(df))
    rows = np.sort(np.random.default_rng(seed).choice(len(df), size=n, replace=False))
    cols, nrows, tw, th = layout(n, vocab.num_attributes)
    sheet = Image.new("RGB", (cols * tw, nrows * th), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    names = vocab.names
    for k, row in enumerate(rows):
        rec = df.iloc[int(row)]
        x, y = (k % cols) * tw, (k // cols) * th
        sheet.paste(_thumbnail(resolve(dataset, str(rec["image"]))), (x + PAD, y + PAD))
        lines = [f"{a}: {rec[a] or '?'}" for a in names[:MAX_LINES]]
        if len(names) > MAX_LINES:
            lines.append(f"+{len(names) - MAX_LINES} more")
        for j, text in enumerate(lines):
            draw.text((x + PAD, y + PAD + TILE + 1 + j * LINE), _fit_text(draw, text, font, TILE),
                      fill=(20, 20, 20), font=font)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=False)
    storage.write_bytes(out_png, buf.getvalue())
    return {"out": out_png, "images": n, "width": sheet.width, "height": sheet.height}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="amnet data preview",
        description="Contact sheet of a dataset (folder or s3:// prefix): images with their labels, as PNG.",
        epilog="example: amnet data preview data/synth --out grid.png --n 48",
    )
    parser.add_argument("dataset", help="dataset folder or s3:// prefix (manifest.parquet + attributes.json)")
    parser.add_argument("--out", required=True, help="PNG to write (local path or s3:// URI)")
    parser.add_argument("--n", type=int, default=48, help="number of images (default 48)")
    parser.add_argument("--seed", type=int, default=0, help="which random images to show (default 0)")
    args = parser.parse_args(argv)
    res = make_preview(args.dataset, args.out, n=args.n, seed=args.seed)
    print(f"wrote {res['out']}: {res['images']} images, {res['width']}x{res['height']} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
