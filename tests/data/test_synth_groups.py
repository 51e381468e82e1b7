"""Variant groups of the synthetic dataset (``amnet data synth --variants V``): the legacy draw order kept,
determinism, the item_id column and group sizes, what a variant changes, that a re-rendered variant keeps
everything but the garment, validation, the CLIs and the group contact sheet."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from amnet.cli import main as cli_main
from amnet.data import preview, synth, validate
from amnet.data.schema import ITEM_ID, load_manifest, load_vocabulary
from amnet.errors import ConfigError

N, SIZE, V = 20, 32, 2

# sha256 of the raw pixels of images 0..5 of seed 5 at 64 px (``render`` before JPEG), recorded with the
# single-stream renderer as it was before named streams existed: the default dataset must not change.
LEGACY_PIXELS_DIGEST = "b90a01df0acb549cbf09b9c73fe64dfd4993c903f6bace9060bed990aec3a045"


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def grouped(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("groups") / "ds"
    synth.generate(str(out), N, seed=3, image_size=SIZE, progress=False, variants=V)
    return out


def test_legacy_render_is_unchanged() -> None:
    h = hashlib.sha256()
    for i in range(6):
        rng = synth.image_rng(5, i)
        h.update(synth.render(synth.sample_labels(rng), rng, 64).tobytes())
    assert h.hexdigest() == LEGACY_PIXELS_DIGEST
    # a generator and the shared Streams over it are the same thing
    labels = synth.sample_labels(synth.image_rng(9, 0))
    a = synth.render(labels, synth.image_rng(9, 1), 48)
    b = synth.render(labels, synth.Streams.shared(synth.image_rng(9, 1)), 48)
    assert a.tobytes() == b.tobytes()


def test_legacy_manifest_has_no_item_id(tmp_path: Path) -> None:
    synth.generate(str(tmp_path / "ds"), 3, seed=1, image_size=SIZE, progress=False)
    assert ITEM_ID not in load_manifest(str(tmp_path / "ds"), synth.VOCAB).columns


def test_grouped_output_is_deterministic_for_any_worker_count(grouped: Path, tmp_path: Path) -> None:
    synth.generate(str(tmp_path / "w2"), N, seed=3, image_size=SIZE, progress=False, variants=V, workers=2)
    assert _files(tmp_path / "w2") == _files(grouped)
    # a shorter dataset is a prefix of a longer one (the last item is truncated, not re-planned)
    synth.generate(str(tmp_path / "short"), 7, seed=3, image_size=SIZE, progress=False, variants=V)
    short = _files(tmp_path / "short")
    assert all(short[k] == _files(grouped)[k] for k in short if k.endswith(".jpg"))


def test_item_id_column_and_group_sizes(grouped: Path) -> None:
    df = load_manifest(str(grouped), load_vocabulary(str(grouped)))
    assert len(df) == N and df["image_id"].is_unique
    assert list(df["image_id"]) == [f"synth3-{i:07d}" for i in range(N)]
    assert list(df["image"]) == [synth.image_path(i) for i in range(N)]
    # items in order, contiguous, numbered from 0; each group exactly its planned label vectors
    items = list(dict.fromkeys(df[ITEM_ID]))
    assert items == [synth.item_id(3, k) for k in range(len(items))]
    for k, key in enumerate(items):
        rows = df[df[ITEM_ID] == key]
        plan = synth.plan_item(3, k, V)
        assert list(rows.index) == list(range(rows.index[0], rows.index[0] + len(rows)))
        assert 1 <= len(plan) <= V + 1
        assert len(rows) == len(plan) or k == len(items) - 1  # only the last item may be truncated
        assert [{a: r[a] for a in synth.VOCAB.names} for _, r in rows.iterrows()] == plan[: len(rows)]


def test_group_sizes_are_uniform() -> None:
    counts = Counter(len(synth.plan_item(0, k, V)) for k in range(900))
    assert set(counts) == {1, 2, 3}
    assert all(230 < c < 370 for c in counts.values()), counts


def test_variants_change_one_or_two_attributes_without_duplicates() -> None:
    changed: Counter[str] = Counter()
    sizes = Counter()
    for k in range(400):
        group = synth.plan_item(7, k, 4)
        base = group[0]
        assert base == synth.sample_labels(synth.Streams.keyed(7, k).get("labels"))
        assert len({tuple(g.values()) for g in group}) == len(group)  # no duplicate label vectors
        for v in group[1:]:
            diff = [a for a in synth.VOCAB.names if v[a] != base[a]]
            assert 1 <= len(diff) <= 2, (base, v)
            sizes[len(diff)] += 1
            changed.update(diff)
            for attr in synth.VOCAB.attributes:
                assert v[attr.name] in attr.values
    assert set(changed) == set(synth.VOCAB.names)  # every attribute gets varied, color most often
    assert changed.most_common(1)[0][0] == "color"
    assert sizes[1] > sizes[2] > 0


def _outside(mask: Image.Image, grow: int) -> np.ndarray:
    """Pixels at least ``grow`` px away from the garment (mask > 0)."""
    return np.asarray(mask.filter(ImageFilter.MaxFilter(2 * grow + 1))) == 0


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("change", [{"color": "blue"}, {"pattern": "dots"}, {"sleeve": "short"},
                                    {"color": "red", "fit": "loose"}, {"category": "jacket"}])
def test_a_variant_keeps_everything_but_the_garment(size: int, change: dict) -> None:
    """Same item, one or two labels changed: outside the garment (and, when the outline moves, its drop
    shadow, at most ``max(2, canvas // 40)`` canvas px off) the pixels are identical; on it they differ."""
    base = {"category": "coat", "color": "black", "sleeve": "long", "collar": "lapel", "pattern": "checks",
            "fit": "straight"}
    variant = {**base, **change}
    group = (base, variant)
    moves = not {"sleeve", "fit", "category"}.isdisjoint(change)
    ss = 2 if size < 96 else 1
    grow = 1 + (math.ceil(max(2, size * ss // 40) / ss) if moves else 0)
    for item in range(3):
        a, mask_a = synth.render_with_mask(base, synth.Streams.keyed(11, item), size, group)
        b, mask_b = synth.render_with_mask(variant, synth.Streams.keyed(11, item), size, group)
        assert a.size == b.size == (size, size)
        diff = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max(axis=-1)
        outside = _outside(mask_a, grow) & _outside(mask_b, grow)
        assert outside.mean() > 0.2
        assert diff[outside].max() == 0
        assert diff[~outside].max() > 30  # the change is visible on the garment
        if not moves:  # the outline itself did not move
            assert mask_a.tobytes() == mask_b.tobytes()


def test_variants_share_placement_and_backdrop_in_the_dataset(grouped: Path) -> None:
    """Decoded JPEGs of one item: the image corners (backdrop) nearly equal across its members."""
    df = load_manifest(str(grouped), synth.VOCAB)
    checked = 0
    for _, rows in df.groupby(ITEM_ID):
        pics = [np.asarray(Image.open(grouped / p).convert("RGB"), dtype=int) for p in rows["image"]]
        for p in pics[1:]:
            for corner in (p[:3, :3] - pics[0][:3, :3], p[-3:, -3:] - pics[0][-3:, -3:]):
                assert np.abs(corner).mean() < 8
            checked += 1
    assert checked > 0


def test_grouped_manifest_validates(grouped: Path) -> None:
    result = validate.validate_dataset(str(grouped), progress=False, workers=1)
    assert result.num_quarantined == 0 and result.num_kept == N
    groups = getattr(result, "groups", None)
    if groups is not None:  # validation knows item_id: one code per item, no row without a group
        df = load_manifest(str(grouped), synth.VOCAB)
        assert len(set(groups.tolist())) == df[ITEM_ID].nunique() and (groups >= 0).all()


def test_negative_variants_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--variants"):
        synth.generate(str(tmp_path / "x"), 4, image_size=SIZE, variants=-1)


def test_cli_variants_and_group_sheet(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert cli_main(["data", "synth", "--out", str(out), "--num-images", "9", "--image-size", "32", "--variants",
                     "2", "--no-progress"]) == 0
    df = load_manifest(str(out), synth.VOCAB)
    assert ITEM_ID in df.columns and df[ITEM_ID].nunique() < 9
    png = tmp_path / "groups.png"
    assert cli_main(["data", "preview", str(out), "--out", str(png), "--groups", "3"]) == 0
    res = preview.make_group_preview(str(out), str(png), groups=3)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (res["width"], res["height"])
    assert res["groups"] == 3 and res["images"] >= 3
    capsys.readouterr()
    assert cli_main(["data", "synth", "--out", str(tmp_path / "bad"), "--num-images", "3", "--variants",
                     "-1"]) == 3
    err = capsys.readouterr().err.strip()
    assert "--variants" in err and "\n" not in err
    # a dataset without item_id has no groups to show: a one-line error
    plain = tmp_path / "plain"
    synth.generate(str(plain), 3, image_size=SIZE, progress=False)
    assert cli_main(["data", "preview", str(plain), "--out", str(png), "--groups"]) == 3
    assert "item_id" in capsys.readouterr().err
