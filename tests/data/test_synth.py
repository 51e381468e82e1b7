"""The synthetic dataset generator and the preview sheet: determinism, contract, coverage, CLIs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from amnet.cli import main as cli_main
from amnet.data import preview, synth
from amnet.data.schema import load_manifest, load_vocabulary

N, SIZE = 24, 64


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path (temporary files would show up here too)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    synth.generate(str(out), N, seed=5, image_size=SIZE, progress=False)
    return out


def test_same_seed_gives_identical_bytes(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    summary = synth.generate(str(again), N, seed=5, image_size=SIZE, progress=False)
    assert summary["count"] == N and summary["images_per_s"] > 0
    first, second = _files(dataset), _files(again)
    assert len(first) == N + 2  # images + manifest.parquet + attributes.json
    assert first == second


def test_worker_count_does_not_change_output(dataset: Path, tmp_path: Path) -> None:
    par = tmp_path / "par"
    synth.generate(str(par), N, seed=5, image_size=SIZE, progress=False, workers=2)
    assert _files(par) == _files(dataset)


def test_other_seed_differs(dataset: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    synth.generate(str(other), N, seed=6, image_size=SIZE, progress=False)
    a, b = _files(dataset), _files(other)
    assert a["attributes.json"] == b["attributes.json"]
    assert a["manifest.parquet"] != b["manifest.parquet"]
    assert sum(a[k] != b[k] for k in a if k.endswith(".jpg")) == N


def test_contract_loads(dataset: Path) -> None:
    vocab = load_vocabulary(str(dataset))
    assert vocab == synth.VOCAB
    assert vocab.names == ["category", "color", "sleeve", "collar", "pattern", "fit"]
    assert vocab.sizes == [6, 12, 4, 5, 6, 3]
    df = load_manifest(str(dataset), vocab)
    assert len(df) == N and df["image_id"].is_unique
    for i, row in df.iterrows():
        assert row["image"] == synth.image_path(i) and not row["image"].startswith("/")
        assert {a: row[a] for a in vocab.names} == synth.sample_labels(synth.image_rng(5, i))
        with Image.open(dataset / row["image"]) as im:
            assert im.format == "JPEG" and im.size == (SIZE, SIZE) and im.mode == "RGB"


def test_every_value_appears_in_400_draws() -> None:
    """Labels only (no rendering): the first 400 images of seed 0 use every value of every attribute,
    and the distribution is non-uniform (a gallery then holds repeated attribute combinations)."""
    rows = [synth.sample_labels(synth.image_rng(0, i)) for i in range(400)]
    for attr in synth.VOCAB.attributes:
        counts = {v: sum(r[attr.name] == v for r in rows) for v in attr.values}
        assert min(counts.values()) > 0, (attr.name, counts)
    cats = [r["category"] for r in rows]
    assert max(map(cats.count, synth.CATEGORIES)) > 1.5 * min(map(cats.count, synth.CATEGORIES))


def test_render_every_value_at_64px() -> None:
    """Each value of each attribute renders (no geometry error) into a non-flat 64 px image."""
    base = {"category": "tee", "color": "blue", "sleeve": "short", "collar": "round", "pattern": "solid",
            "fit": "straight"}
    for m, attr in enumerate(synth.VOCAB.attributes):
        for k, value in enumerate(attr.values):
            img = synth.render({**base, attr.name: value}, synth.image_rng(1, 100 * m + k), 64)
            assert img.size == (64, 64)
            lo, hi = img.convert("L").getextrema()
            assert hi - lo > 40


def test_bad_arguments_raise_config_errors(tmp_path: Path) -> None:
    from amnet.errors import ConfigError

    with pytest.raises(ConfigError, match="num-images"):
        synth.generate(str(tmp_path / "x"), 0)
    with pytest.raises(ConfigError, match="image-size"):
        synth.generate(str(tmp_path / "x"), 4, image_size=16)


def test_preview_png_size(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    res = preview.make_preview(str(dataset), str(out), n=10, seed=1)
    cols, rows, tw, th = preview.layout(10, 6)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (cols * tw, rows * th) == (res["width"], res["height"])
    assert res["images"] == 10
    # n larger than the dataset shows every image once
    assert preview.make_preview(str(dataset), str(out), n=1000)["images"] == N


def test_preview_marks_unreadable_images(dataset: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    (broken / synth.image_path(0)).write_bytes(b"not a jpeg")
    res = preview.make_preview(str(broken), str(tmp_path / "g.png"), n=N)
    assert res["images"] == N


def test_cli_synth_and_preview(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    rc = cli_main(["data", "synth", "--out", str(out), "--num-images", "6", "--seed", "2", "--image-size", "48",
                   "--no-progress"])
    assert rc == 0
    assert "wrote 6 images" in capsys.readouterr().err  # a "wrote X" note: logged to stderr
    assert len(load_manifest(str(out), load_vocabulary(str(out)))) == 6
    png = tmp_path / "grid.png"
    assert cli_main(["data", "preview", str(out), "--out", str(png), "--n", "4"]) == 0
    assert Image.open(io.BytesIO(png.read_bytes())).size[0] > 0


def test_cli_bad_input_is_one_line_error(tmp_path: Path, capsys) -> None:
    rc = cli_main(["data", "synth", "--out", str(tmp_path / "x"), "--num-images", "0"])
    assert rc == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("amnet data synth: error:") and "\n" not in err
    assert cli_main(["data", "preview", str(tmp_path / "missing"), "--out", str(tmp_path / "g.png")]) == 3
