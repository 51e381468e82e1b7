"""Bad input, table-driven, through the public CLI (``amnet.cli.main``).

Every case ends in exactly one of two ways:

* ``error``: exit code 3 (bad input or settings: the user must fix something; 2 is left to usage
  errors such as an unknown option), stderr holds no traceback and exactly one error line
  (``amnet <cmd>: error: ...``) that names the input and says what to do;
* ``quarantine``: the command succeeds, the bad row is in the quarantine table with its reason, and
  the counts add up (rows in = rows kept + rows quarantined).

What the user sees for each case is the ``expect`` column of ``CASES`` (a regular expression on the
error line or on the quarantine reason). The security side of this table: paths that escape the
dataset root (``../``, absolute paths, symlinks, other buckets) are quarantined even when the file
exists, and checkpoints load with ``weights_only=True`` (a pickled payload is refused).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from amnet.cli import main
from amnet.data.schema import Attribute, Vocabulary, write_dataset
from tests.helpers import jpeg, png_claiming, row, tiny_dataset, tiny_split_and_attribute_cnn

VOCAB = Vocabulary((Attribute("color", ("red", "blue")), Attribute("shape", ("round", "square"))))
MODEL = ["--set", "model.image_size=32", "--set", "model.width=8", "--set", "model.feature_dim=32"]
GOOD_ROWS = 9  # every hand-made dataset: 9 good rows + the bad one(s) of the case


# ------------------------------------------------------------------------------------------ builders


def dataset(root: Path, bad_rows: list[dict], files: dict[str, bytes] | None = None,
            manifest: pd.DataFrame | None = None) -> str:
    """A dataset folder: ``GOOD_ROWS`` good rows + ``bad_rows``; ``files`` are written under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    rows = [row(f"g{i}", f"img/g{i}.jpg", ("red", "blue")[i % 2], ("round", "square")[i // 2 % 2])
            for i in range(GOOD_ROWS)]
    for i in range(GOOD_ROWS):
        (root / "img").mkdir(exist_ok=True)
        (root / f"img/g{i}.jpg").write_bytes(jpeg(color=(20 * i, 30, 30)))
    for rel, data in (files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    write_dataset(str(root), pd.DataFrame(rows + bad_rows) if manifest is None else manifest, VOCAB)
    return str(root)


def validate_argv(root: str, tmp: Path) -> list[str]:
    return ["data", "validate", root, "--no-progress", "--max-quarantine-fraction", "1",
            "--quarantine-out", str(tmp / "quarantine.parquet")]


# ------------------------------------------------------------------------------------------ shared runs


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny split, an attribute CNN (1 epoch, 32 px) and its gallery features: the inputs of the
    stage-level cases (config values, k vs gallery, checkpoints)."""
    root = tmp_path_factory.mktemp("matrix")
    split = tiny_split_and_attribute_cnn(root, MODEL, shard_size=100)
    assert main(["step", "featurize", "--split", str(split), "--model", str(root / "attr"),
                 "--out", str(root / "feats"), "--quiet"]) == 0
    assert main(["step", "prototypes", "--split", str(split), "--attr-model", str(root / "attr"),
                 "--out", str(root / "protos"), "--quiet"]) == 0
    assert main(["step", "train", "--split", str(split), "--attr-model", str(root / "attr"), "--prototypes",
                 str(root / "protos"), "--out", str(root / "amnet"), "--quiet", "--set", "epochs=1",
                 "--set", "steps_per_epoch=2", "--set", "batch_size=8"]) == 0
    assert main(["step", "featurize", "--split", str(split), "--model", str(root / "amnet"),
                 "--out", str(root / "feats-amnet"), "--quiet"]) == 0
    return root


@dataclass
class Ctx:
    tmp: Path
    trained: Callable[[], Path]  # lazily built (only the stage-level cases need it)
    marker: Path | None = None  # a file the pickled payload would create if it ever ran


# ------------------------------------------------------------------------------------------ the cases
# Each setup builds its input under ``c.tmp`` and returns the CLI argv.


def no_manifest(c: Ctx):
    (c.tmp / "ds").mkdir()
    (c.tmp / "ds" / "attributes.json").write_text(VOCAB.to_json())
    return ["data", "validate", str(c.tmp / "ds"), "--no-progress"]


def missing_column(c: Ctx):
    rows = [{"image_id": "a", "image": "a.jpg", "color": "red"}]  # no 'shape'
    return ["data", "validate", dataset(c.tmp / "ds", [], manifest=pd.DataFrame(rows)), "--no-progress"]


def wrong_columns(c: Ctx):
    rows = [{"id": "a", "path": "a.jpg", "color": "red", "shape": "round"}]  # renamed id/image columns
    return ["data", "validate", dataset(c.tmp / "ds", [], manifest=pd.DataFrame(rows)), "--no-progress"]


def empty_dataset(c: Ctx):
    empty = pd.DataFrame(columns=["image_id", "image", "color", "shape"])
    return ["data", "validate", dataset(c.tmp / "ds", [], manifest=empty), "--no-progress"]


def manifest_not_parquet(c: Ctx):
    root = dataset(c.tmp / "ds", [])
    (Path(root) / "manifest.parquet").write_bytes(b"image_id,image\na,a.jpg\n")  # a CSV by mistake
    return ["data", "validate", root, "--no-progress"]


def attributes_not_json(c: Ctx):
    root = dataset(c.tmp / "ds", [])
    (Path(root) / "attributes.json").write_text("color: [red, blue]\n")
    return ["data", "validate", root, "--no-progress"]


def single_value_attribute(c: Ctx):
    root = dataset(c.tmp / "ds", [])
    (Path(root) / "attributes.json").write_text(
        '{"attributes": [{"name": "color", "values": ["red"]}, {"name": "shape", "values": ["round", "square"]}]}')
    return ["data", "validate", root, "--no-progress"]


def missing_bucket(c: Ctx):  # runs with the s3_env fixture (Case.needs="s3"): real SeaweedFS
    return ["data", "validate", "s3://no-such-bucket-amnet-matrix/catalog", "--no-progress"]


def too_few_images(c: Ctx):
    data = tiny_dataset(c.tmp, num_images=120, image_size=32)
    return ["data", "split", data, "--out", str(c.tmp / "split"), "--per-value", "4", "--gallery-size", "5000",
            "--no-progress"]


def split_bad_flag_value(c: Ctx):
    data = dataset(c.tmp / "ds", [])
    return ["data", "split", data, "--out", str(c.tmp / "split"), "--gallery-size", "-3", "--no-progress"]


def step_set(stage: str, *overrides: str, extra: tuple[str, ...] = ()):
    """``amnet step STAGE`` with config overrides; the paths are never reached (config comes first)."""
    required = {
        "pretrain": ["--split", "nowhere", "--out", "nowhere"],
        "train": ["--split", "nowhere", "--attr-model", "nowhere", "--out", "nowhere"],
        "featurize": ["--split", "nowhere", "--model", "nowhere", "--out", "nowhere"],
    }[stage]

    def setup(c: Ctx):
        sets = [a for o in overrides for a in ("--set", o)]
        return ["step", stage, *required, "--quiet", *sets, *extra]

    return setup


def k_larger_than_gallery(c: Ctx):
    t = c.trained()
    return ["step", "evaluate", "--split", str(t / "split"), "--model", str(t / "attr"), "--features",
            str(t / "feats"), "--variant", "attribute_based", "--out", str(c.tmp / "eval"), "--quiet",
            "--set", "ks=[1,5,500]"]


def corrupted_model_file(c: Ctx):
    t = c.trained()
    bad = c.tmp / "model"
    bad.mkdir()
    data = (t / "attr" / "model.pt").read_bytes()
    (bad / "model.pt").write_bytes(data[: len(data) // 2])  # cut off half-way (a crashed copy)
    return ["step", "featurize", "--split", str(t / "split"), "--model", str(bad), "--out", str(c.tmp / "f"),
            "--quiet"]


def corrupted_training_checkpoint(c: Ctx):
    t = c.trained()
    out = c.tmp / "pretrain"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "train_state.pt").write_bytes(b"\x00garbage, not a zip archive")
    return ["step", "pretrain", "--split", str(t / "split"), "--out", str(out), "--quiet", *MODEL,
            "--set", "epochs=1"]


class _Payload:
    """Unpickling this runs ``os.system``: what ``weights_only=True`` must refuse."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pickled_payload(c: Ctx):
    t = c.trained()
    bad = c.tmp / "model"
    bad.mkdir()
    c.marker = c.tmp / "pwned"
    torch.save({"kind": "amnet", "state_dict": {}, "evil": _Payload(str(c.marker))}, bad / "model.pt")
    return ["step", "featurize", "--split", str(t / "split"), "--model", str(bad), "--out", str(c.tmp / "f"),
            "--quiet"]


def model_folder_without_model(c: Ctx):
    t = c.trained()
    (c.tmp / "empty").mkdir()
    return ["step", "featurize", "--split", str(t / "split"), "--model", str(c.tmp / "empty"),
            "--out", str(c.tmp / "f"), "--quiet"]


def split_is_not_a_split(c: Ctx):
    (c.tmp / "nosplit").mkdir()
    return ["step", "pretrain", "--split", str(c.tmp / "nosplit"), "--out", str(c.tmp / "attr"), "--quiet",
            *MODEL, "--set", "epochs=1"]


def search_change(change: str):
    """``amnet search`` with an attribute change (``--set NAME=VALUE``) on a trained AMNet model."""

    def setup(c: Ctx):
        import importlib.util

        if importlib.util.find_spec("amnet.search.cli") is None:
            pytest.skip("amnet search is not there yet (amnet/search_cli.py)")
        t = c.trained()
        first = sorted((t / "split" / "gallery").glob("part-*.parquet"))[0]
        gallery_id = str(pd.read_parquet(first, columns=["image_id"])["image_id"].iloc[0])
        return ["search", "--model", str(t / "amnet"), "--features", str(t / "feats-amnet"),
                "--gallery", str(t / "split"), "--gallery-id", gallery_id, "--set", change]

    return setup


def bad_yaml_config(c: Ctx):
    (c.tmp / "cfg.yaml").write_text("lr: [0.1\n")
    return ["step", "train", "--split", "x", "--attr-model", "x", "--out", "x", "--config", str(c.tmp / "cfg.yaml")]


# quarantine cases: (bad rows, files) -> validated through `amnet data validate`


def q(bad_rows: list[dict], files: dict[str, bytes] | None = None, symlink: bool = False):
    def setup(c: Ctx):
        root = c.tmp / "ds"
        if symlink:
            (c.tmp / "outside.jpg").write_bytes(jpeg())
            root.mkdir(parents=True)
            os.symlink(c.tmp / "outside.jpg", root / "link.jpg")
        rows = [{**r, "image": r["image"].replace("{OUTSIDE}", str(c.tmp / "outside.jpg"))} for r in bad_rows]
        (c.tmp / "outside.jpg").write_bytes(jpeg())  # exists: escaping is refused even then
        return validate_argv(dataset(root, rows, files), c.tmp)

    return setup


@dataclass
class Case:
    id: str
    setup: Callable[[Ctx], list[str]]
    outcome: str  # "error" | "quarantine"
    expect: str  # regex on the error line, or on the reason(s)
    quarantined: int = 1
    needs: str = ""  # "s3" when the case talks to the real SeaweedFS


GOOD = jpeg(64, 64)
CASES = [
    # ---- the dataset cannot be read at all: one error line
    Case("no-manifest", no_manifest, "error", r"/ds: no manifest\.parquet; a dataset needs manifest\.parquet"),
    Case("missing-column", missing_column, "error",
         r"manifest\.parquet: missing required column\(s\) shape; a manifest needs image_id, image"),
    Case("wrong-columns", wrong_columns, "error", r"missing required column\(s\) image_id, image"),
    Case("empty-dataset", empty_dataset, "error",
         r"manifest\.parquet: the manifest has no rows; add one row per image"),
    Case("manifest-not-parquet", manifest_not_parquet, "error", r"manifest\.parquet: not a readable Parquet file"),
    Case("attributes-not-json", attributes_not_json, "error", r"attributes\.json: not a valid attributes file"),
    Case("single-value-attribute", single_value_attribute, "error",
         r"attribute 'color' has 1 value\(s\); at least 2 are needed to manipulate it"),
    Case("s3-missing-bucket", missing_bucket, "error",
         r"s3://no-such-bucket-amnet-matrix/catalog.*bucket 'no-such-bucket-amnet-matrix' does not exist; create it",
         needs="s3"),
    Case("too-few-images", too_few_images, "error",
         r"synth-120-0-32: too few images for the requested split: 120 usable.*lower --per-value, "
         r"--gallery-size, --num-queries or --num-val-queries"),
    Case("split-negative-size", split_bad_flag_value, "error",
         r"gallery_size must be > 0 \(got -3\); set a positive value"),
    # ---- one row is bad: quarantined with its reason, the rest kept
    Case("unknown-attribute-value", q([row("bad", "img/g0.jpg", color="purple")]), "quarantine",
         r"unknown value 'purple' for attribute 'color'"),
    Case("duplicate-id", q([row("g3", "img/g1.jpg")]), "quarantine", r"duplicate image_id"),
    Case("truncated-jpeg", q([row("bad", "bad.jpg")], {"bad.jpg": GOOD[: len(GOOD) // 2]}), "quarantine",
         r"truncated or corrupt image"),
    Case("non-image-bytes", q([row("bad", "bad.jpg")], {"bad.jpg": b"%PDF-1.4 not an image"}), "quarantine",
         r"not an image \(or an unsupported format\)"),
    Case("zero-byte-file", q([row("bad", "bad.jpg")], {"bad.jpg": b""}), "quarantine", r"empty file"),
    Case("decompression-bomb", q([row("bad", "bomb.png")], {"bomb.png": png_claiming(100_000, 100_000)}),
         "quarantine", r"image over pixel limit \(10000000000 pixels > 40000000\)"),
    Case("missing-file", q([row("bad", "nope.jpg")]), "quarantine", r"missing image file"),
    Case("dotdot-escape-file-exists", q([row("bad", "../outside.jpg")]), "quarantine",
         r"image path escapes the dataset root"),
    Case("dotdot-escape-deep", q([row("bad", "img/../../outside.jpg")]), "quarantine",
         r"image path escapes the dataset root"),
    Case("absolute-path-outside", q([row("bad", "{OUTSIDE}")]), "quarantine", r"image path escapes the dataset root"),
    Case("symlink-out-of-root", q([row("bad", "link.jpg")], symlink=True), "quarantine",
         r"image path escapes the dataset root"),
    Case("s3-uri-in-local-dataset", q([row("bad", "s3://other-bucket/x.jpg")]), "quarantine",
         r"image path escapes the dataset root"),
    Case("several-bad-rows", q([row("d", "img/g2.jpg"), row("d", "img/g2.jpg"), row("e", "zero.jpg"),
                                row("f", "img/g1.jpg", shape="hexagon")], {"zero.jpg": b""}),
         "quarantine", r"duplicate image_id|empty file|unknown value 'hexagon' for attribute 'shape'", quarantined=3),
    # ---- bad config values: one line naming the key
    Case("negative-lr", step_set("train", "lr=-0.1"), "error", r"lr must be > 0 \(got -0\.1\); set a positive value"),
    Case("lambda-above-1", step_set("train", "lam=1.5"), "error",
         r"lam must be in \[0, 1\] \(got 1\.5\); set a value between 0 and 1"),
    Case("lambda-below-0", step_set("train", "lam=-0.2"), "error", r"lam must be in \[0, 1\] \(got -0\.2\)"),
    Case("unknown-backbone", step_set("pretrain", "model.backbone=vgg99"), "error",
         r"unknown backbone 'vgg99'; choose one of small, alexnet, resnet18, resnet50"),
    Case("unknown-config-key", step_set("train", "learning_rate=0.1"), "error",
         r"unknown TrainConfig key 'learning_rate'; valid keys: variant, epochs"),
    Case("boolean-typo", step_set("train", "flip=flase"), "error",
         r"flip: cannot use 'flase' \(expected a boolean: true, 1, yes, on or false, 0, no, off\)"),
    Case("non-numeric-value", step_set("featurize", "batch_size=lots"), "error",
         r"batch_size: cannot use 'lots' \(expected int\)"),
    Case("image-size-too-small", step_set("pretrain", "model.image_size=8"), "error",
         r"image_size must be >= 32 \(got 8\); the small CNN needs 32 px or more"),
    Case("bad-yaml-config", bad_yaml_config, "error",
         r"cfg\.yaml: not valid YAML \(expected ',' or '\]', but got .* at line 2, column 1\); fix the file"),
    Case("override-not-yaml", step_set("featurize", "batch_size=[1,"), "error",
         r"override 'batch_size=\[1,': the value is not valid YAML"),
    Case("k-larger-than-gallery", k_larger_than_gallery, "error",
         r"k = 500 is larger than the gallery \(60 images\); lower ks/ndcg_k"),
    # ---- a query manipulation naming what the model does not know
    Case("search-unknown-attribute", search_change("colour=blue"), "error",
         r"unknown attribute 'colour'.*valid attributes: category, color, sleeve"),
    Case("search-unknown-value", search_change("color=ultraviolet"), "error",
         r"unknown value 'ultraviolet' for attribute 'color'.*valid values: .*blue"),
    # ---- model artifacts and checkpoints
    Case("corrupted-model-file", corrupted_model_file, "error",
         r"model/model\.pt: not a readable amnet checkpoint .*; delete it and rerun the stage"),
    Case("corrupted-training-checkpoint", corrupted_training_checkpoint, "error",
         r"checkpoints/train_state\.pt: not a readable amnet checkpoint .*; delete it and rerun"),
    Case("pickled-code-in-checkpoint", pickled_payload, "error",
         r"model/model\.pt: not a readable amnet checkpoint \(UnpicklingError: refused, it holds Python objects "
         r"that could run code, not only tensors\); delete it"),
    Case("model-folder-without-model", model_folder_without_model, "error",
         r"/empty: no model\.pt; point at the output of `amnet step pretrain` or `train`"),
    Case("split-folder-is-not-a-split", split_is_not_a_split, "error",
         r"/nosplit/attributes\.json: no such file; .*run `amnet data split`"),
]


ERROR_LINE = re.compile(r"^(amnet [\w ]+): error: (.+)$")


def error_lines(err: str) -> list[str]:
    """The lines of stderr that report an error (progress bars and warnings are not errors)."""
    return [line for line in err.splitlines() if ": error: " in line]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, request, capsys):
    ctx = Ctx(tmp=tmp_path, trained=lambda: request.getfixturevalue("trained"))
    if case.needs == "s3":
        request.getfixturevalue("s3_env")  # AWS_* point at the session's SeaweedFS
    argv = case.setup(ctx)
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out

    if case.outcome == "error":
        assert code == 3, (code, out, err)
        lines = error_lines(err)
        assert len(lines) == 1, err
        assert err.strip().splitlines()[-1] == lines[0], err  # the message is one line, and the last one
        match = ERROR_LINE.match(lines[0].strip())
        assert match, lines[0]
        command = argv[:1] if argv[0] == "search" else argv[:2]
        assert match.group(1) == "amnet " + " ".join(command), lines[0]
        assert re.search(case.expect, lines[0]), lines[0]
        if ctx.marker is not None:
            assert not ctx.marker.exists(), "the pickled payload ran"
        print(f"MATRIX | {case.id} | exit 3 | {lines[0].strip()}")  # `pytest -rP` lists what users see
        return

    assert code == 0, (code, out, err)
    counts = {k: int(v) for k, v in re.findall(r"^(rows in|kept|quarantined)\s+(\d+)", out, re.M)}
    quarantine = pd.read_parquet(tmp_path / "quarantine.parquet")
    assert counts["rows in"] == counts["kept"] + counts["quarantined"]
    assert counts["quarantined"] == len(quarantine) == case.quarantined
    assert counts["kept"] == counts["rows in"] - case.quarantined
    assert list(quarantine.columns) == ["row", "image_id", "image", "reason"]
    for reason in quarantine["reason"]:
        assert re.fullmatch(case.expect, reason), reason
    assert counts["rows in"] >= GOOD_ROWS
    print(f"MATRIX | {case.id} | exit 0, {counts['quarantined']} of {counts['rows in']} rows quarantined | "
          + "; ".join(sorted(set(quarantine["reason"]))))


def test_quarantine_through_split_counts_add_up(tmp_path, capsys):
    """A real split of a catalogue with broken rows: they are quarantined with reasons, written to
    ``quarantine.parquet``, and rows in = kept + quarantined = the sum of the four sets + quarantined."""
    data = Path(tiny_dataset(tmp_path, num_images=300, image_size=32))
    manifest = pd.read_parquet(data / "manifest.parquet")
    broken = manifest.iloc[:3].copy()
    broken["image_id"] = ["x-trunc", "x-escape", "x-value"]
    broken["image"] = ["trunc.jpg", "../outside.jpg", broken["image"].iloc[2]]
    broken.iloc[2, broken.columns.get_loc("color")] = "ultraviolet"
    (data / "trunc.jpg").write_bytes(GOOD[:100])
    (tmp_path / "outside.jpg").write_bytes(GOOD)
    manifest = pd.concat([manifest, broken], ignore_index=True)
    manifest.to_parquet(data / "manifest.parquet", index=False)
    split = tmp_path / "split"
    assert main(["data", "split", str(data), "--out", str(split), "--per-value", "4", "--gallery-size", "50",
                 "--num-queries", "5", "--no-progress"]) == 0
    summary = json.loads((split / "split.json").read_text())
    quarantine = pd.read_parquet(split / "quarantine.parquet")
    assert summary["rows_in"] == 303 and summary["quarantined"] == 3 == len(quarantine)
    assert summary["rows_in"] == summary["kept"] + summary["quarantined"]
    assert summary["kept"] == sum(summary[s] for s in ("attr_train", "gallery", "queries", "val_queries",
                                                        "triplet_pool"))
    assert dict(zip(quarantine["image_id"], quarantine["reason"], strict=True)) == {
        "x-trunc": "truncated or corrupt image",
        "x-escape": "image path escapes the dataset root",
        "x-value": "unknown value 'ultraviolet' for attribute 'color'",
    }
    assert "error" not in capsys.readouterr().err


def test_unknown_attribute_or_value_in_a_manipulation(capsys):
    """A query manipulation names attributes and values by their names; the vocabulary turns them into
    codes and refuses unknown ones with one line that lists the valid choices (the CLI side is the
    ``search-unknown-*`` cases of the matrix)."""
    from amnet.errors import DatasetError

    with pytest.raises(DatasetError) as exc:
        VOCAB.value_index("colour", "blue")
    assert str(exc.value) == "unknown attribute 'colour'; valid attributes: color, shape"
    with pytest.raises(DatasetError) as exc:
        VOCAB.value_index("color", "purple")
    assert str(exc.value) == "unknown value 'purple' for attribute 'color'; valid values: red, blue"
    assert VOCAB.value_index("shape", "square") == 1
