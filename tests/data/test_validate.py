"""Dataset validation: every bad-input case is quarantined with a reason and the counts add up."""

from __future__ import annotations

import io
import os
import warnings

import pandas as pd
import pytest
from PIL import Image, ImageFile

from amnet import cli, storage
from amnet.data import images
from amnet.data.schema import Attribute, Vocabulary, write_dataset
from amnet.data.validate import check_fraction, summary_table, validate_dataset
from amnet.errors import AmnetError, DatasetError
from tests.helpers import jpeg, png_claiming, row

VOCAB = Vocabulary((Attribute("color", ("red", "blue")), Attribute("shape", ("round", "square"))))


def make_dataset(root, rows: list[dict], files: dict[str, bytes] | None = None) -> str:
    """A dataset folder with the given manifest rows and image files (default: a JPEG per row)."""
    root.mkdir(parents=True, exist_ok=True)
    files = {r["image"]: jpeg() for r in rows} if files is None else files
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    write_dataset(str(root), pd.DataFrame(rows), VOCAB)
    return str(root)


def reasons(result) -> dict[str, str]:
    return dict(zip(result.quarantine["image_id"], result.quarantine["reason"], strict=True))


def assert_counts(result) -> None:
    assert result.rows_in == len(result.kept) + len(result.quarantine)


# ---------------------------------------------------------------- unreadable datasets


def test_no_manifest(tmp_path):
    (tmp_path / "attributes.json").write_text(VOCAB.to_json())
    with pytest.raises(DatasetError, match="no manifest.parquet"):
        validate_dataset(str(tmp_path), progress=False)


def test_no_attributes_file(tmp_path):
    with pytest.raises(DatasetError, match="no attributes.json"):
        validate_dataset(str(tmp_path), progress=False)


def test_wrong_columns(tmp_path):
    write_dataset(str(tmp_path), pd.DataFrame([{"image_id": "a", "image": "a.jpg", "color": "red"}]), VOCAB)
    with pytest.raises(DatasetError, match="missing required column.*shape"):
        validate_dataset(str(tmp_path), progress=False)


def test_empty_manifest(tmp_path):
    write_dataset(str(tmp_path), pd.DataFrame(columns=["image_id", "image", "color", "shape"]), VOCAB)
    with pytest.raises(DatasetError, match="no rows"):
        validate_dataset(str(tmp_path), progress=False)


def test_single_value_attribute_is_a_clear_error(tmp_path):
    make_dataset(tmp_path, [row("a", "a.jpg")])
    (tmp_path / "attributes.json").write_text(
        '{"attributes": [{"name": "color", "values": ["red"]}, {"name": "shape", "values": ["a", "b"]}]}'
    )
    with pytest.raises(DatasetError, match="'color' has 1 value"):
        validate_dataset(str(tmp_path), progress=False)


# ---------------------------------------------------------------- per-row quarantine


def test_good_rows_are_kept_with_codes(tmp_path):
    root = make_dataset(tmp_path, [row("a", "a.jpg"), row("b", "sub/b.jpg", "blue", "square"),
                                   row("c", "c.jpg", "", "square"), row("d", "d.jpg", "", "")])
    result = validate_dataset(root, progress=False)
    assert result.quarantine.empty and result.rows_in == 4
    assert list(result.kept.columns) == ["image_id", "image_bytes", "labels"]
    labels = dict(zip(result.kept["image_id"], result.kept["labels"], strict=True))
    assert labels == {"a": [0, 0], "b": [1, 1], "c": [-1, 1], "d": [-1, -1]}  # all-missing rows are kept
    assert result.kept["image_bytes"].iloc[0] == (tmp_path / "a.jpg").read_bytes()


def test_unknown_value_names_attribute_and_value(tmp_path):
    result = validate_dataset(make_dataset(tmp_path, [row("a", "a.jpg"), row("b", "b.jpg", shape="oval")]),
                              progress=False)
    assert reasons(result) == {"b": "unknown value 'oval' for attribute 'shape'"}
    assert result.quarantine["row"].tolist() == [1]
    assert_counts(result)


def test_duplicate_and_empty_ids(tmp_path):
    rows = [row("a", "a.jpg"), row("a", "a2.jpg"), row("", "e.jpg"), row("b", "b.jpg"), row("a", "a3.jpg")]
    result = validate_dataset(make_dataset(tmp_path, rows), progress=False)
    assert result.kept["image_id"].tolist() == ["a", "b"]
    q = result.quarantine
    assert q["row"].tolist() == [1, 2, 4]
    assert q["reason"].tolist() == ["duplicate image_id", "empty image_id", "duplicate image_id"]
    assert q["image"].tolist() == ["a2.jpg", "e.jpg", "a3.jpg"]
    assert_counts(result)


def test_bad_image_files(tmp_path):
    good = jpeg(64, 64)
    files = {
        "ok.jpg": good,
        "truncated.jpg": good[: len(good) // 2],
        "text.jpg": b"this is not an image at all",
        "zero.jpg": b"",
    }
    rows = [row(name.split(".")[0], name) for name in [*files, "missing.jpg"]] + [row("empty_path", " ")]
    result = validate_dataset(make_dataset(tmp_path, rows, files), progress=False)
    assert result.kept["image_id"].tolist() == ["ok"]
    assert reasons(result) == {
        "truncated": "truncated or corrupt image",
        "text": "not an image (or an unsupported format)",
        "zero": "empty file",
        "missing": "missing image file",
        "empty_path": "empty image path",
    }
    assert_counts(result)


def test_image_over_pixel_limit(tmp_path):
    files = {"small.jpg": jpeg(8, 8), "large.jpg": jpeg(20, 10)}
    rows = [row("small", "small.jpg"), row("large", "large.jpg")]
    result = validate_dataset(make_dataset(tmp_path, rows, files), max_pixels=100, progress=False)
    assert reasons(result) == {"large": "image over pixel limit (20×10 > 100)"}


def test_paths_escaping_the_root(tmp_path):
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(jpeg())
    root = tmp_path / "ds"
    (root / "sub").mkdir(parents=True)
    (root / "inside.jpg").write_bytes(jpeg())
    os.symlink(outside, root / "link.jpg")
    os.symlink(root / "inside.jpg", root / "sub" / "internal_link.jpg")
    rows = [
        row("dotdot", "../outside.jpg"),  # exists, but outside
        row("dotdot_deep", "sub/../../outside.jpg"),
        row("abs_out", str(outside)),
        row("symlink", "link.jpg"),
        row("abs_in", str(root / "inside.jpg")),  # absolute but inside: fine
        row("back_in", "sub/../inside.jpg"),
        row("internal_link", "sub/internal_link.jpg"),
        row("s3", "s3://bucket/inside.jpg"),
    ]
    result = validate_dataset(make_dataset(root, rows, files={}), progress=False)
    assert sorted(result.kept["image_id"]) == ["abs_in", "back_in", "internal_link"]
    escaped = {"dotdot", "dotdot_deep", "abs_out", "symlink", "s3"}
    assert reasons(result) == dict.fromkeys(escaped, "image path escapes the dataset root")
    assert_counts(result)


def test_directory_instead_of_file(tmp_path):
    root = make_dataset(tmp_path, [row("a", "a.jpg"), row("d", "folder")], files={"a.jpg": jpeg()})
    (tmp_path / "folder").mkdir()
    assert reasons(validate_dataset(root, progress=False)) == {"d": "image path is not a regular file"}


# ---------------------------------------------------------------- fraction, summary, CLI


def mixed_dataset(tmp_path) -> str:
    """10 rows: 8 good, 1 missing file, 1 unknown value (20% quarantined)."""
    rows = [row(f"g{i}", f"g{i}.jpg") for i in range(8)]
    rows += [row("m", "m.jpg"), row("u", "u.jpg", color="teal")]
    files = {f"g{i}.jpg": jpeg() for i in range(8)} | {"u.jpg": jpeg()}
    return make_dataset(tmp_path / "ds", rows, files)


def test_summary_and_check_fraction(tmp_path):
    result = validate_dataset(mixed_dataset(tmp_path), progress=False)
    assert (result.rows_in, len(result.kept), len(result.quarantine)) == (10, 8, 2)
    table = summary_table(result)
    assert "missing image file" in table and "unknown value 'teal' for attribute 'color'" in table
    assert "20.00%" in table
    check_fraction(result, 0.2)
    with pytest.raises(DatasetError, match="2 of 10 rows.*top reasons: .*missing image file \\(1\\)"):
        check_fraction(result, 0.1)


def test_check_fraction_refuses_no_kept_rows(tmp_path):
    root = make_dataset(tmp_path, [row("a", "a.jpg")], files={})
    result = validate_dataset(root, progress=False)
    with pytest.raises(DatasetError, match="no usable rows"):
        check_fraction(result, 1.0)


def test_cli_exit_codes(tmp_path, capsys):
    root = mixed_dataset(tmp_path)
    out = tmp_path / "q.parquet"
    assert cli.main(["data", "validate", root, "--no-progress", "--max-quarantine-fraction", "0.5",
                     "--quarantine-out", str(out)]) == 0
    assert "quarantined" in capsys.readouterr().out
    q = pd.read_parquet(out)
    assert list(q.columns) == ["row", "image_id", "image", "reason"] and len(q) == 2

    assert cli.main(["data", "validate", root, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "over the limit of 5.0%" in err and "missing image file" in err

    assert cli.main(["data", "validate", str(tmp_path / "nowhere"), "--no-progress"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("amnet data validate: error:") and "\n" not in err


# ---------------------------------------------------------------- S3 reads (a real S3 server, and a fake)


def test_s3_paths_escaping_the_prefix_are_quarantined_on_the_real_s3_server(s3_env):
    """A dataset on SeaweedFS (``s3_env``) whose manifest points outside its prefix, at objects that all
    exist: ``../``, a sibling prefix that merely starts with the same letters, an absolute URI elsewhere in
    the bucket, another bucket, a local absolute path and an https URL. Each is quarantined as an escape
    (never read), the rows inside the prefix (relative, ``x/../``, absolute ``s3://`` inside) are kept
    with the bytes stored under their keys, and a missing object inside is reported as missing."""
    import uuid

    bucket, client = s3_env.bucket, s3_env.client()
    other_bucket = "amnet-validate-other"
    if other_bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=other_bucket)
    base = f"validate-escape/{uuid.uuid4().hex[:8]}"
    root = f"s3://{bucket}/{base}/data"
    inside = {"data/a.jpg": jpeg(color=(10, 20, 30)), "data/x/d.jpg": jpeg(color=(40, 50, 60))}
    outside = {"e.jpg": jpeg(), "data2/f.jpg": jpeg(), "elsewhere/g.jpg": jpeg()}
    for key, data in {**inside, **outside}.items():
        client.put_object(Bucket=bucket, Key=f"{base}/{key}", Body=data)
    client.put_object(Bucket=other_bucket, Key=f"{base}/data/a.jpg", Body=jpeg())
    rows = [
        row("rel", "a.jpg"),
        row("rel_sub", "x/d.jpg"),
        row("back_in", "x/../a.jpg"),
        row("abs_in", f"{root}/x/d.jpg"),
        row("missing", "nope.jpg"),
        row("dotdot", "../e.jpg"),
        row("dotdot_deep", "x/../../data2/f.jpg"),
        row("sibling_prefix", f"s3://{bucket}/{base}/data2/f.jpg"),  # starts with the root's text, is not in it
        row("abs_elsewhere", f"s3://{bucket}/{base}/elsewhere/g.jpg"),
        row("other_bucket", f"s3://{other_bucket}/{base}/data/a.jpg"),
        row("local_abs", "/etc/hostname"),
        row("https", "https://example.com/a.jpg"),
    ]
    write_dataset(root, pd.DataFrame(rows), VOCAB)
    assert storage.exists(f"{root}/manifest.parquet")  # really on the server
    result = validate_dataset(root, progress=False)
    kept = dict(zip(result.kept["image_id"], result.kept["image_bytes"], strict=True))
    assert sorted(kept) == ["abs_in", "back_in", "rel", "rel_sub"]
    assert kept["rel"] == kept["back_in"] == inside["data/a.jpg"] and kept["abs_in"] == inside["data/x/d.jpg"]
    escaped = {"dotdot", "dotdot_deep", "sibling_prefix", "abs_elsewhere", "other_bucket", "local_abs", "https"}
    assert reasons(result) == {**dict.fromkeys(escaped, "image path escapes the dataset root"),
                               "missing": "missing image file"}
    assert_counts(result)

    # the CLI writes the same quarantine next to the data, on S3
    quarantine = f"s3://{bucket}/{base}/quarantine.parquet"
    assert cli.main(["data", "validate", root, "--no-progress", "--max-quarantine-fraction", "1",
                     "--quarantine-out", quarantine]) == 0
    table = pd.read_parquet(io.BytesIO(storage.read_bytes(quarantine)))
    assert dict(zip(table["image_id"], table["reason"], strict=True)) == reasons(result)


def test_s3_dataset_reads_through_fake_storage(monkeypatch):
    """``amnet.storage`` replaced by a dict (no server): the S3 code path of validation in isolation."""
    objects: dict[str, bytes] = {}
    monkeypatch.setattr(storage, "write_bytes", lambda uri, data: objects.__setitem__(uri, data))
    monkeypatch.setattr(storage, "exists", lambda uri: uri in objects)
    monkeypatch.setattr(storage, "s3_client", lambda: None)

    def read_bytes(uri):
        if uri not in objects:
            raise AmnetError(f"{uri}: no such object")
        return objects[uri]

    monkeypatch.setattr(storage, "read_bytes", read_bytes)
    root = "s3://bucket/data"
    write_dataset(root, pd.DataFrame([row("a", "a.jpg"), row("b", "b.jpg"), row("c", "s3://bucket/other/c.jpg"),
                                      row("d", "s3://bucket/data/x/d.jpg"), row("e", "../e.jpg")]), VOCAB)
    for key in ("data/a.jpg", "other/c.jpg", "data/x/d.jpg", "e.jpg"):
        objects[f"s3://bucket/{key}"] = jpeg()
    result = validate_dataset(root, progress=False)
    assert sorted(result.kept["image_id"]) == ["a", "d"]
    assert reasons(result) == {"b": "missing image file", "c": "image path escapes the dataset root",
                               "e": "image path escapes the dataset root"}


# ---------------------------------------------------------------- images module


def test_check_image_bomb_is_rejected_from_the_header_only():
    saved = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may leak out
        # Above our limit but under Pillow's: our own header check.
        reason = images.check_image(png_claiming(10_000, 5_000))
        assert reason == "image over pixel limit (10000×5000 > 40000000)"
        # Far above Pillow's hard limit: Pillow's error is turned into the same reason.
        assert images.check_image(png_claiming(100_000, 100_000)).startswith("image over pixel limit")
    assert saved == (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)


def test_check_image_ignores_global_truncated_setting(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = jpeg(64, 64)
    assert images.check_image(data[: len(data) // 2]) == "truncated or corrupt image"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_check_image_accepts_a_limit_above_pillows(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a strict global must not override the caller
    assert images.check_image(jpeg(40, 40), max_pixels=10_000) is None
    assert Image.MAX_IMAGE_PIXELS == 100


def test_decode_rgb():
    img = images.decode_rgb(jpeg(30, 20), 16)
    assert img.mode == "RGB" and img.size == (16, 16)
    buf = io.BytesIO()
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(buf, "PNG")
    assert images.decode_rgb(buf.getvalue(), 4).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(AmnetError, match="could not be decoded"):
        images.decode_rgb(b"nope", 8)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("a.jpg", "s3://b/data/a.jpg"),
        ("x/../a.jpg", "s3://b/data/a.jpg"),
        ("../a.jpg", None),
        ("x/../../data2/a.jpg", None),
        ("s3://b/data/a.jpg", "s3://b/data/a.jpg"),
        ("s3://b/data2/a.jpg", None),
        ("s3://other/data/a.jpg", None),
        ("/etc/passwd", None),
        ("https://example.com/a.jpg", None),
        ("", None),
    ],
)
def test_resolve_image_path_s3(image, expected):
    assert images.resolve_image_path("s3://b/data", image) == expected
    assert images.resolve_image_path("s3://b/data/", image) == expected


def test_resolve_image_path_local(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    expected = os.path.join(os.path.realpath(root), "a", "b.jpg")
    assert images.resolve_image_path(str(root), "a/b.jpg") == expected
    assert images.resolve_image_path(str(root), "../root2/b.jpg") is None
    assert images.resolve_image_path(str(root), ".") is None
    assert images.resolve_image_path(str(root), "a\x00.jpg") is None
    assert images.resolve_image_path(str(root), "s3://b/a.jpg") is None
