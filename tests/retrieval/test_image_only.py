"""The image-only baseline (``image_only``, plain visual search): the amnet model's own vector of the query
image, no change applied, against the gallery features that model wrote.

On a copy of ``searchable_chain``'s split whose queries are gallery images, each asked twice with two
different change requests, and whose exact target is the query image itself: image_only must find every
query's own image first and answer both requests on an image identically; the amnet variant (the same
model and features, manipulated queries) is the control that shows the requests do change a ranking.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from amnet.cli import main
from amnet.data import shards
from amnet.data.split import label_matrix, load_split_vocab
from amnet.errors import AmnetError

PAIRS = 30  # gallery images asked twice


def gallery_queries(split: Path, out: Path) -> Path:
    """A copy of ``split`` whose test queries are ``PAIRS`` gallery images, each twice: query i changes one
    attribute, query i + PAIRS another one (and, for two-attribute rows, both); target_id = the image itself."""
    shutil.copytree(split, out)
    gallery = shards.read_shards(str(out / "gallery")).iloc[:PAIRS].reset_index(drop=True)
    sizes = load_split_vocab(str(out)).sizes
    labels = label_matrix(gallery["labels"], len(sizes))
    rows = []
    for changed in ([0], [1, 2]):
        for i in range(PAIRS):
            change = [(m + i) % len(sizes) for m in changed]
            target = labels[i].copy()
            for m in change:
                target[m] = (target[m] + 1) % sizes[m]  # another value than the image's own
            rows.append({**gallery.iloc[i].to_dict(), "target": target.tolist(), "changed": sorted(change),
                         "num_changes": len(change), "target_id": str(gallery["image_id"].iloc[i])})
    queries = pd.DataFrame(rows)
    queries["target_id"] = pd.array(queries["target_id"], dtype="string")
    shards.write_shards(queries, str(out / "queries"), 64)
    return out


@pytest.fixture(scope="module")
def scored(searchable_chain, tmp_path_factory):
    """image_only and amnet evaluated (through the CLI) on the gallery-query split, tracking off."""
    root = tmp_path_factory.mktemp("image-only")
    split = gallery_queries(searchable_chain.split, root / "split")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        feats = root / "feats"
        assert main(["step", "featurize", "--split", str(split), "--model", str(searchable_chain.model),
                     "--out", str(feats), "--quiet"]) == 0
        for variant in ("image_only", "amnet"):
            out[variant] = root / variant
            assert main(["step", "evaluate", "--split", str(split), "--model", str(searchable_chain.model),
                         "--features", str(feats), "--variant", variant, "--out", str(out[variant]),
                         "--quiet"]) == 0
    return root, feats, out


def test_image_only_finds_the_query_image_itself_first(scored):
    _, _, out = scored
    pq = pd.read_parquet(out["image_only"] / "per_query.parquet")
    payload = json.loads((out["image_only"] / "metrics.json").read_text())
    assert payload["variant"] == "image_only" and payload["seed"] == 0  # the amnet model's training seed
    assert [results[0] for results in pq["results"]] == list(pq["image_id"])
    assert pq["target_rank"].tolist() == [1] * len(pq)  # the exact-target yardstick agrees
    assert payload["metrics"]["recall1"] == 1.0 and payload["metrics"]["two_recall1"] == 1.0
    assert payload["timing"]["index"]["kind"] == "exact"
    manipulated = pd.read_parquet(out["amnet"] / "per_query.parquet")
    assert (manipulated["target_rank"] > 1).any()  # the control: a manipulated query moves away from its image


def test_image_only_ignores_the_change_request(scored):
    _, _, out = scored
    pq = pd.read_parquet(out["image_only"] / "per_query.parquet")
    first, second = pq.iloc[:PAIRS], pq.iloc[PAIRS:]
    assert list(first["image_id"]) == list(second["image_id"])
    assert [list(c) for c in first["changed"]] != [list(c) for c in second["changed"]]
    assert [list(r) for r in first["results"]] == [list(r) for r in second["results"]]
    manipulated = pd.read_parquet(out["amnet"] / "per_query.parquet")
    assert [list(r) for r in manipulated["results"].iloc[:PAIRS]] != \
        [list(r) for r in manipulated["results"].iloc[PAIRS:]]  # the same model does act on the requests


def test_image_only_refuses_another_model_and_names_what_to_pass(scored, searchable_chain, tmp_path, monkeypatch):
    root, feats, _ = scored
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from amnet.steps import evaluate

    with pytest.raises(AmnetError, match=r"got the attribute CNN: pass the amnet variant's trained model "
                                         r"\(output of `amnet step train --variant amnet`\)"):
        evaluate.run_step(str(root / "split"), str(searchable_chain.attr), str(feats), str(tmp_path / "x"),
                          "image_only", progress=False)
    assert not (tmp_path / "x" / "metrics.json").exists()


def test_the_pipeline_task_scores_image_only_beside_amnet_only(scored, searchable_chain, tmp_path, monkeypatch):
    """``run_with_image_only`` (the evaluate component's body): amnet + image_only -> both folders scored;
    image_only not asked for -> the image folder holds only not_evaluated.json, which the report skips."""
    from amnet.steps.evaluate import run_with_image_only
    from amnet.steps.report import is_evaluation

    root, feats, out = scored
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = (str(root / "split"), str(searchable_chain.model), str(feats))
    results, image = run_with_image_only(*args, str(tmp_path / "a"), str(tmp_path / "ai"), "amnet",
                                         image_only=True, progress=False)
    assert image is not None and image["recall1"] == 1.0 and results["recall1"] < 1.0
    saved = json.loads((out["image_only"] / "metrics.json").read_text())["metrics"]
    assert json.loads((tmp_path / "ai" / "metrics.json").read_text())["metrics"] == saved
    _, none = run_with_image_only(*args, str(tmp_path / "b"), str(tmp_path / "bi"), "amnet", image_only=False,
                                  progress=False)
    marker = json.loads((tmp_path / "bi" / "not_evaluated.json").read_text())
    assert none is None and marker["variant"] == "image_only" and marker["evaluated"] is False
    assert marker["reason"].startswith("not asked of this task")
    assert not is_evaluation(str(tmp_path / "bi")) and is_evaluation(str(tmp_path / "ai"))
