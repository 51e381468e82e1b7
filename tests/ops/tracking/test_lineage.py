"""Lineage pieces that need no server: the parent run's parameters, the dataset record of a split, the
results note, the stage marker and the servable model's query parsing."""

from __future__ import annotations

import base64
import json

import pytest

from amnet.errors import AmnetError
from amnet.ops.tracking import lineage
from amnet.steps.parent import pipeline_params
from amnet.steps.report import results_note


def test_pipeline_params_are_flat_resolved_run_file_keys():
    params = pipeline_params("s3://bucket/catalog", ["amnet", "no_memory"], True, "amnet",
                             {"train": {"lam": 0.3}, "pretrain": {"model": {"backbone": "alexnet"}}})
    assert params["dataset"] == "s3://bucket/catalog" and params["variants"] == "amnet,no_memory"
    assert params["train.lam"] == 0.3 and params["train.margin"] == 1.0  # given, and the default
    assert params["pretrain.model.backbone"] == "alexnet" and params["split.gallery_size"] == 2000
    assert "train.variant" not in params and "evaluate.variant" not in params  # the variants list sets them
    assert params["register.model_name"] == "amnet"
    assert params["attribute_baseline"] is True and params["image_baseline"] is True  # the default: on
    off = pipeline_params("s3://bucket/catalog", ["amnet"], True, "amnet", {}, image_baseline=False)
    assert off["image_baseline"] is False


def test_dataset_of_a_split_prefers_the_fingerprint_and_falls_back_to_the_content(tmp_path):
    dataset = tmp_path / "catalog"
    dataset.mkdir()
    (dataset / "manifest.parquet").write_bytes(b"rows")
    (dataset / "attributes.json").write_text("{}")
    split = tmp_path / "split"
    split.mkdir()
    summary = {"dataset": str(dataset), "rows_in": 10, "kept": 9, "quarantined": 1, "gallery": 4}
    (split / "split.json").write_text(json.dumps({**summary, "dataset_digest": "ab" * 32}))
    info = lineage.dataset_of(str(split))
    assert info.name == "catalog" and info.digest == "ab" * 32 and info.short_digest == "ab" * 6
    assert info.profile == {"rows_in": 10, "kept": 9, "quarantined": 1, "gallery": 4}

    (split / "split.json").write_text(json.dumps(summary))  # a split from before fingerprints
    fallback = lineage.dataset_of(str(split))
    assert len(fallback.digest) == 64 and fallback.digest != info.digest
    (dataset / "manifest.parquet").write_bytes(b"other rows")
    assert lineage.dataset_of(str(split)).digest != fallback.digest  # the content decides
    assert lineage.dataset_of(str(tmp_path / "not-a-split")) is None


def test_the_marker_names_the_run_that_made_an_artifact(tmp_path):
    assert lineage.read_marker(str(tmp_path)) == {}
    lineage.write_marker(str(tmp_path), "train-amnet", "0123abcd", model_id="m-1", empty="")
    assert lineage.read_marker(str(tmp_path)) == {"stage": "train-amnet", "run_id": "0123abcd", "model_id": "m-1"}


def test_source_tags(monkeypatch):
    monkeypatch.setenv("AMNET_IMAGE", "registry.example/amnet:0.1.0")
    tags = lineage.source_tags("amnet step train")
    assert tags["mlflow.source.name"] == "amnet step train" and tags["mlflow.source.type"] == "JOB"
    assert tags["amnet.image"] == "registry.example/amnet:0.1.0" and tags["amnet.version"]


def test_results_note_is_a_markdown_table_of_every_variant():
    note = results_note({"amnet_top20": 0.83, "amnet_two_top20": 0.71, "attribute_based_top20": 0.79,
                         "amnet_gallery_increase": 1.5}, {"model_name": "amnet", "version": "4", "promoted": False})
    lines = note.splitlines()
    assert "| variant | top-1 |" in note and any(line.startswith("| amnet | - |") for line in lines)
    assert "0.830" in note and "0.710" in note and any(line.startswith("| attribute_based |") for line in lines)
    assert "amnet v4 kept the champion" in note


def test_servable_queries_are_checked():
    pytest.importorskip("mlflow")
    from amnet.ops.registry import servable

    assert servable._query({"image": base64.b64encode(b"\x89PNG").decode()}) == b"\x89PNG"
    assert servable._query({"image": float("nan"), "gallery_id": "synth0-1"}) == "synth0-1"
    with pytest.raises(AmnetError, match="needs `image`"):
        servable._query({"gallery_id": None})
    with pytest.raises(AmnetError, match="not base64"):
        servable._query({"image": "%%%"})
    assert servable._changes({"color": "blue", "fit": None}) == {"color": "blue"}
    assert servable._changes('{"color": "red"}') == {"color": "red"}
    with pytest.raises(AmnetError, match="changes"):
        servable._changes("[1, 2]")
    assert servable._k(None) == servable.DEFAULT_K and servable._k(5) == 5
