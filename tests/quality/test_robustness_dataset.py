"""The badge collection ``quality/robustness.py`` renders honours the dataset contract.

The robustness check is only a check of the defaults if the product reads that collection
the way it reads any customer's: validation keeps every row and the labels are the rendered ones.
With ``variants`` > 0 the rows form variant groups (``item_id``) whose members differ only in the
changed attributes, as ``amnet data synth --variants`` garments do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from amnet.data.schema import ITEM_ID
from amnet.data.validate import validate_dataset
from tests.helpers import load_quality


def test_rendered_badges_pass_validation_with_their_own_vocabulary(tmp_path):
    bench = load_quality("robustness")
    out = tmp_path / "badges"
    bench.generate(str(out), num_images=24, seed=3, size=64)
    result = validate_dataset(str(out), progress=False)
    assert result.rows_in == 24 and result.num_kept == 24 and result.num_quarantined == 0
    assert list(result.vocab.names) == ["glyph", "ink", "shape", "fill", "border"]
    manifest = pd.read_parquet(out / "manifest.parquet")
    first = manifest.iloc[0]
    kept = result.kept.set_index("image_id").loc[first["image_id"], "labels"]
    assert [result.vocab.attributes[i].values[v] for i, v in enumerate(kept)] == [
        first[name] for name in result.vocab.names]


def test_rendering_is_a_function_of_the_seed(tmp_path):
    bench = load_quality("robustness")
    bench.generate(str(tmp_path / "a"), num_images=6, seed=1, size=64)
    bench.generate(str(tmp_path / "b"), num_images=6, seed=1, size=64)
    bench.generate(str(tmp_path / "c"), num_images=6, seed=2, size=64)
    a, b, c = (pd.read_parquet(tmp_path / x / "manifest.parquet") for x in "abc")
    assert (tmp_path / "a" / a.image[0]).read_bytes() == (tmp_path / "b" / b.image[0]).read_bytes()
    assert a.drop(columns="image_id").equals(b.drop(columns="image_id"))
    assert not a.drop(columns=["image_id", "image"]).equals(c.drop(columns=["image_id", "image"]))


# ---------------------------------------------------------------------------------------------
# Variant groups (``variants`` > 0): one badge re-rendered with one or two attributes changed


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pixels(root, manifest):
    return {r.image_id: np.asarray(Image.open(root / r.image), dtype=np.float32) for r in manifest.itertuples()}


def test_the_default_is_the_independent_layout_of_before(tmp_path):
    bench = load_quality("robustness")
    bench.generate(str(tmp_path / "a"), num_images=8, seed=3, size=64)
    bench.generate(str(tmp_path / "b"), num_images=8, seed=3, size=64, variants=0)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    manifest = pd.read_parquet(tmp_path / "a" / "manifest.parquet")
    assert ITEM_ID not in manifest.columns
    # the one per-row generator draws the labels first (the layout every earlier study rendered)
    assert manifest.drop(columns="image").head(4).to_dict("records") == [
        {"image_id": "badge3-0000000", "glyph": "A", "ink": "black", "shape": "diamond", "fill": "yellow",
         "border": "none"},
        {"image_id": "badge3-0000001", "glyph": "K", "ink": "red", "shape": "circle", "fill": "yellow",
         "border": "thin"},
        {"image_id": "badge3-0000002", "glyph": "A", "ink": "green", "shape": "diamond", "fill": "white",
         "border": "none"},
        {"image_id": "badge3-0000003", "glyph": "A", "ink": "red", "shape": "diamond", "fill": "white",
         "border": "thick"},
    ]


def test_variant_groups_are_a_function_of_the_seed(tmp_path):
    bench = load_quality("robustness")
    bench.generate(str(tmp_path / "a"), num_images=20, seed=1, size=64, variants=2)
    bench.generate(str(tmp_path / "b"), num_images=20, seed=1, size=64, variants=2)
    bench.generate(str(tmp_path / "c"), num_images=30, seed=1, size=64, variants=2)
    bench.generate(str(tmp_path / "d"), num_images=20, seed=2, size=64, variants=2)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    a, c, d = (pd.read_parquet(tmp_path / x / "manifest.parquet") for x in "acd")
    # a shorter dataset is a prefix of a longer one (its last item truncated, not re-rendered)
    assert a.equals(c.head(20))
    assert all((tmp_path / "a" / p).read_bytes() == (tmp_path / "c" / p).read_bytes() for p in a.image)
    assert not a.drop(columns=["image_id", "image", ITEM_ID]).equals(d.drop(columns=["image_id", "image", ITEM_ID]))


def test_members_of_an_item_differ_from_its_first_in_one_or_two_labels(tmp_path):
    bench = load_quality("robustness")
    out = tmp_path / "badges"
    bench.generate(str(out), num_images=48, seed=4, size=64, variants=3)
    result = validate_dataset(str(out), progress=False)
    assert result.num_kept == 48 and result.num_quarantined == 0
    manifest = pd.read_parquet(out / "manifest.parquet")
    names = list(bench.VOCAB.names)
    items = list(dict.fromkeys(manifest[ITEM_ID]))
    assert items == [f"badges4-item{k:06d}" for k in range(len(items))]  # in order, contiguous rows
    assert (manifest[ITEM_ID] != manifest[ITEM_ID].shift()).sum() == len(items)
    sizes = manifest.groupby(ITEM_ID).size()
    assert sizes.max() <= 4 and (sizes >= 2).sum() >= 5
    changes = []
    for _, rows in manifest.groupby(ITEM_ID, sort=False):
        labels = [tuple(r) for r in rows[names].itertuples(index=False)]
        assert len(set(labels)) == len(labels)  # no member repeats another's vector
        changes += [sum(x != y for x, y in zip(labels[0], other, strict=True)) for other in labels[1:]]
    assert set(changes) <= {1, 2} and 1 in changes


def test_variants_of_a_badge_share_its_look(tmp_path):
    """Nuisance (backdrop, position, scale, rotation, blur, noise, JPEG quality) is the item's, not the row's."""
    bench = load_quality("robustness")
    out = tmp_path / "badges"
    bench.generate(str(out), num_images=48, seed=6, size=64, variants=3)
    manifest = pd.read_parquet(out / "manifest.parquet")
    px = _pixels(out, manifest)
    firsts, within, corners = [], [], []

    def corner(a):  # 4x4 px corners: always backdrop (the badge stays within 0.56 side of the centre)
        return np.concatenate([a[:4, :4], a[:4, -4:], a[-4:, :4], a[-4:, -4:]])

    for _, rows in manifest.groupby(ITEM_ID, sort=False):
        ids = list(rows.image_id)
        firsts.append(ids[0])
        within += [np.abs(px[ids[0]] - px[o]).mean() for o in ids[1:]]
        corners += [np.abs(corner(px[ids[0]]) - corner(px[o])).mean() for o in ids[1:]]
    between = [np.abs(px[a] - px[b]).mean() for a, b in zip(firsts, firsts[1:], strict=False)]
    assert len(within) >= 10
    assert np.mean(within) < 0.4 * np.mean(between)  # redrawn nuisance would make them alike
    assert max(corners) < 4.0  # the same backdrop and noise, up to JPEG blocks that touch the badge


def test_variants_must_be_a_count():
    bench = load_quality("robustness")
    with pytest.raises(ValueError, match="variants"):
        bench.generate("unused", num_images=4, seed=0, size=64, variants=-1)
    with pytest.raises(SystemExit):
        bench.main(["--out", "unused", "--variants", "-1"])
