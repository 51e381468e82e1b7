"""Fig. 7 with the exact target: the grid picture, the section, and examples.parquet files from before targets.

Tiny synthetic PIL thumbnails; no model, no split.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image

from amnet.report import plots, sections
from amnet.report.page import section_html


def thumb(rgb: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 20), rgb).save(buf, format="JPEG")
    return buf.getvalue()


def block(target: bool) -> dict:
    thumbs = [thumb((40 * i, 0, 200)) for i in range(5)]
    return {"manipulation": "color: red → blue", "query_thumb": thumb((255, 0, 0)),
            "target_thumb": thumb((0, 0, 255)) if target else None,
            "rows": {"amnet": (thumbs, [False, True, True, False, False],
                               [False, True, False, False, False] if target else [False] * 5),
                     "no_memory": (thumbs, [False] * 5, [False] * 5)}}


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def blue_pixels(png: bytes) -> int:
    """Pixels of the exact-target frame colour (#2166ac)."""
    return int((np.abs(pixels(png) - (0x21, 0x66, 0xAC)).max(axis=2) < 12).sum())


def test_examples_grid_renders_with_and_without_targets():
    with_target = plots.examples_grid([block(True), block(False)])
    without = plots.examples_grid([block(False), block(False)])
    for png in (with_target, without):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert with_target != without
    assert pixels(with_target).shape[1] > pixels(without).shape[1]  # the exact-target column
    assert blue_pixels(with_target) > 200 and blue_pixels(without) < 20  # blue frames only with a target


def test_examples_grid_accepts_the_old_two_part_rows():
    old = {"manipulation": "sleeve: long → short", "query_thumb": thumb((9, 9, 9)),
           "rows": {"amnet": ([thumb((1, 1, 1))] * 3, [True, False, False])}}
    png = plots.examples_grid([old])
    assert png[:4] == b"\x89PNG" and blue_pixels(png) < 20


def frame(variant_offset: int, with_targets: bool) -> pd.DataFrame:
    ids = [[f"g{variant_offset + j}" for j in range(5)], [f"g{j}" for j in range(5)]]
    df = pd.DataFrame({
        "query_id": ["q1", "q2"], "num_changes": [1, 2],
        "manipulation": ["color: red → blue", "color: red → blue, sleeve: long → short"],
        "query_thumb": [thumb((255, 0, 0)), thumb((0, 255, 0))],
        "result_ids": ids, "result_thumbs": [[thumb((30 * j, 60, 90)) for j in range(5)]] * 2,
        "result_hits": [[True, False, False, False, False], [False] * 5], "result_notes": [[""] + ["x"] * 4] * 2,
    })
    if with_targets:
        df["target_id"] = pd.array(["g1", None], dtype="string")
        df["target_thumb"] = [thumb((0, 0, 255)), None]
        df["result_exact"] = [[i == "g1" for i in r] for r in ids]
    return df


def roundtrip(df: pd.DataFrame, tmp_path, name: str) -> pd.DataFrame:
    df.to_parquet(tmp_path / name)
    return pd.read_parquet(tmp_path / name)


def test_section_shows_the_exact_target_when_the_examples_have_one(tmp_path):
    frames = {"amnet": roundtrip(frame(0, True), tmp_path, "a.parquet"),
              "no_memory": roundtrip(frame(3, True), tmp_path, "b.parquet")}
    blocks = sections.example_blocks(frames)
    assert blocks[0]["target_id"] == "g1" and blocks[0]["target_thumb"] is not None
    assert blocks[1]["target_id"] is None and blocks[1]["target_thumb"] is None
    assert blocks[0]["exact"] == {"amnet": [False, True, False, False, False], "no_memory": [False] * 5}
    section = sections.examples(frames)
    (figure,) = section.figures
    assert "blue" in figure.caption and "exact target" in figure.caption and not figure.in_html  # drawn as HTML
    assert any("exact target" in p and "blue" in p for p in section.paragraphs)
    assert blue_pixels(figure.png) > 200
    unmarked = {v: df.assign(result_exact=[[False] * 5] * 2) for v, df in frames.items()}
    (plain,) = sections.examples(unmarked).figures  # the target shown, but not among the results
    assert blue_pixels(figure.png) > blue_pixels(plain.png) + 200  # the thick blue frame on the result
    assert "+ exact target" in section.markdown and "exact target" in section_html(section)
    page = section.html  # the HTML page: the target beside the query, the blue frame on the retrieved one
    first = page.split("<div class=example>")[1]  # q1: its target, and amnet's second result is that target
    assert "alt='exact target g1'" in first and first.count("class='thumb exact'") == 2
    assert sections.examples(unmarked).html.split("<div class=example>")[1].count("class='thumb exact'") == 1


def test_section_renders_examples_written_before_targets(tmp_path):
    frames = {"amnet": roundtrip(frame(0, False), tmp_path, "a.parquet"),
              "no_memory": roundtrip(frame(3, False), tmp_path, "b.parquet")}
    blocks = sections.example_blocks(frames)
    assert all(b["target_thumb"] is None for b in blocks)
    assert blocks[0]["exact"]["amnet"] == [False] * 5
    section = sections.examples(frames)
    (figure,) = section.figures
    assert figure.png[:4] == b"\x89PNG" and blue_pixels(figure.png) < 20
    assert "blue" not in figure.caption and not figure.in_html
    assert "+ exact target" not in section.markdown and "q1" in section.html
