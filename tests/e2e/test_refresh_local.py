"""Refreshing the champion's gallery between retrainings, against the real local stack.

The whole pipeline runs once through ``kfp.local`` on a tiny dataset (the champion, with its gallery
attached); the catalogue then changes (images altered, added, removed) and the refresh stage makes a
new version with the same weights and the refreshed gallery, and moves the champion alias to it, where
``amnet search`` (the searcher of ``models:/amnet@champion``) finds a new item by its id."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from amnet.data import shards
from tests.catalogue_helpers import changed_catalogue
from tests.e2e.test_pipeline_local import FANNED
from tests.helpers import tiny_dataset

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _model_sha(client, name: str, version: str, dst: Path) -> str:
    from amnet.ops.registry.model_uri import resolve_mlflow

    ref = resolve_mlflow(f"models:/{name}/{version}", str(dst))
    return hashlib.sha256(Path(ref.model_file).read_bytes()).hexdigest()


def test_refresh_registers_the_same_weights_with_the_changed_gallery(tmp_path, stack_env):
    from amnet_pipeline.local_run import run_pipeline

    from amnet import storage
    from amnet.ops.registry.model_uri import open_searcher
    from amnet.retrieval.feature_index import INDEX_IDS
    from amnet.steps import refresh

    client = stack_env
    params = {**FANNED, "dataset_uri": tiny_dataset(tmp_path), "variants": ["amnet"], "attribute_baseline": False,
              "experiment": "refresh-local"}
    run_pipeline(params, tmp_path / "work", cache=False)
    before = client.get_model_version_by_alias("amnet", "champion")
    split = storage.artifact_uri(before.tags["amnet.gallery_uri"]) or before.tags["amnet.gallery_uri"]

    catalogue, ids = changed_catalogue(split, tmp_path / "catalogue")
    out = tmp_path / "refresh"
    result = refresh.run_step("models:/amnet@champion", catalogue, str(out), {"min_recall": 0.8})

    assert {k: result[k] for k in ("added", "removed", "changed", "unchanged")} == {
        "added": 4, "removed": 2, "changed": 3, "unchanged": len(ids["unchanged"])}
    assert result["checked"] == 1.0 and result["promoted"] == 1.0
    expected = set(ids["unchanged"]) | set(ids["changed"]) | set(ids["added"])
    features = out / refresh.FEATURES_DIR
    assert set(shards.read_shards(str(features), ["image_id"])["image_id"]) == expected
    import pyarrow.parquet as pq

    assert set(pq.read_table(features / INDEX_IDS).column("image_id").to_pylist()) == expected

    # a new version of the same registered model, same weights, holding the champion alias now
    after = client.get_model_version_by_alias("amnet", "champion")
    assert int(after.version) == result["registered"] > int(before.version)
    assert after.tags["amnet.refreshed_from"] == str(before.version)
    assert _model_sha(client, "amnet", before.version, tmp_path / "v-before") == \
        _model_sha(client, "amnet", after.version, tmp_path / "v-after")
    assert json.loads(after.tags.get("amnet.refresh.added", "0")) == 4

    # what `amnet search` loads through the alias: the refreshed gallery, a new item found by its id
    searcher = open_searcher("models:/amnet@champion")
    assert searcher.size == len(expected)
    new_item = ids["added"][0]
    assert searcher.search(new_item, {}, k=1, exclude_query=False)[0].image_id == new_item
    assert all(r.image_id not in ids["removed"] for r in searcher.search(new_item, {}, k=len(expected)))
