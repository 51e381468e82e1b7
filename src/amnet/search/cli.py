"""``amnet search``: this image, but with these attributes -> ranked gallery results.

Three outputs from one search: a readable table (default), JSON for scripts (``--json``) and a PNG
contact sheet of the query and its results (``--out``), where a green border marks a result that
has every requested attribute value.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from amnet import storage
from amnet.errors import AmnetError
from amnet.search.searcher import Loader, Result, Searcher

log = logging.getLogger(__name__)
TILE = 128  # thumbnail side in the sheet, pixels
PAD, GAP, LINE, HEADER, COLUMNS = 5, 8, 12, 22, 5
GREEN, RED, GREY, BLUE, DARK = (22, 150, 60), (190, 40, 40), (200, 200, 200), (40, 90, 200), (30, 30, 30)

MODEL_HELP = "models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID, or a model folder / s3:// prefix"
FEATURES_HELP = "gallery feature artifact (default: the registry's amnet.features_uri; none: featurize now)"
VISUAL = "visual search on the image's own features"  # what a search without changes is (Searcher.query_vector)
EPILOG = """examples:
  amnet search --model models:/amnet@champion --gallery-id synth0-0000027 --set color=blue --set collar=plush
  amnet search --model runs/model --features runs/features --gallery runs/split --image coat.jpg -k 10 --json
  amnet search --model models:/amnet/3 --gallery SPLIT --gallery-id ID --set color=red --out results.png

--model takes an MLflow model URI (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID; needs
MLFLOW_TRACKING_URI) or a model folder / s3:// prefix (output of `amnet step train`). A registered
model brings its gallery features (tag amnet.features_uri); pass --gallery (the split) to search by
gallery id from the stored image and to draw thumbnails. Without --features the gallery is
featurized on the fly. Valid attributes and values come from the model: a wrong one is an error
that lists them.
"""


def parse_changes(items: list[str]) -> dict[str, str]:
    """``["color=blue", "collar=plush"]`` -> ``{"color": "blue", "collar": "plush"}``."""
    changes: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise AmnetError(f"--set {item!r}: expected ATTRIBUTE=VALUE, e.g. --set color=blue")
        if name.strip() in changes:
            raise AmnetError(f"--set {item!r}: attribute {name.strip()!r} is set twice")
        changes[name.strip()] = value.strip()
    return changes


def format_table(results: list[Result], names: list[str], changes: dict[str, str]) -> str:
    """Rank, distance, whether the result has the requested values, id and every attribute."""
    head = ["rank", "distance", "match", "image_id", *names]
    rows = [[str(r.rank), f"{r.distance:.4f}", ("yes" if r.matches else "no") if changes else "-", r.image_id,
             *[r.attributes[n] for n in names]] for r in results]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    right = {0, 1}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                            strict=True)))
             for row in [head, *rows]]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _thumbnail(data: bytes | None) -> Image.Image:
    """The image fitted into TILE x TILE (small images enlarged), or a grey 'no image' tile."""
    tile = Image.new("RGB", (TILE, TILE), (225, 225, 225))
    if data is None:
        ImageDraw.Draw(tile).text((TILE // 2 - 24, TILE // 2 - 6), "no image", fill=(90, 90, 90))
        return tile
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        f = TILE / max(im.size)
        im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.BILINEAR)
    tile.paste(im, ((TILE - im.width) // 2, (TILE - im.height) // 2))
    return tile


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text


def contact_sheet(query: bytes | None, query_label: str, changes: dict[str, str], results: list[Result],
                  images: list[bytes | None]) -> Image.Image:
    """The query (blue frame, the requested changes under it) left of the results in rows, each with
    rank, distance and its values of the changed attributes (green = as requested, red = not); a green
    frame marks a result that has every requested value."""
    font = ImageFont.load_default()
    cell_w, cell_h = TILE + 2 * PAD + GAP, TILE + 2 * PAD + (2 + max(1, len(changes))) * LINE + GAP
    cols = min(COLUMNS, max(1, len(results)))
    rows = max(1, -(-len(results) // cols))
    left = PAD + cell_w + 2 * GAP  # results start right of the query column and its separator
    sheet = Image.new("RGB", (left + cell_w * cols, HEADER + cell_h * rows + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    legend = "green frame: has every requested value" if changes else VISUAL
    draw.text((PAD, 4), f"{len(results)} results  ·  {legend}", fill="black", font=font)
    draw.line([left - GAP - 1, HEADER, left - GAP - 1, sheet.height - PAD], fill=GREY, width=1)

    def cell(x: int, y: int, data: bytes | None, frame: tuple[int, int, int],
             lines: list[tuple[str, tuple[int, int, int]]]) -> None:
        draw.rectangle([x, y, x + TILE + 2 * PAD - 1, y + TILE + 2 * PAD - 1], fill=frame)
        sheet.paste(_thumbnail(data), (x + PAD, y + PAD))
        for i, (line, colour) in enumerate(lines):
            draw.text((x + 1, y + TILE + 2 * PAD + 1 + i * LINE), _fit(draw, line, font, cell_w - GAP),
                      fill=colour, font=font)

    wanted = [(f"-> {a}={v}", BLUE) for a, v in changes.items()] or [("no changes", DARK)]
    cell(PAD, HEADER, query, BLUE, [("query", DARK), (query_label, DARK), *wanted])
    for i, (r, data) in enumerate(zip(results, images, strict=True)):
        x, y = left + cell_w * (i % cols), HEADER + cell_h * (i // cols)
        shown = [(f"{a}={r.attributes[a]}", GREEN if r.attributes[a] == v else RED) for a, v in changes.items()]
        cell(x, y, data, GREEN if changes and r.matches else GREY,
             [(f"#{r.rank}  d={r.distance:.3f}", DARK), (r.image_id, DARK), *shown])
    return sheet


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="amnet search", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description=textwrap.fill("Search the gallery for a query image with some attributes changed (AMNet, "
                                  "§4): the query's representation is rewritten with the prototypes of the "
                                  "requested values, then the nearest gallery images are listed.", 100))
    p.add_argument("--model", required=True, metavar="URI", help=MODEL_HELP)
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--image", metavar="PATH", help="query image file (local or s3://)")
    query.add_argument("--gallery-id", metavar="ID", help="query by a gallery image's id (its stored image is used)")
    p.add_argument("--set", dest="changes", action="append", default=[], metavar="ATTR=VALUE",
                   help=f"desired attribute value; repeat for several (none = {VISUAL})")
    p.add_argument("-k", type=int, default=20, help="number of results (default 20)")
    p.add_argument("--features", metavar="URI", help=FEATURES_HELP)
    p.add_argument("--gallery", metavar="SPLIT", help="the split (or its gallery/ shards): query by gallery id, "
                   "thumbnails")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", metavar="PNG", help="also write a PNG contact sheet of the query and the results")
    return p


def main(argv: list[str] | None = None, load: Loader = Searcher.load) -> int:
    """``amnet search``. ``load`` builds the searcher from ``--model``, ``features=`` and ``gallery=``:
    :meth:`Searcher.load` (model files) or, from ``amnet search``, the loader that also resolves MLflow
    model URIs (:func:`amnet.ops.registry.model_uri.open_searcher`)."""
    args = build_parser().parse_args(argv)
    changes = parse_changes(args.changes)
    if args.k < 1:
        raise AmnetError(f"-k must be >= 1 (got {args.k})")
    if args.image is not None and not (storage.exists(args.image) if storage.is_s3(args.image)
                                       else os.path.isfile(args.image)):
        raise AmnetError(f"--image {args.image}: no such image file")
    searcher = load(args.model, features=args.features, gallery=args.gallery)
    query: dict = ({"gallery_id": args.gallery_id, "attributes": searcher.attributes(args.gallery_id)}
                   if args.gallery_id is not None else {"image": args.image})
    results = searcher.search(args.gallery_id if args.gallery_id is not None else Path(args.image)
                              if not storage.is_s3(args.image) else args.image, changes, k=args.k)
    if args.out:
        data = searcher.image_bytes(args.gallery_id) if args.gallery_id is not None else storage.read_bytes(args.image)
        sheet = contact_sheet(data, args.gallery_id or args.image.rsplit("/", 1)[-1], changes, results,
                              [searcher.image_bytes(r.image_id) for r in results])
        buf = io.BytesIO()
        sheet.save(buf, format="PNG")
        storage.write_bytes(args.out, buf.getvalue())
    if args.json:
        payload = {"model": searcher.source, "query": query, "changes": changes, "k": args.k,
                   "results": [r.to_dict() for r in results]}
        print(json.dumps(payload, indent=2))
        return 0
    described = ", ".join(f"{a}={v}" for a, v in query.get("attributes", {}).items())
    print(f"model:   {searcher.source} ({searcher.loaded.variant}, gallery of {searcher.size})")
    print(f"query:   {args.gallery_id or args.image}" + (f"  ({described})" if described else ""))
    print(f"changes: {', '.join(f'{a}={v}' for a, v in changes.items()) or f'none ({VISUAL})'}\n")
    print(format_table(results, searcher.vocab.names, changes), end="")
    if args.out:
        log.info("contact sheet: %s", args.out)
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
