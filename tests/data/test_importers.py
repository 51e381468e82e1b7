"""Importers: fake DeepFashion and CSV trees become datasets that load and validate."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from PIL import Image

from amnet import cli
from amnet.data import importers
from amnet.data.importers import import_csv, import_deepfashion
from amnet.data.schema import load_manifest, load_vocabulary
from amnet.data.validate import validate_dataset
from amnet.errors import DatasetError


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


def listing(header: str, rows: list[str]) -> str:
    return f"{len(rows)}\n{header}\n" + "\n".join(rows) + "\n"


# Attribute columns: type 1 texture x2, type 2 fabric x1 (one value only -> dropped), type 3 shape x2
# (name with spaces), type 4 part x1 (never positive -> dropped), type 5 style x2.
ATTRS = [("floral", 1), ("striped", 1), ("denim", 2), ("a-line", 3), ("fit and flare", 3),
         ("pocket", 4), ("boho", 5), ("classic", 5)]
CATEGORIES = [("Blouse", 1), ("Dress", 3), ("Jeans", 2)]  # Jeans never used -> not in the vocabulary
IMAGES = [
    # name, category (1-based), attribute values (1 / -1 / 0), partition
    ("img/Blouse_A/img_00000001.jpg", 1, [1, -1, 1, -1, -1, -1, 1, -1], "train"),
    ("img/Blouse_A/img_00000002.jpg", 1, [-1, 1, -1, 1, -1, -1, -1, 1], "val"),
    ("img/Dress_B/img_00000001.jpg", 2, [1, 1, -1, -1, 1, 0, 1, -1], "test"),  # two textures -> ''
    ("img/Dress_B/img_00000002.jpg", 2, [0, -1, 1, 1, -1, -1, -1, 1], "train"),
]


def fake_deepfashion(root, images=IMAGES, partition=True, skip_image=None) -> str:
    (root / "Anno").mkdir(parents=True)
    (root / "Anno" / "list_category_cloth.txt").write_text(
        listing("category_name  category_type", [f"{n:<28} {t}" for n, t in CATEGORIES]))
    (root / "Anno" / "list_category_img.txt").write_text(
        listing("image_name  category_label", [f"{n:<60} {c}" for n, c, _, _ in images]))
    (root / "Anno" / "list_attr_cloth.txt").write_text(
        listing("attribute_name  attribute_type", [f"{n:<28} {t}" for n, t in ATTRS]))
    (root / "Anno" / "list_attr_img.txt").write_text(
        listing("image_name  attribute_labels",
                [f"{n:<60} " + " ".join(f"{v:>2}" for v in vals) for n, _, vals, _ in images]))
    if partition:
        (root / "Eval").mkdir()
        (root / "Eval" / "list_eval_partition.txt").write_text(
            listing("image_name  evaluation_status", [f"{n:<60} {p}" for n, _, _, p in images]))
    for name, *_ in images:
        if name != skip_image:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(jpeg())
    return str(root)


def test_deepfashion_contract(tmp_path, caplog):
    root = fake_deepfashion(tmp_path / "df")
    out = str(tmp_path / "out")
    summary = import_deepfashion(root, out, progress=False)
    assert summary["rows"] == 4 and summary["copied"] == 4
    assert summary["dropped_attributes"] == ["fabric", "part"]
    assert "attribute 'fabric' dropped" in caplog.text  # a logged warning

    vocab = load_vocabulary(out)
    assert vocab.names == ["category", "texture", "shape", "style"]
    assert vocab.attributes[0].values == ("Blouse", "Dress")  # unobserved Jeans left out
    assert vocab.attributes[2].values == ("a-line", "fit and flare")
    manifest = load_manifest(out, vocab)
    assert manifest["texture"].tolist() == ["floral", "striped", "", ""]
    assert manifest["shape"].tolist() == ["", "a-line", "fit and flare", "a-line"]
    raw = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert raw["partition"].tolist() == ["train", "val", "test", "train"]
    assert (tmp_path / "out" / "img" / "Dress_B" / "img_00000002.jpg").read_bytes() == jpeg()

    result = validate_dataset(out, progress=False)
    assert len(result.kept) == 4 and result.quarantine.empty
    assert result.kept["labels"].tolist()[2] == [1, -1, 1, 0]


def test_deepfashion_missing_image_and_unsafe_path_stay_traceable(tmp_path):
    bad = [*IMAGES, ("../escape.jpg", 1, [1, -1, -1, 1, -1, -1, 1, -1], "train")]
    (tmp_path / "escape.jpg").write_bytes(jpeg())
    root = fake_deepfashion(tmp_path / "df", images=bad, partition=False,
                            skip_image="img/Blouse_A/img_00000002.jpg")
    summary = import_deepfashion(root, str(tmp_path / "out"), progress=False)
    assert (summary["copied"], summary["not_copied"], summary["unsafe_paths"]) == (3, 1, 1)
    result = validate_dataset(str(tmp_path / "out"), progress=False)
    assert result.rows_in == 5 and len(result.kept) == 3
    reasons = sorted(result.quarantine["reason"])
    assert reasons == ["image path escapes the dataset root", "missing image file"]
    raw = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert set(raw["partition"]) == {""}


def test_deepfashion_missing_listing_is_named(tmp_path):
    root = fake_deepfashion(tmp_path / "df")
    (tmp_path / "df" / "Anno" / "list_attr_img.txt").unlink()
    with pytest.raises(DatasetError, match="list_attr_img.txt: missing"):
        import_deepfashion(root, str(tmp_path / "out"), progress=False)


def test_deepfashion_truncated_listing(tmp_path):
    root = fake_deepfashion(tmp_path / "df")
    path = tmp_path / "df" / "Anno" / "list_category_img.txt"
    path.write_text(path.read_text().rsplit("\n", 2)[0] + "\n")
    with pytest.raises(DatasetError, match="declares 4 rows but has 3"):
        import_deepfashion(root, str(tmp_path / "out"), progress=False)


def test_deepfashion_bad_attribute_type(tmp_path):
    root = fake_deepfashion(tmp_path / "df")
    path = tmp_path / "df" / "Anno" / "list_attr_cloth.txt"
    path.write_text(path.read_text().replace("denim                        2", "denim 9"))
    with pytest.raises(DatasetError, match=r"list_attr_cloth.txt:5: value 9 out of range 1..5"):
        import_deepfashion(root, str(tmp_path / "out"), progress=False)


def test_deepfashion_cli(tmp_path, capsys):
    root = fake_deepfashion(tmp_path / "df")
    assert cli.main(["data", "import", "deepfashion", "--root", root, "--out", str(tmp_path / "o"),
                     "--no-progress"]) == 0
    assert "wrote 4 rows" in capsys.readouterr().err  # the summary is logged (stderr)
    assert cli.main(["data", "import", "deepfashion", "--root", str(tmp_path / "none"),
                     "--out", str(tmp_path / "o2")]) == 3
    assert "list_category_cloth.txt: missing" in capsys.readouterr().err


# ---------------------------------------------------------------- CSV


def fake_csv(tmp_path, rows: list[dict]) -> tuple[str, str]:
    root = tmp_path / "photos"
    for r in rows:
        if r["file"] and not r["file"].startswith(("/", "..")):
            (root / r["file"]).parent.mkdir(parents=True, exist_ok=True)
            (root / r["file"]).write_bytes(jpeg())
    csv = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return str(csv), str(root)


CSV_ROWS = [
    {"file": "a.jpg", "color": "red", "sleeve": "long", "brand": "x"},
    {"file": "sub/b.jpg", "color": "blue", "sleeve": "", "brand": "x"},
    {"file": "c.jpg", "color": "green", "sleeve": "short", "brand": "x"},
]


def test_csv_contract(tmp_path, caplog):
    csv, root = fake_csv(tmp_path, CSV_ROWS)
    out = str(tmp_path / "out")
    summary = import_csv(csv, "file", root, out, progress=False)
    assert summary["attributes"] == {"color": 3, "sleeve": 2}
    assert summary["dropped_attributes"] == ["brand"]  # a single value cannot be manipulated
    assert "attribute 'brand' dropped" in caplog.text
    vocab = load_vocabulary(out)
    assert vocab.attributes[0].values == ("blue", "green", "red")  # sorted
    manifest = load_manifest(out, vocab)
    assert manifest["image"].tolist() == ["images/a.jpg", "images/sub/b.jpg", "images/c.jpg"]
    assert manifest["image_id"].tolist() == ["a.jpg", "sub/b.jpg", "c.jpg"]
    result = validate_dataset(out, progress=False)
    assert len(result.kept) == 3 and result.kept["labels"].tolist()[1] == [0, -1]


def test_csv_selected_attributes_and_image_id(tmp_path):
    rows = [dict(r, image_id=f"id{i}") for i, r in enumerate(CSV_ROWS)]
    csv, root = fake_csv(tmp_path, rows)
    summary = import_csv(csv, "file", root, str(tmp_path / "out"), attributes=["sleeve"], progress=False)
    assert summary["attributes"] == {"sleeve": 2}
    manifest = load_manifest(str(tmp_path / "out"), load_vocabulary(str(tmp_path / "out")))
    assert manifest["image_id"].tolist() == ["id0", "id1", "id2"]


def test_csv_bad_rows_are_quarantined_later(tmp_path):
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(jpeg())
    rows = [*CSV_ROWS, {"file": "gone.jpg", "color": "red", "sleeve": "long", "brand": "x"},
            {"file": str(outside), "color": "red", "sleeve": "long", "brand": "x"},
            {"file": "../secret.jpg", "color": "red", "sleeve": "long", "brand": "x"}]
    csv, root = fake_csv(tmp_path, rows)
    (tmp_path / "photos" / "gone.jpg").unlink()
    summary = import_csv(csv, "file", root, str(tmp_path / "out"), progress=False)
    assert (summary["copied"], summary["not_copied"], summary["unsafe_paths"]) == (3, 1, 2)
    result = validate_dataset(str(tmp_path / "out"), progress=False)
    assert result.rows_in == 6 and len(result.kept) == 3
    assert result.quarantine["reason"].value_counts().to_dict() == {
        "image path escapes the dataset root": 2, "missing image file": 1}


def test_csv_errors(tmp_path):
    csv, root = fake_csv(tmp_path, CSV_ROWS)
    out = str(tmp_path / "out")
    with pytest.raises(DatasetError, match="nope.csv: no such CSV file"):
        import_csv(str(tmp_path / "nope.csv"), "file", root, out)
    with pytest.raises(DatasetError, match="no image column 'path'"):
        import_csv(csv, "path", root, out)
    with pytest.raises(DatasetError, match="no column\\(s\\) size"):
        import_csv(csv, "file", root, out, attributes=["color", "size"])
    with pytest.raises(DatasetError, match="no attribute has 2 or more"):
        import_csv(csv, "file", root, out, attributes=["brand"])
    with pytest.raises(DatasetError, match="image root is not a folder"):
        import_csv(csv, "file", str(tmp_path / "nothing"), out)


def test_csv_cli(tmp_path, capsys):
    csv, root = fake_csv(tmp_path, CSV_ROWS)
    argv = ["data", "import", "csv", "--csv", csv, "--image-column", "file", "--root", root,
            "--out", str(tmp_path / "out"), "--attributes", "color,sleeve", "--no-progress"]
    assert cli.main(argv) == 0
    assert "color: 3 values" in capsys.readouterr().err
    assert cli.main(["data", "validate", str(tmp_path / "out"), "--no-progress"]) == 0
    argv[argv.index("--csv") + 1] = str(tmp_path / "missing.csv")
    assert cli.main(argv) == 3
    assert "missing.csv: no such CSV file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("a.jpg", "images/a.jpg"),
        ("sub/../a.jpg", "images/a.jpg"),
        ("s3://b/data/sub/c.jpg", "images/sub/c.jpg"),
        ("../data2/a.jpg", None),
        ("sub/../../a.jpg", None),
        ("/etc/passwd", None),
        ("s3://other/data/a.jpg", None),
        ("s3://b/data2/a.jpg", None),
    ],
)
def test_s3_keys_built_from_csv_paths_are_normalised_and_stay_under_the_prefix(image, expected):
    """The CSV importer writes each copy under ``images/`` + the *resolved* source path relative to
    the dataset root: no ``..`` segment, never another bucket or prefix; unsafe rows are not copied."""
    source, dest = importers._csv_destination("s3://b/data", image)
    if expected is None:
        assert source is None  # not copied: validation quarantines it as escaping the root
    else:
        assert source == "s3://b/data/" + expected.removeprefix("images/")
        assert dest == expected and ".." not in dest.split("/")
