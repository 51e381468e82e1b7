"""Gallery refresh without retraining: the digest diff (pure) and a refresh of a tiny chain's gallery
against a catalogue with images changed, added and removed (tracking off)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from amnet.config import FeaturizeConfig, RefreshConfig
from amnet.retrieval.refresh import Diff, diff_digests
from tests.catalogue_helpers import changed_catalogue


def test_diff_sorts_ids_into_added_removed_changed_unchanged():
    recorded = {"a": "1", "b": "2", "c": "3", "d": None}
    current = {"a": "1", "b": "9", "d": "4", "e": "5"}
    assert diff_digests(recorded, current) == Diff(added=["e"], removed=["c"], changed=["b", "d"], unchanged=["a"])


def test_diff_of_identical_catalogues_changes_nothing():
    same = {f"id{i}": f"h{i}" for i in range(5)}
    d = diff_digests(same, dict(same))
    assert d.counts() == {"added": 0, "removed": 0, "changed": 0, "unchanged": 5}


def test_diff_of_an_empty_recording_adds_everything():
    assert diff_digests({}, {"x": "1", "y": "2"}).counts() == {"added": 2, "removed": 0, "changed": 0, "unchanged": 0}


def test_refresh_config_checks_its_ranges():
    from amnet.config import from_dict
    from amnet.errors import ConfigError

    with pytest.raises(ConfigError, match="min_recall"):
        from_dict(RefreshConfig, {"min_recall": 1.5})
    with pytest.raises(ConfigError, match="rebuild_fraction"):
        from_dict(RefreshConfig, {"rebuild_fraction": 0})


def _features(folder: str) -> dict[str, tuple[bytes, str]]:
    from amnet.data import shards

    out = {}
    for uri in shards.list_shards(folder):
        t = pq.read_table(uri)
        for i, f, d in zip(t["image_id"].to_pylist(), t["feature"].to_pylist(), t["digest"].to_pylist(), strict=True):
            out[str(i)] = (f, d)
    return out


@pytest.mark.parametrize("kind", ["exact", "pq"])
def test_refresh_featurizes_only_what_changed(trained_chain, tmp_path, monkeypatch, kind):
    from amnet.model_store import load_model
    from amnet.retrieval.feature_index import INDEX_IDS, build_feature_index
    from amnet.retrieval.featurize import run_featurize
    from amnet.retrieval.refresh import refresh_features
    from amnet.steps.refresh import sanity_check

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = FeaturizeConfig(batch_size=64)
    features = str(tmp_path / "features")
    run_featurize(str(trained_chain.split), str(trained_chain.model), features, cfg, progress=False)
    build_feature_index(features, features, kind=kind)
    before = _features(features)
    assert all(len(d) == 64 for _, d in before.values())  # every row records its image's sha256

    catalogue, ids = changed_catalogue(str(trained_chain.split), tmp_path / "catalogue")
    out = str(tmp_path / "refreshed")
    loaded = load_model(str(trained_chain.model), "cpu")
    summary = refresh_features(features, catalogue, loaded, "cpu", out, cfg)

    assert {k: summary[k] for k in ("added", "removed", "changed", "unchanged")} == {
        "added": 4, "removed": 2, "changed": 3, "unchanged": len(ids["unchanged"])}
    assert summary["featurized"] == 7
    after = _features(out)
    assert set(after) == set(ids["unchanged"]) | set(ids["changed"]) | set(ids["added"])
    assert all(after[i][0] == before[i][0] for i in ids["unchanged"])  # byte-identical vectors
    assert all(after[i][1] != before[i][1] for i in ids["changed"])
    # the index holds the refreshed artifact's rows, in its order
    index_ids = pq.read_table(os.path.join(out, INDEX_IDS)).column("image_id").to_pylist()
    assert index_ids == list(after)
    assert summary["index"]["update"] == ("incremental" if kind == "exact" else "re-encoded")
    assert json.loads(Path(out, "features.json").read_text())["count"] == len(after)

    # a full featurization of the whole catalogue agrees with the refreshed vectors, kept and new alike
    from amnet.data.catalogue import scan_catalogue
    from amnet.retrieval.featurize import featurize_frame

    everything = scan_catalogue(catalogue, {}).fresh
    full = featurize_frame(loaded, everything, 64, "cpu", cfg)
    dim = loaded.retrieval_dim
    mine = np.stack([np.frombuffer(after[i][0], np.float16) for i in full["image_id"]]).reshape(-1, dim)
    theirs = np.stack([np.frombuffer(f, np.float16) for f in full["feature"]]).reshape(-1, dim)
    np.testing.assert_allclose(mine.astype(np.float32), theirs.astype(np.float32), atol=2e-3)
    assert list(full["digest"]) == [after[i][1] for i in full["image_id"]]

    from amnet.data.catalogue import write_gallery

    gallery = write_gallery(scan_catalogue(catalogue, {}), str(tmp_path / "gallery-split"), shard_rows=50)
    problems = sanity_check(os.path.join(str(trained_chain.model), "model.pt"), out, gallery, summary, ids["added"],
                            ids["unchanged"], RefreshConfig(min_recall=0.5))
    assert problems == []
