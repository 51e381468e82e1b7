"""The built-in synthetic fashion dataset: seeded garment drawings with DARN-like attribute labels.

Why it exists: the whole product (split, pretrain, AMNet training, retrieval) must run with no
download. Each image is a flat "product shot" of one garment drawn with PIL ``ImageDraw``; every
label is visible in the picture (checked by eye with ``amnet data preview``, also at 64 px):

- category: silhouette and construction details. tee = plain body with a hem stitch; blouse =
  button placket and curved shirt-tail hem; sweater = ribbed hem band and cuffs; dress = waist seam
  and a skirt to knee length; coat = long body, front opening, double row of buttons, pockets;
  jacket = short body, front opening, pocket flaps, waistband.
- color: the garment's main fabric color (12 names, far apart in RGB).
- sleeve: sleeve length (none, short, to the elbow, to the wrist).
- collar: neckline shape (round hole, deep V, lapel flaps, turtleneck tube, fluffy fur ring).
- pattern: fill in a second, contrasting color (stripes either way, dots, gingham checks, flowers).
- fit: body width relative to the neck and the length (slim tapered, straight, loose and flared).

Nuisance variation that no label names: position, scale, small rotation, sleeve angle, small
length/width changes, background color and gradient, drop shadow, lighting and white balance,
color jitter, pattern scale/phase/second color, sensor noise and JPEG quality.

Determinism: image ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` alone, so the output
is byte-identical for a seed whatever the worker count or order. Attribute frequencies are mildly
non-uniform and correlated with the category (coats mostly long-sleeved, dresses often sleeveless),
as in real catalogues; that also makes exact attribute combinations recur in a gallery.

Variant groups (``--variants V``, V > 0): rows are grouped into *items*, the same garment re-rendered
with one or two attributes changed (a style sold in several colours or sleeve lengths), so that
exact-target retrieval ("this coat, but blue") can be measured. The manifest then has a string column
``item_id`` (``synth{seed}-item{item:06d}``); rows keep their ``image_id`` and ``image`` path by row
number. Item ``k`` holds a base label vector (``sample_labels`` of the item's "labels" stream) and
``n ~ uniform{0..V}`` variants, i.e. group sizes are uniform over 1..V+1 (with V = 2, two thirds of the
items have at least two members; mean size 1 + V/2). Each variant changes one attribute (60 %) or
two (40 %) of the base: which attribute is drawn with weights color 4, sleeve 3, pattern 3, collar 2,
fit 2, category 1, the new value from the per-category weights with the base value excluded; a vector
already in the group is redrawn. Items are laid out in order until ``num_images`` rows are written
(the last one truncated; a truncated item renders exactly as in a longer dataset).

Random streams: every random choice of ``render`` is taken from a named stream (``Streams.get``).
In the default (legacy) mode all names share the image's one generator, so the draw order and the
output are exactly those of earlier versions. In grouped mode each name has its own generator seeded
by ``(seed, item, name)``, shared by all the item's variants, and draws whose count depends on a label
(sleeve shape, stripe width, flowers, fur tufts, the second color) have their own stream, so the
unchanged look (shade jitter, proportions, placement, rotation, pattern phase, background, shadow,
lighting, noise, JPEG quality) is identical across the variants. Placement and the pattern grid use
the union of the group's outlines, and the background is kept away from every member's color, so a
colour change alters only pixels on the garment.
"""

from __future__ import annotations

import argparse
import bisect
import io
import itertools
import logging
import math
import multiprocessing
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from PIL import Image, ImageChops, ImageDraw

from amnet import storage
from amnet.data.schema import ITEM_ID, Attribute, Vocabulary, write_dataset
from amnet.errors import ConfigError

log = logging.getLogger(__name__)
RGB = tuple[int, int, int]
Point = tuple[float, float]

# The 12 colors: names and their base RGB, chosen far apart so lighting (+-15 %), white balance
# (+-4 %) and jitter (+-10 per channel) never move one into another.
PALETTE: dict[str, RGB] = {
    "black": (28, 28, 30),
    "white": (242, 242, 238),
    "red": (205, 28, 38),
    "blue": (35, 110, 222),
    "green": (30, 145, 60),
    "yellow": (246, 214, 40),
    "pink": (246, 142, 188),
    "purple": (128, 48, 168),
    "orange": (246, 132, 22),
    "brown": (122, 76, 40),
    "gray": (134, 134, 134),
    "navy": (26, 38, 98),
}

CATEGORIES = ("tee", "blouse", "sweater", "dress", "coat", "jacket")
SLEEVES = ("sleeveless", "short", "elbow", "long")
COLLARS = ("round", "v-neck", "lapel", "turtleneck", "plush")
PATTERNS = ("solid", "h-stripes", "v-stripes", "dots", "checks", "print")
FITS = ("slim", "straight", "loose")

VOCAB = Vocabulary(
    (
        Attribute("category", CATEGORIES),
        Attribute("color", tuple(PALETTE)),
        Attribute("sleeve", SLEEVES),
        Attribute("collar", COLLARS),
        Attribute("pattern", PATTERNS),
        Attribute("fit", FITS),
    )
)

# ---------------------------------------------------------------------------------------------
# Label distribution: category first, the other attributes conditioned on it (weights, not
# normalised; every value keeps a few percent so every combination can occur).

CATEGORY_WEIGHTS = (22, 17, 15, 20, 12, 14)
COLOR_WEIGHTS = {  # base popularity x per-category preference
    "base": (14, 12, 9, 10, 6, 5, 7, 5, 4, 7, 9, 9),
    "coat": (2.0, 0.6, 0.8, 0.8, 0.7, 0.5, 0.6, 0.6, 0.7, 2.0, 1.8, 1.8),
    "jacket": (1.6, 0.7, 1.0, 1.2, 1.1, 0.7, 0.6, 0.7, 0.8, 1.6, 1.2, 1.6),
    "dress": (1.3, 1.1, 1.6, 1.0, 0.9, 1.0, 1.8, 1.4, 0.8, 0.5, 0.6, 1.0),
}
SLEEVE_WEIGHTS = {  # sleeveless, short, elbow, long
    "tee": (18, 65, 11, 6),
    "blouse": (15, 25, 25, 35),
    "sweater": (4, 8, 20, 68),
    "dress": (40, 30, 15, 15),
    "coat": (3, 4, 13, 80),
    "jacket": (4, 8, 16, 72),
}
COLLAR_WEIGHTS = {  # round, v-neck, lapel, turtleneck, plush
    "tee": (58, 28, 4, 5, 5),
    "blouse": (25, 28, 35, 6, 6),
    "sweater": (34, 24, 4, 30, 8),
    "dress": (40, 38, 8, 8, 6),
    "coat": (10, 6, 44, 10, 30),
    "jacket": (20, 10, 42, 12, 16),
}
PATTERN_WEIGHTS = {  # solid, h-stripes, v-stripes, dots, checks, print
    "tee": (42, 22, 6, 9, 7, 14),
    "blouse": (34, 6, 16, 18, 11, 15),
    "sweater": (44, 24, 6, 6, 12, 8),
    "dress": (34, 7, 6, 20, 8, 25),
    "coat": (58, 4, 5, 5, 24, 4),
    "jacket": (54, 6, 6, 5, 21, 8),
}
FIT_WEIGHTS = {  # slim, straight, loose
    "tee": (28, 45, 27),
    "blouse": (35, 40, 25),
    "sweater": (22, 38, 40),
    "dress": (36, 26, 38),
    "coat": (25, 45, 30),
    "jacket": (35, 40, 25),
}


@lru_cache(maxsize=64)
def _cumulative(weights: tuple[float, ...]) -> tuple[float, ...]:
    total = sum(weights)
    return tuple(itertools.accumulate(w / total for w in weights))


def _pick(rng: np.random.Generator, values: tuple[str, ...], weights: tuple[float, ...]) -> str:
    """A weighted draw with one uniform number (much cheaper than ``rng.choice(p=...)``)."""
    k = bisect.bisect_right(_cumulative(tuple(weights)), rng.random())
    return values[min(k, len(values) - 1)]


def sample_labels(rng: np.random.Generator) -> dict[str, str]:
    """One garment's labels: category first, then the others conditioned on it."""
    cat = _pick(rng, CATEGORIES, CATEGORY_WEIGHTS)
    color_w = COLOR_WEIGHTS["base"]
    if cat in COLOR_WEIGHTS:
        color_w = tuple(b * f for b, f in zip(color_w, COLOR_WEIGHTS[cat], strict=True))
    return {
        "category": cat,
        "color": _pick(rng, tuple(PALETTE), color_w),
        "sleeve": _pick(rng, SLEEVES, SLEEVE_WEIGHTS[cat]),
        "collar": _pick(rng, COLLARS, COLLAR_WEIGHTS[cat]),
        "pattern": _pick(rng, PATTERNS, PATTERN_WEIGHTS[cat]),
        "fit": _pick(rng, FITS, FIT_WEIGHTS[cat]),
    }


# ---------------------------------------------------------------------------------------------
# Named random streams


@lru_cache(maxsize=256)
def _stable_int(name: str) -> int:
    """A stream name as a number that is the same in every process (``hash`` is salted)."""
    return zlib.crc32(name.encode())


class Streams:
    """The random streams of one rendered image, by name (``"frame"``, ``"background"``, ...).

    ``Streams.shared(rng)``: every name is ``rng`` itself (the legacy single-stream draw order).
    ``Streams.keyed(seed, item)``: name ``n`` is ``default_rng([seed, item, crc32(n)])``, created on
    first use and then kept, so each name's draws do not move when another name draws more or less.
    """

    __slots__ = ("_shared", "_key", "_cache")

    def __init__(self, shared: np.random.Generator | None = None, key: tuple[int, int] | None = None):
        self._shared = shared
        self._key = key
        self._cache: dict[str, np.random.Generator] = {}

    @classmethod
    def shared(cls, rng: np.random.Generator) -> Streams:
        return cls(shared=rng)

    @classmethod
    def keyed(cls, seed: int, item: int) -> Streams:
        return cls(key=(int(seed), int(item)))

    @property
    def grouped(self) -> bool:
        return self._shared is None

    def get(self, name: str) -> np.random.Generator:
        if self._shared is not None:
            return self._shared
        rng = self._cache.get(name)
        if rng is None:
            assert self._key is not None
            rng = self._cache[name] = np.random.default_rng([*self._key, _stable_int(name)])
        return rng

    @property
    def key(self) -> tuple[int, int]:
        """(seed, item) of keyed streams."""
        if self._key is None:
            raise ValueError("shared streams have no key")
        return self._key


# ---------------------------------------------------------------------------------------------
# Variant groups

# How often each attribute is the one a variant changes (see the module docstring).
VARIANT_WEIGHTS = {"category": 1, "color": 4, "sleeve": 3, "collar": 2, "pattern": 3, "fit": 2}
TWO_CHANGES = 0.4  # fraction of variants that change two attributes instead of one


def _value_weights(attr: str, category: str) -> tuple[float, ...]:
    """The weights ``sample_labels`` uses for ``attr`` given the category."""
    if attr == "category":
        return tuple(CATEGORY_WEIGHTS)
    if attr == "color":
        w = COLOR_WEIGHTS["base"]
        if category in COLOR_WEIGHTS:
            w = tuple(b * f for b, f in zip(w, COLOR_WEIGHTS[category], strict=True))
        return tuple(w)
    table = {"sleeve": SLEEVE_WEIGHTS, "collar": COLLAR_WEIGHTS, "pattern": PATTERN_WEIGHTS, "fit": FIT_WEIGHTS}
    return tuple(table[attr][category])


def _variant(base: dict[str, str], rng: np.random.Generator) -> dict[str, str]:
    """``base`` with one or two attributes changed to another value (drawn from ``rng``)."""
    names = tuple(VARIANT_WEIGHTS)
    weights = list(VARIANT_WEIGHTS.values())
    k = 2 if rng.random() < TWO_CHANGES else 1
    chosen = []
    for _ in range(k):
        a = _pick(rng, names, tuple(weights))
        chosen.append(a)
        weights[names.index(a)] = 0
    chosen.sort(key=lambda a: a != "category")  # the category first: the others are conditioned on it
    out = dict(base)
    for a in chosen:
        values = VOCAB.attributes[VOCAB.attribute_index(a)].values
        w = tuple(0.0 if v == base[a] else x for v, x in zip(values, _value_weights(a, out["category"]), strict=True))
        out[a] = _pick(rng, values, w)
    return out


def plan_group(seed: int, item: int, variants: int, sample: Callable[[np.random.Generator], dict[str, str]],
               vary: Callable[[dict[str, str], np.random.Generator], dict[str, str]]) -> list[dict[str, str]]:
    """The label vectors of item ``item``: ``sample``'s base first, then 0..``variants`` distinct ``vary``
    variants of it, each from the item's own named streams (any catalogue: garments here, badges in
    ``quality/robustness.py``)."""
    streams = Streams.keyed(seed, item)
    group = [sample(streams.get("labels"))]
    size = 1 + int(streams.get("group").integers(variants + 1))
    rng = streams.get("variants")
    while len(group) < size:
        for _ in range(32):
            labels = vary(group[0], rng)
            if labels not in group:
                group.append(labels)
                break
        else:  # practically unreachable (hundreds of 1-2 attribute changes); keep the group smaller
            break
    return group


def plan_item(seed: int, item: int, variants: int) -> list[dict[str, str]]:
    """The label vectors of garment ``item``: the base first, then 0..``variants`` distinct variants."""
    return plan_group(seed, item, variants, sample_labels, _variant)


def item_id(seed: int, item: int) -> str:
    return f"synth{seed}-item{item:06d}"


# ---------------------------------------------------------------------------------------------
# Color helpers


def _clip(c) -> RGB:
    return tuple(int(min(255, max(0, round(v)))) for v in c)  # type: ignore[return-value]


def _luma(c: RGB) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _dist(a: RGB, b: RGB) -> float:
    return math.dist(a, b)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    """``a`` moved a fraction ``t`` of the way to ``b``."""
    return _clip(x + (y - x) * t for x, y in zip(a, b, strict=True))


def _scale(c: RGB, f: float) -> RGB:
    return _clip(v * f for v in c)


def _detail(c: RGB, amount: float = 0.45) -> RGB:
    """A seam/outline tone for fabric ``c``: darker on light fabric, lighter on very dark fabric."""
    if _luma(c) < 70:
        return _mix(c, (255, 255, 255), amount * 0.8)
    return _scale(c, 1.0 - amount)


def _inside(c: RGB) -> RGB:
    """The garment's inside seen through the neck opening: a deep shade that still reads as a hole."""
    return _mix(_scale(c, 0.35), (20, 18, 18), 0.5) if _luma(c) > 60 else (8, 8, 10)


OFF_WHITE: RGB = (240, 238, 230)
CHARCOAL: RGB = (34, 34, 38)


def _second_color(rng: np.random.Generator, main: RGB) -> RGB:
    """The pattern's contrasting color: a neutral opposite in lightness or another distant color."""
    if rng.random() < 0.55:
        return OFF_WHITE if _luma(main) < 150 else CHARCOAL
    options = [c for c in PALETTE.values() if _dist(c, main) > 150]
    return options[int(rng.integers(len(options)))]


def _background(rng: np.random.Generator, mains: list[RGB]) -> tuple[RGB, RGB]:
    """Two gradient end colors for the backdrop, kept clearly apart from the garment color (from
    every color of the garment's variant group, so that the backdrop is shared by the group)."""
    main = mains[0]
    for _ in range(8):
        kind = rng.random()
        if kind < 0.55:  # studio: light neutral with a slight tint
            base = np.full(3, rng.uniform(195, 250)) + rng.uniform(-8, 8, 3)
        elif kind < 0.8:  # pastel
            base = rng.uniform(150, 250, 3)
        else:  # dark, muted
            base = np.full(3, rng.uniform(40, 110)) + rng.uniform(-15, 15, 3)
        c1 = _clip(base)
        if min(_dist(c1, m) for m in mains) > 110:
            break
    else:
        c1 = (70, 70, 74) if _luma(main) > 128 else (225, 225, 220)
        if len(mains) > 1:  # the fallback farthest from the group's colors
            c1 = max((c1, (70, 70, 74), (225, 225, 220)), key=lambda c: min(_dist(c, m) for m in mains))
    c2 = _clip(np.asarray(c1) + rng.uniform(-40, 40) + rng.uniform(-10, 10, 3))
    return c1, c2


# ---------------------------------------------------------------------------------------------
# Geometry in "garment units": the shoulder line is y = 0, the centre line x = 0, a top is about
# 0.8 units long. ``_Frame`` maps units to pixels.

# Chest / waist / hem half-widths and shoulder half-width per fit, for tops, coats and dresses.
TOP_FIT = {"slim": (0.19, 0.155, 0.175, 0.245), "straight": (0.24, 0.24, 0.25, 0.27),
           "loose": (0.30, 0.33, 0.39, 0.32)}
COAT_FIT = {"slim": (0.21, 0.18, 0.25, 0.26), "straight": (0.25, 0.25, 0.29, 0.28),
            "loose": (0.30, 0.33, 0.45, 0.32)}
DRESS_FIT = {"slim": (0.19, 0.15, 0.20, 0.24), "straight": (0.21, 0.18, 0.33, 0.25),
             "loose": (0.26, 0.27, 0.52, 0.28)}
LENGTH = {"tee": 0.78, "blouse": 0.80, "sweater": 0.78, "dress": 1.22, "coat": 1.20, "jacket": 0.72}
# Sleeve length (units from the shoulder) and angle from vertical (degrees, a nuisance range).
SLEEVE_SHAPE = {"short": (0.17, (50, 60)), "elbow": (0.38, (36, 46)), "long": (0.66, (20, 30))}
NECK = 0.10  # neck half-width
COLLAR_DEPTH = {"round": 0.10, "v-neck": 0.28, "lapel": 0.38, "turtleneck": 0.03, "plush": 0.10}


@dataclass
class _Body:
    """The garment's outline and key measures, in units."""

    length: float
    chest: float
    waist: float
    waist_y: float
    hem: float
    shoulder: float
    torso: list[Point]
    sleeves: list[tuple[list[Point], Point, Point, Point]]  # polygon, cuff end top/bottom, direction


def _body(labels: dict[str, str], streams: Streams) -> _Body:
    """Silhouette of the garment: torso polygon (with skirt/flare) and sleeve quadrilaterals."""
    cat, fit = labels["category"], labels["fit"]
    rng = streams.get("body")
    table = COAT_FIT if cat == "coat" else DRESS_FIT if cat == "dress" else TOP_FIT
    chest, waist, hem, shoulder = (v + rng.uniform(-0.012, 0.012) for v in table[fit])
    length = LENGTH[cat] + rng.uniform(-0.04, 0.04)
    waist_y = 0.42 if cat == "dress" else 0.5 * length
    sleeveless = labels["sleeve"] == "sleeveless"

    half: list[Point] = [(NECK, 0.0)]  # right half, top to bottom
    if sleeveless:  # narrow strap, then a deep armhole curving out to the chest
        half += [(NECK + 0.06, 0.0), (NECK + 0.065, 0.1), (chest - 0.035, 0.22), (chest, 0.29)]
    else:
        half += [(shoulder, 0.04), (chest, 0.24)]
    half.append((waist, waist_y))
    if cat == "blouse":  # shirt-tail hem: sides higher than the centre
        half += [(hem, length - 0.03), (hem * 0.5, length + 0.01), (0.0, length + 0.02)]
    else:
        half.append((hem, length))
    torso = half + [(-x, y) for x, y in reversed(half)]

    sleeves = []
    if not sleeveless:
        reach, (lo, hi) = SLEEVE_SHAPE[labels["sleeve"]]
        srng = streams.get("sleeves")  # drawn only when there are sleeves
        reach += srng.uniform(-0.025, 0.025)
        theta = math.radians(srng.uniform(lo, hi))
        end_w = {"short": 0.15, "elbow": 0.13, "long": 0.11}[labels["sleeve"]]
        end_w += {"slim": -0.025, "straight": 0.0, "loose": 0.045}[fit]
        for s in (-1, 1):
            top = (s * shoulder, 0.04)
            pit = (s * (chest - 0.01), 0.24)
            d = (s * math.sin(theta), math.cos(theta))
            n = (-s * math.cos(theta), math.sin(theta))
            e1 = (top[0] + reach * d[0], top[1] + reach * d[1])
            e2 = (e1[0] + end_w * n[0], e1[1] + end_w * n[1])
            sleeves.append(([top, e1, e2, pit], e1, e2, d))
    return _Body(length, chest, waist, waist_y, hem, shoulder, torso, sleeves)


def _edge_x(body: _Body, y: float) -> float:
    """Half-width of the torso outline at height ``y`` (linear between outline points)."""
    pts = [p for p in body.torso if p[0] >= 0 and p[1] >= 0.2]
    pts.sort(key=lambda p: p[1])
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if y0 <= y <= y1 and y1 > y0:
            return x0 + (x1 - x0) * (y - y0) / (y1 - y0)
    return pts[-1][0]


def _extent(body: _Body, collar: str) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) in units of everything that will be drawn."""
    pts = list(body.torso) + [p for poly, *_ in body.sleeves for p in poly]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    top = {"turtleneck": -0.16, "plush": -0.12, "lapel": -0.06}.get(collar, -0.05)
    return min(xs), min(min(ys), top), max(xs), max(ys)


@dataclass
class _Frame:
    """Units -> pixels, rotation included: ``p = (ox, oy) + u * R(angle) @ (x, y)``.

    Rotating coordinates (not the finished picture) keeps edges sharp and costs nothing; circles
    stay circles and non-circular shapes are drawn as polygons so they rotate with the garment.
    """

    u: float
    ox: float
    oy: float
    cos: float = 1.0
    sin: float = 0.0

    def p(self, x: float, y: float) -> Point:
        return (self.ox + self.u * (x * self.cos - y * self.sin), self.oy + self.u * (x * self.sin + y * self.cos))

    def pts(self, points) -> list[Point]:
        return [self.p(x, y) for x, y in points]

    def w(self, units: float) -> int:
        """A line width in pixels, never thinner than one pixel."""
        return max(1, round(units * self.u))


def _frame(extent, size: int, rng: np.random.Generator) -> _Frame:
    """Rotate (+-7 degrees), scale and place the garment: its rotated bounding box fills 70-88 % of
    the frame, at a random position in the space left."""
    x0, y0, x1, y1 = extent
    a = math.radians(rng.uniform(-7, 7))
    turned = _Frame(1.0, 0.0, 0.0, math.cos(a), math.sin(a))
    corners = turned.pts([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    bx0, by0 = min(c[0] for c in corners), min(c[1] for c in corners)
    bx1, by1 = max(c[0] for c in corners), max(c[1] for c in corners)
    u = rng.uniform(0.70, 0.88) * size / max(bx1 - bx0, by1 - by0)
    ox = rng.uniform(0.25, 0.75) * (size - (bx1 - bx0) * u) - bx0 * u
    oy = rng.uniform(0.25, 0.75) * (size - (by1 - by0) * u) - by0 * u
    return _Frame(u, ox, oy, turned.cos, turned.sin)


# ---------------------------------------------------------------------------------------------
# Drawing


_UNIT_CIRCLE = [(math.cos(2 * math.pi * k / 24), math.sin(2 * math.pi * k / 24)) for k in range(24)]


class _Painter:
    """Draws on the garment layer (RGB) and, for shapes that add fabric, on its alpha mask."""

    def __init__(self, size: int, frame: _Frame, fill: RGB):
        self.frame = frame
        self.layer = Image.new("RGB", (size, size), fill)
        self.mask = Image.new("L", (size, size), 0)
        self.d = ImageDraw.Draw(self.layer)
        self.m = ImageDraw.Draw(self.mask)

    def poly(self, pts, fill: RGB | None = None, outline: RGB | None = None, width: float = 0.0,
             fabric: bool = False) -> None:
        xy = self.frame.pts(pts)
        w = self.frame.w(width) if outline is not None else 0
        if fill is not None or outline is not None:
            self.d.polygon(xy, fill=fill, outline=outline, width=w)
        if fabric:
            self.m.polygon(xy, fill=255, outline=255, width=w)

    def circle(self, cx: float, cy: float, r: float, fill: RGB | None = None, outline: RGB | None = None,
               width: float = 0.0, fabric: bool = False) -> None:
        px, py = self.frame.p(cx, cy)
        rp = r * self.frame.u
        xy = [(px - rp, py - rp), (px + rp, py + rp)]
        w = self.frame.w(width) if outline is not None else 0
        self.d.ellipse(xy, fill=fill, outline=outline, width=w)
        if fabric:
            self.m.ellipse(xy, fill=255, outline=255, width=w)

    def oval(self, box, fill: RGB | None = None, outline: RGB | None = None, width: float = 0.0,
             fabric: bool = False) -> None:
        """An ellipse inside ``box`` (units), as a polygon so that it turns with the garment."""
        x0, y0, x1, y1 = box
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        self.poly([(cx + rx * c, cy + ry * s) for c, s in _UNIT_CIRCLE], fill, outline, width, fabric)

    def line(self, pts, color: RGB, width: float) -> None:
        self.d.line(self.frame.pts(pts), fill=color, width=self.frame.w(width))


def _draw_pattern(pt: _Painter, kind: str, main: RGB, second: RGB, extent, streams: Streams) -> None:
    """Fill the garment's bounding box with the pattern (the layer is already the main color).

    Period and phase come first from stream "pattern" (shared by every kind, so a pattern change keeps
    the grid); the kind's own draw is the stream's last; flowers have their own stream."""
    if kind == "solid":
        return
    rng = streams.get("pattern")
    x0, y0, x1, y1 = extent
    x0, y0, x1, y1 = x0 - 0.1, y0 - 0.1, x1 + 0.1, y1 + 0.1
    period = rng.uniform(0.13, 0.17)
    phase_x, phase_y = rng.uniform(0, period, 2)
    xs = np.arange(x0 - phase_x, x1, period)
    ys = np.arange(y0 - phase_y, y1, period)
    if kind == "h-stripes":
        t = period * rng.uniform(0.32, 0.42)
        for y in ys:
            pt.poly([(x0, y), (x1, y), (x1, y + t), (x0, y + t)], fill=second)
    elif kind == "v-stripes":
        t = period * rng.uniform(0.32, 0.42)
        for x in xs:
            pt.poly([(x, y0), (x + t, y0), (x + t, y1), (x, y1)], fill=second)
    elif kind == "dots":
        step = period * 1.25
        r = step * rng.uniform(0.2, 0.26)
        for j, y in enumerate(np.arange(y0 - phase_y, y1, step)):
            shift = step / 2 if j % 2 else 0.0  # staggered rows read as dots, not as a grid
            for x in np.arange(x0 - phase_x + shift, x1, step):
                pt.circle(x, y, r, fill=second)
    elif kind == "checks":  # gingham: half-tone bands both ways, full tone where they cross
        step = period * 1.25
        t = step * 0.36  # thin enough that the main color stays the largest area
        mid = _mix(main, second, 0.5)
        cxs = np.arange(x0 - phase_x, x1, step)
        cys = np.arange(y0 - phase_y, y1, step)
        for y in cys:
            pt.poly([(x0, y), (x1, y), (x1, y + t), (x0, y + t)], fill=mid)
        for x in cxs:
            pt.poly([(x, y0), (x + t, y0), (x + t, y1), (x, y1)], fill=mid)
        for y in cys:
            for x in cxs:
                pt.poly([(x, y), (x + t, y), (x + t, y + t), (x, y + t)], fill=second)
    elif kind == "print":
        _draw_flowers(pt, main, second, (x0, y0, x1, y1), streams.get("flowers"))


def _draw_flowers(pt: _Painter, main: RGB, second: RGB, box, rng: np.random.Generator) -> None:
    """A floral print: jittered grid of five-petal flowers and leaves in two accent colors."""
    x0, y0, x1, y1 = box
    accent = _mix(second, main, 0.35)
    step = rng.uniform(0.22, 0.27)
    for y in np.arange(y0, y1, step):
        for x in np.arange(x0, x1, step):
            cx, cy = x + rng.uniform(0, step * 0.6), y + rng.uniform(0, step * 0.6)
            r = step * rng.uniform(0.16, 0.22)
            if rng.random() < 0.3:  # a leaf: an elongated blob at a random angle
                b = rng.uniform(0, math.pi)
                cb, sb = math.cos(b), math.sin(b)
                pt.poly([(cx + r * 1.5 * c * cb - r * 0.6 * s * sb, cy + r * 1.5 * c * sb + r * 0.6 * s * cb)
                         for c, s in _UNIT_CIRCLE[::3]], fill=accent)
                continue
            turn = rng.uniform(0, 2 * math.pi)
            for k in range(5):
                a = turn + k * 2 * math.pi / 5
                px, py = cx + r * math.cos(a), cy + r * math.sin(a)
                pt.circle(px, py, r * 0.7, fill=second)
            pt.circle(cx, cy, r * 0.5, fill=accent)


def _draw_silhouette(pt: _Painter, body: _Body, main: RGB) -> None:
    """Sleeves then torso as fabric, each with a seam outline."""
    seam = _detail(main, 0.4)
    for poly, *_ in body.sleeves:
        pt.poly(poly, outline=seam, width=0.012, fabric=True)
    pt.poly(body.torso, outline=seam, width=0.012, fabric=True)


def _rib_band(pt: _Painter, quad: list[Point], main: RGB, ribs: int) -> None:
    """A ribbed knit band (hem or cuff): darker fabric crossed by ``ribs`` fine lines."""
    band, rib = _detail(main, 0.18), _detail(main, 0.45)
    pt.poly(quad, fill=band, outline=rib, width=0.01)
    (ax, ay), (bx, by), (cx, cy), (dx, dy) = quad  # a-b top edge, d-c bottom edge
    for i in range(1, ribs):
        t = i / ribs
        pt.line([(ax + (bx - ax) * t, ay + (by - ay) * t), (dx + (cx - dx) * t, dy + (cy - dy) * t)],
                rib, 0.008)


def _cuffs(pt: _Painter, body: _Body, main: RGB, depth: float, ribbed: bool) -> None:
    """A band at each sleeve end, ``depth`` units deep (ribbed for knitwear)."""
    for _, e1, e2, d in body.sleeves:
        quad = [(e1[0] - depth * d[0], e1[1] - depth * d[1]), (e2[0] - depth * d[0], e2[1] - depth * d[1]),
                e2, e1]
        if ribbed:
            _rib_band(pt, quad, main, 5)
        else:
            pt.poly(quad, outline=_detail(main, 0.4), width=0.008)


def _draw_category(pt: _Painter, labels: dict[str, str], body: _Body, main: RGB) -> None:
    """Construction details that tell the category apart."""
    cat = labels["category"]
    seam = _detail(main, 0.45)
    top = COLLAR_DEPTH[labels["collar"]]
    L = body.length
    contrast = OFF_WHITE if _luma(main) < 150 else CHARCOAL
    if cat == "tee":
        hw = _edge_x(body, L - 0.035)
        pt.line([(-hw, L - 0.035), (hw, L - 0.035)], seam, 0.01)
        _cuffs(pt, body, main, 0.035, ribbed=False)
    elif cat == "sweater":
        y = L - 0.09
        hw, hb = _edge_x(body, y), body.hem * 0.94
        _rib_band(pt, [(-hw, y), (hw, y), (hb, L), (-hb, L)], main, max(6, round(hw * 40)))
        _cuffs(pt, body, main, 0.07, ribbed=True)
    elif cat == "blouse":
        pt.poly([(-0.03, top), (0.03, top), (0.03, L + 0.02), (-0.03, L + 0.02)], fill=main,
                outline=seam, width=0.01)
        for y in np.linspace(top + 0.06, L - 0.06, 5):
            pt.circle(0.0, y, 0.022, fill=contrast)
        _cuffs(pt, body, main, 0.05, ribbed=False)
    elif cat == "dress":
        y = body.waist_y
        pt.poly([(-body.waist - 0.01, y - 0.02), (body.waist + 0.01, y - 0.02),
                 (body.waist + 0.01, y + 0.02), (-body.waist - 0.01, y + 0.02)], fill=seam)
        fold = _detail(main, 0.25)
        for f in (-0.55, -0.2, 0.2, 0.55):  # skirt folds fanning out from the waist
            pt.line([(f * body.waist, y + 0.04), (f * body.hem * 0.95, L - 0.02)], fold, 0.01)
    else:  # coat, jacket: front opening, pockets
        pt.line([(0.0, top), (0.0, L)], seam, 0.016)
        if cat == "coat":
            for y in np.linspace(top + 0.08, min(top + 0.5, 0.75), 3):
                for x in (-0.06, 0.06):
                    pt.circle(x, y, 0.022, fill=contrast)
            py, pw = 0.72, 0.11
        else:
            y = L - 0.07
            hw = _edge_x(body, y)
            pt.poly([(-hw, y), (hw, y), (body.hem, L), (-body.hem, L)], fill=_detail(main, 0.15),
                    outline=seam, width=0.01)
            pt.line([(0.0, y), (0.0, L)], seam, 0.016)
            py, pw = L - 0.2, 0.1
        for s in (-1, 1):  # pocket flaps
            cx = s * (_edge_x(body, py) * 0.55)
            pt.poly([(cx - pw / 2, py), (cx + pw / 2, py), (cx + pw / 2, py + 0.045), (cx - pw / 2, py + 0.045)],
                    fill=_detail(main, 0.12), outline=seam, width=0.01)
        _cuffs(pt, body, main, 0.04, ribbed=False)


def _draw_collar(pt: _Painter, collar: str, main: RGB, rng: np.random.Generator) -> None:
    """The neckline, drawn last so it sits on top of the pattern and the silhouette."""
    rim, hole = _detail(main, 0.45), _inside(main)
    nw = NECK
    if collar == "round":
        pt.oval((-nw, -0.04, nw, COLLAR_DEPTH["round"]), fill=hole, outline=rim, width=0.025, fabric=True)
    elif collar == "v-neck":
        pt.oval((-nw, -0.04, nw, 0.03), fill=hole, outline=rim, width=0.02, fabric=True)
        pt.poly([(-nw, 0.0), (nw, 0.0), (0.0, COLLAR_DEPTH["v-neck"])], fill=hole, outline=rim,
                width=0.022)
    elif collar == "lapel":
        depth = COLLAR_DEPTH["lapel"]
        facing = _mix(main, (255, 255, 255), 0.18) if _luma(main) < 200 else _scale(main, 0.9)
        pt.poly([(-nw - 0.01, -0.05), (nw + 0.01, -0.05), (nw + 0.02, 0.02), (-nw - 0.02, 0.02)],
                fill=facing, outline=rim, width=0.012, fabric=True)
        pt.poly([(-nw, 0.0), (nw, 0.0), (0.0, depth)], fill=hole)
        for s in (-1, 1):  # the two folded-back flaps with their notch
            pt.poly([(s * (nw - 0.005), -0.03), (s * (nw + 0.11), 0.12), (s * (nw + 0.06), 0.16),
                     (s * 0.012, depth)], fill=facing, outline=rim, width=0.013)
    elif collar == "turtleneck":
        tube = _detail(main, 0.12)
        rib = _detail(main, 0.35)
        pt.poly([(-nw + 0.005, -0.16), (nw - 0.005, -0.16), (nw + 0.01, 0.03), (-nw - 0.01, 0.03)],
                fill=tube, outline=rib, width=0.012, fabric=True)
        pt.line([(-nw + 0.005, -0.10), (nw - 0.005, -0.10)], rib, 0.012)  # the fold
        for x in np.linspace(-nw + 0.035, nw - 0.035, 5):
            pt.line([(x, -0.09), (x, 0.02)], rib, 0.007)
    elif collar == "plush":
        fur = (188, 168, 138) if _luma(main) > 195 else (242, 236, 222)
        edge = _scale(fur, 0.78)
        pt.oval((-nw, -0.02, nw, 0.09), fill=hole, fabric=True)
        for k in range(22):
            a = 2 * math.pi * k / 22 + rng.uniform(-0.08, 0.08)
            rx, ry = nw + 0.055, 0.085
            cx, cy = rx * math.cos(a), 0.025 + ry * math.sin(a)
            r = rng.uniform(0.04, 0.055)
            tone = _scale(fur, rng.uniform(0.9, 1.04))
            pt.circle(cx, cy, r, fill=tone, outline=edge, width=0.006, fabric=True)


@lru_cache(maxsize=16)
def _noise_bank(size: int, sigma: int) -> Image.Image:
    """A fixed noise texture centred on 128, twice the image side (a seeded constant, so output
    stays deterministic); each image adds a random window of it."""
    rng = np.random.default_rng(20170721 + sigma)
    noise = 128 + sigma * rng.standard_normal((2 * size, 2 * size, 3), dtype=np.float32)
    return Image.fromarray(np.clip(noise + 0.5, 0, 255).astype(np.uint8), "RGB")


def _finish(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Global nuisance: lighting and white balance (per-channel gain), then sensor noise."""
    g = rng.uniform(0.85, 1.15) * rng.uniform(0.96, 1.04, 3)
    img = img.convert("RGB", matrix=(g[0], 0, 0, 0, 0, g[1], 0, 0, 0, 0, g[2], 0))
    sigma = int(rng.choice([0, 3, 5, 8]))
    if sigma:
        size = img.size[0]
        ox, oy = (int(v) for v in rng.integers(0, size, 2))
        noise = _noise_bank(size, sigma).crop((ox, oy, ox + size, oy + size))
        img = ImageChops.add(img, noise, scale=1.0, offset=-128)
    return img


GRADIENT_STEPS = 32  # backdrop directions (quantised so the ramps can be cached)


@lru_cache(maxsize=4 * GRADIENT_STEPS)
def _ramp(size: int, step: int) -> Image.Image:
    """A 0..255 ramp across the image along direction ``step`` of GRADIENT_STEPS."""
    a = 2 * math.pi * step / GRADIENT_STEPS
    axis = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    t = math.cos(a) * axis[None, :] + math.sin(a) * axis[:, None]
    return Image.fromarray(np.clip((t + 0.71) * 180, 0, 255).astype(np.uint8), "L")


def _gradient(size: int, c1: RGB, c2: RGB, rng: np.random.Generator) -> Image.Image:
    """A backdrop blending ``c1`` into ``c2`` along a random direction."""
    ramp = _ramp(size, int(rng.integers(GRADIENT_STEPS)))
    return Image.composite(Image.new("RGB", (size, size), c2), Image.new("RGB", (size, size), c1), ramp)


def _shade(labels: dict[str, str], streams: Streams) -> RGB:
    """The garment's main color: the named color with a brightness and per-channel jitter."""
    rng = streams.get("shade")
    return _clip(np.asarray(PALETTE[labels["color"]]) * rng.uniform(0.93, 1.07) + rng.uniform(-10, 10, 3))


@lru_cache(maxsize=64)
def _group_look(key: tuple[int, int], group: tuple[tuple[tuple[str, str], ...], ...]):
    """(union of the outlines, main colors in group order) of a variant group, replayed from the
    item's streams (cached: a worker renders an item's members one after another)."""
    extent, mains = None, []
    for items in group:
        labels = dict(items)
        replay = Streams.keyed(*key)
        mains.append(_shade(labels, replay))
        e = _extent(_body(labels, replay), labels["collar"])
        extent = e if extent is None else (min(extent[0], e[0]), min(extent[1], e[1]),
                                           max(extent[2], e[2]), max(extent[3], e[3]))
    return extent, mains


def render_with_mask(labels: dict[str, str], rng: np.random.Generator | Streams, size: int = 128,
                     group: tuple[dict[str, str], ...] | list[dict[str, str]] = ()) -> tuple[Image.Image, Image.Image]:
    """Draw one garment with the given labels; every other choice comes from ``rng``. Returns the
    picture and the garment's coverage mask (L, 255 = fabric; the drop shadow not included).

    ``rng`` is one generator (every draw from it, in the legacy order) or a ``Streams``. ``group``:
    the label vectors of the garment's variant group (keyed streams only), so that placement, pattern
    grid and backdrop are shared by all of them (the union of their outlines, away from all colors).

    Below 96 px the drawing is made at twice the size and halved (box filter), so thin seams,
    buttons and dots stay visible instead of breaking into aliased pixels.
    """
    streams = rng if isinstance(rng, Streams) else Streams.shared(rng)
    ss = 2 if size < 96 else 1
    canvas = size * ss
    main = _shade(labels, streams)
    second = _second_color(streams.get("second"), main)
    body = _body(labels, streams)
    extent = _extent(body, labels["collar"])
    mains = [main]
    if group:  # the group's outline and colors: each member's geometry replayed from the same streams
        if not streams.grouped:
            raise ValueError("render: a variant group needs keyed streams (Streams.keyed)")
        extent, mains = _group_look(streams.key, tuple(tuple(m.items()) for m in group))
    frame = _frame(extent, canvas, streams.get("frame"))

    pt = _Painter(canvas, frame, main)
    _draw_pattern(pt, labels["pattern"], main, second, extent, streams)
    _draw_silhouette(pt, body, main)
    _draw_category(pt, labels, body, main)
    _draw_collar(pt, labels["collar"], main, streams.get("collar"))

    bg = streams.get("background")
    img = _gradient(canvas, *_background(bg, mains), bg)
    shadow_rng = streams.get("shadow")
    if shadow_rng.random() < 0.5:  # soft drop shadow
        shift = int(shadow_rng.integers(1, max(2, canvas // 40) + 1))
        shadow = pt.mask.transform(pt.mask.size, Image.AFFINE, (1, 0, -shift, 0, 1, -shift))
        img = Image.composite(Image.blend(img, Image.new("RGB", img.size), 0.18), img, shadow)
    img.paste(pt.layer, mask=pt.mask)
    mask = pt.mask
    if ss > 1:
        img, mask = img.reduce(ss), mask.reduce(ss)
    return _finish(img, streams.get("finish")), mask


def render(labels: dict[str, str], rng: np.random.Generator | Streams, size: int = 128,
           group: tuple[dict[str, str], ...] | list[dict[str, str]] = ()) -> Image.Image:
    """The picture of ``render_with_mask`` (see there)."""
    return render_with_mask(labels, rng, size, group)[0]


# ---------------------------------------------------------------------------------------------
# Dataset writing


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for image ``index``: independent of every other image and of run order."""
    return np.random.default_rng([int(seed), int(index)])


def _jpeg(labels: dict[str, str], streams: Streams, size: int, group=()) -> bytes:
    """The rendered garment as JPEG bytes (quality from stream "jpeg")."""
    img = render(labels, streams, size, group)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(streams.get("jpeg").integers(70, 96)))
    return buf.getvalue()


def render_sample(seed: int, index: int, size: int) -> tuple[dict[str, str], bytes]:
    """Labels and JPEG bytes of image ``index`` of dataset ``seed`` (independent garments)."""
    rng = image_rng(seed, index)
    labels = sample_labels(rng)
    return labels, _jpeg(labels, Streams.shared(rng), size)


def render_variant(seed: int, item: int, member: int, group, size: int) -> bytes:
    """JPEG bytes of member ``member`` (0 = the base) of item ``item``, whose label vectors are ``group``
    (``plan_item``): drawn from the item's keyed streams, so the members differ only where labels do."""
    return _jpeg(group[member], Streams.keyed(seed, item), size, tuple(group))


def plan_rows(seed: int, num_images: int, variants: int):
    """``(item, member, group)`` for rows 0..num_images-1: items in order, the last one truncated."""
    item, done = 0, 0
    while done < num_images:
        group = tuple(plan_item(seed, item, variants))
        for member in range(min(len(group), num_images - done)):
            yield item, member, group
        done += len(group)
        item += 1


def image_path(index: int) -> str:
    """Path of image ``index`` relative to the dataset root (always '/'-separated)."""
    return f"images/{index // 10000:03d}/{index:07d}.jpg"


def _write_one(args: tuple) -> dict[str, str]:
    out, seed, index, size, member = args
    rel = image_path(index)
    row = {"image_id": f"synth{seed}-{index:07d}", "image": rel}
    if member is None:
        labels, data = render_sample(seed, index, size)
    else:
        item, k, group = member
        labels, data = group[k], render_variant(seed, item, k, group, size)
        row[ITEM_ID] = item_id(seed, item)
    storage.write_bytes(storage.join(out, rel), data)
    return {**row, **labels}


def generate(out: str, num_images: int, seed: int = 0, image_size: int = 128, progress: bool = True,
             workers: int = 1, variants: int = 0) -> dict:
    """Render ``num_images`` garments into dataset ``out`` (folder or s3:// prefix).

    Writes ``images/NNN/NNNNNNN.jpg``, ``manifest.parquet`` and ``attributes.json``; the same seed
    gives byte-identical files for any ``workers``. ``variants`` > 0 groups the rows into items of
    1..variants+1 re-rendered variants (manifest column ``item_id``; see the module docstring).
    Returns count, items, seconds and images per second.
    """
    if num_images < 1:
        raise ConfigError(f"--num-images must be >= 1 (got {num_images})")
    if image_size < 32:
        raise ConfigError(f"--image-size must be >= 32 so every attribute stays visible (got {image_size})")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1 (got {workers})")
    if isinstance(variants, bool) or not isinstance(variants, int) or variants < 0:
        raise ConfigError(f"--variants must be an integer >= 0 (got {variants!r}); 0 = independent garments")
    from tqdm import tqdm

    start = time.perf_counter()
    if variants == 0:
        tasks = [(out, seed, i, image_size, None) for i in range(num_images)]
    else:
        tasks = [(out, seed, i, image_size, m) for i, m in enumerate(plan_rows(seed, num_images, variants))]
    if workers == 1:
        rows = [_write_one(t) for t in tqdm(tasks, desc="synth", unit="img", disable=not progress)]
    else:
        # forkserver/spawn, not fork: the caller may hold threads (torch, tqdm) that fork would copy
        # in a locked state. imap keeps index order.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if ctx.get_start_method() == "forkserver":
            ctx.set_forkserver_preload([__name__])  # import once in the server, not per worker
        with ctx.Pool(workers) as pool:
            chunk = max(1, min(64, num_images // (8 * workers)))
            results = pool.imap(_write_one, tasks, chunksize=chunk)
            rows = list(tqdm(results, total=num_images, desc="synth", unit="img", disable=not progress))
    columns = ["image_id", "image", *([ITEM_ID] if variants else []), *VOCAB.names]
    manifest = pd.DataFrame(rows, columns=columns)
    write_dataset(out, manifest, VOCAB)
    seconds = time.perf_counter() - start
    return {
        "out": out,
        "count": num_images,
        "items": int(manifest[ITEM_ID].nunique()) if variants else num_images,
        "variants": variants,
        "seed": seed,
        "image_size": image_size,
        "seconds": round(seconds, 3),
        "images_per_s": round(num_images / seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="amnet data synth",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Render the built-in synthetic fashion dataset (no download needed).\n\n"
            "Each image is one garment with 6 labelled attributes: category, color, sleeve, collar,\n"
            "pattern, fit. Unlabelled nuisance: position, scale, rotation, background, lighting,\n"
            "color jitter, noise, JPEG quality. Writes images/, manifest.parquet, attributes.json;\n"
            "the same seed gives byte-identical files whatever --workers is.\n\n"
            "--variants V groups the images into items (manifest column item_id): each item is one\n"
            "garment in 1..V+1 versions that differ in one or two attributes (a coat sold in several\n"
            "colors or sleeve lengths) and render identically otherwise (same placement, backdrop,\n"
            "lighting), for measuring exact-target retrieval (\"this coat, but blue\")."
        ),
        epilog=(
            "examples:\n"
            "  amnet data synth --out data/synth --num-images 20000 --seed 0 --workers 2\n"
            "  amnet data synth --out s3://amnet/datasets/synth --num-images 5000\n"
            "  amnet data synth --out data/groups --num-images 2000 --variants 2\n"
            "  amnet data preview data/synth --out grid.png   # look at images with their labels"
        ),
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder or s3://bucket/prefix")
    parser.add_argument("--num-images", type=int, required=True, metavar="N", help="how many images to render")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="dataset seed (default 0)")
    parser.add_argument("--image-size", type=int, default=128, metavar="PX",
                        help="square image side in pixels, >= 32 (default 128)")
    parser.add_argument("--workers", type=int, default=1, metavar="W",
                        help="rendering processes (default 1; the output does not depend on it)")
    parser.add_argument("--variants", type=int, default=0, metavar="V",
                        help="0 = independent garments (default); V > 0 = items of 1..V+1 images, the same "
                             "garment re-rendered with 1-2 attributes changed (manifest column item_id)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    summary = generate(args.out, args.num_images, seed=args.seed, image_size=args.image_size,
                       progress=not args.no_progress, workers=args.workers, variants=args.variants)
    log.info("wrote %s images to %s in %.1f s (%.0f img/s, seed %s, %s px)", summary["count"], summary["out"],
             summary["seconds"], summary["images_per_s"], summary["seed"], summary["image_size"])
    if args.variants:
        log.info("%s items (variant groups of up to %s images, column %s)", summary["items"], args.variants + 1,
                 ITEM_ID)
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
