"""Contact sheet of a dataset: a grid of images, each with its attribute values printed under it.

Why: the fastest way to check that labels match pictures (for the synthetic generator and for any
imported dataset) is to look. Works on any dataset in the contract, local or ``s3://``; an image that
cannot be read shows as a grey tile marked "unreadable" instead of stopping the sheet.

``--groups N`` shows variant groups instead (datasets with an ``item_id`` column, e.g.
``amnet data synth --variants V``): one row per item, its images side by side in manifest order, each
attribute that differs from the row's first image printed in red and marked with ``*``.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from amnet import storage
from amnet.data.schema import ITEM_ID, load_manifest, load_vocabulary
from amnet.errors import AmnetError, ConfigError

log = logging.getLogger(__name__)
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


CHANGED = (200, 20, 20)  # text color of an attribute that differs from the group's first image
MAX_GROUP = 8  # images shown per group row


def make_group_preview(dataset: str, out_png: str, groups: int = 6, seed: int = 0) -> dict:
    """Write a PNG sheet of ``groups`` randomly chosen (seeded) variant groups of ``dataset``: one row
    per ``item_id`` (groups of two or more images first), members side by side, changed labels in red.

    Returns ``{"out", "groups", "images", "width", "height"}``.
    """
    if groups < 1:
        raise ConfigError(f"--groups must be >= 1 (got {groups})")
    vocab = load_vocabulary(dataset)
    df = load_manifest(dataset, vocab)
    if ITEM_ID not in df.columns:
        raise ConfigError(f"{dataset}: no {ITEM_ID} column, so no variant groups to show; "
                          "make such a dataset with 'amnet data synth --variants 2' or drop --groups")
    items = df[ITEM_ID].astype("string").fillna("").str.strip()
    members = {k: list(v) for k, v in df.groupby(items, sort=True).indices.items() if k}
    if not members:
        raise ConfigError(f"{dataset}: every {ITEM_ID} cell is empty; no variant groups to show")
    multi = sorted(k for k, v in members.items() if len(v) > 1)
    single = sorted(k for k, v in members.items() if len(v) == 1)
    rng = np.random.default_rng(seed)
    chosen = list(rng.permutation(multi))[:groups]
    chosen += list(rng.permutation(single))[: groups - len(chosen)]
    chosen.sort(key=lambda k: members[k][0])
    names = vocab.names[:MAX_LINES]
    cols = min(MAX_GROUP, max(len(members[k]) for k in chosen))
    tw, th = TILE + 2 * PAD, TILE + 2 * PAD + len(names) * LINE
    head = LINE + 2
    sheet = Image.new("RGB", (cols * tw, len(chosen) * (th + head)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    shown = 0
    for r, key in enumerate(chosen):
        y = r * (th + head)
        rows = members[key]
        draw.text((PAD, y + 1), _fit_text(draw, f"{key}  ({len(rows)} images)", font, cols * tw - 2 * PAD),
                  fill=(60, 60, 160), font=font)
        first = df.iloc[int(rows[0])]
        for c, row in enumerate(rows[:cols]):
            rec = df.iloc[int(row)]
            x = c * tw
            sheet.paste(_thumbnail(resolve(dataset, str(rec["image"]))), (x + PAD, y + head + PAD))
            for j, a in enumerate(names):
                changed = c > 0 and rec[a] != first[a]
                text = f"{'*' if changed else ''}{a}: {rec[a] or '?'}"
                draw.text((x + PAD, y + head + PAD + TILE + 1 + j * LINE), _fit_text(draw, text, font, TILE),
                          fill=CHANGED if changed else (20, 20, 20), font=font)
            shown += 1
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=False)
    storage.write_bytes(out_png, buf.getvalue())
    return {"out": out_png, "groups": len(chosen), "images": shown, "width": sheet.width, "height": sheet.height}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="amnet data preview",
        description="Contact sheet of a dataset (folder or s3:// prefix): images with their labels, as PNG.",
        epilog=("examples:\n  amnet data preview data/synth --out grid.png --n 48\n"
                "  amnet data preview data/groups --out groups.png --groups 6   # variant groups (item_id)"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", help="dataset folder or s3:// prefix (manifest.parquet + attributes.json)")
    parser.add_argument("--out", required=True, help="PNG to write (local path or s3:// URI)")
    parser.add_argument("--n", type=int, default=48, help="number of images (default 48)")
    parser.add_argument("--seed", type=int, default=0, help="which random images to show (default 0)")
    parser.add_argument("--groups", type=int, nargs="?", const=6, default=None, metavar="G",
                        help="show G variant groups instead (default 6): one row per item_id, its images side "
                             "by side, labels that differ from the row's first image in red")
    args = parser.parse_args(argv)
    if args.groups is not None:
        res = make_group_preview(args.dataset, args.out, groups=args.groups, seed=args.seed)
        log.info("wrote %s: %s groups, %s images, %sx%s px", res["out"], res["groups"], res["images"],
                 res["width"], res["height"])
        return 0
    res = make_preview(args.dataset, args.out, n=args.n, seed=args.seed)
    log.info("wrote %s: %s images, %sx%s px", res["out"], res["images"], res["width"], res["height"])
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
