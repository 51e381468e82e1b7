"""The §5 report built from a tiny real run: every section present, every image decodes.

The run is real (synthetic dataset -> split -> pretrain -> prototypes -> three AMNet variants trained
for 2 steps + the attribute-based baseline -> featurize -> evaluate, + image_only with the amnet model and
its features), only tiny (32 px, width 8).
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from amnet.cli import main
from amnet.names import VARIANTS as VARIANT_ORDER
from amnet.report.report import run_report
from amnet.report.sections import increase_ratio
from amnet.retrieval.evaluate import gallery_study, gallery_subsets
from tests.helpers import load_quality, tiny_dataset

MODEL = ["--set", "model.image_size=32", "--set", "model.width=8", "--set", "model.feature_dim=32"]
SECTIONS = ("Summary", "Fig. 5", "Table 2", "Fig. 6", "Two-attribute manipulation", "Per-attribute",
            "Fig. 7", "Timing")


def test_gallery_subsets_are_nested_and_ignore_row_order():
    ids = np.array([f"img{i:03d}" for i in range(40)])
    a = gallery_subsets(ids)
    shuffled = np.random.default_rng(1).permutation(40)
    b = gallery_subsets(ids[shuffled])
    assert {k: len(v) for k, v in a.items()} == {"0.25": 10, "0.5": 20, "0.75": 30, "1.0": 40}
    for key in a:
        assert set(ids[a[key]]) == set(ids[shuffled][b[key]])  # same images whatever the row order
    assert set(a["0.25"]) <= set(a["0.5"]) <= set(a["0.75"]) <= set(a["1.0"])


def test_gallery_study_counts_absent_targets_as_misses():
    labels = np.array([[0, 0], [1, 1], [0, 1], [1, 0]])  # (G, M)
    feats = np.eye(4, dtype=np.float32)  # each query vector equals one gallery row
    targets = np.array([[0, 0], [1, 1]])
    q = feats[[0, 1]]
    subsets = {"0.5": np.array([0, 2]), "1.0": np.arange(4)}  # the half lacks query 2's target
    study = gallery_study("amnet", q, feats, labels, None, None, targets, subsets, k=1)
    assert study["accuracy"] == {"0.5": 0.5, "1.0": 1.0}
    assert study["answerable"] == {"0.5": 0.5, "1.0": 1.0} and study["present"]["0.5"] == 1.0
    assert increase_ratio(study["accuracy"]) == pytest.approx(-0.5)
    assert increase_ratio({"0.25": 0.3, "1.0": 0.0}) is None


def build_run(root: Path) -> list[str]:
    """A tiny end-to-end run under ``root``; returns the evaluation folders, one per variant (paper order)."""
    split, attr, protos = root / "split", root / "attr", root / "protos"
    assert main(["data", "split", tiny_dataset(root, num_images=700), "--out", str(split), "--per-value", "8",
                 "--gallery-size", "200", "--num-queries", "20", "--shard-size", "64"]) == 0
    assert main(["step", "pretrain", "--split", str(split), "--out", str(attr), "--quiet", *MODEL,
                 "--set", "epochs=1", "--set", "batch_size=32"]) == 0
    assert main(["step", "prototypes", "--split", str(split), "--attr-model", str(attr), "--out", str(protos),
                 "--quiet"]) == 0
    evaluations = []
    for variant in VARIANT_ORDER:
        model = attr if variant == "attribute_based" else root / f"model-{variant}"
        feats, ev = root / f"feats-{variant}", root / f"eval-{variant}"
        if variant == "image_only":  # the amnet model and the gallery features it wrote, queries unmanipulated
            model, feats = root / "model-amnet", root / "feats-amnet"
        elif variant != "attribute_based":
            assert main(["step", "train", "--split", str(split), "--attr-model", str(attr), "--prototypes",
                         str(protos), "--variant", variant, "--out", str(model), "--quiet", "--set", "epochs=1",
                         "--set", "steps_per_epoch=2", "--set", "batch_size=8"]) == 0
        if variant != "image_only":
            assert main(["step", "featurize", "--split", str(split), "--model", str(model), "--out", str(feats),
                         "--quiet"]) == 0
        assert main(["step", "evaluate", "--split", str(split), "--model", str(model), "--features", str(feats),
                     "--variant", variant, "--out", str(ev), "--quiet"]) == 0
        evaluations.append(str(ev))
    return evaluations


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[list[str], Path, dict[str, float]]:
    root = tmp_path_factory.mktemp("report")
    evaluations = build_run(root)
    decision = {"model_name": "amnet", "version": "3", "promoted": False, "champion_before": "2",
                "reasons": ["top20 0.41 < champion 0.45 - margin 0.00"], "challenger": {"top20": 0.41},
                "champion": {"top20": 0.45}}
    out = root / "report"
    return evaluations, out, run_report(evaluations, str(out), decision=decision).headline


def test_evaluation_carries_curves_gallery_study_examples_and_timing(run):
    evaluations, _, _ = run
    for ev in evaluations:
        payload = json.loads((Path(ev) / "metrics.json").read_text())
        for key in ("top1", "top5", "top10", "top20", "top30", "top50", "ndcg20", "two_top20", "two_ndcg20"):
            assert 0.0 <= payload["metrics"][key] <= 1.0
        curve = payload["curves"]["1"]
        assert len(curve) == 50 and curve == sorted(curve)
        assert curve[19] == pytest.approx(payload["metrics"]["top20"])
        assert set(payload["gallery_curve"]) == {"0.25", "0.5", "0.75", "1.0"}
        assert payload["gallery_curve"]["1.0"] == pytest.approx(payload["metrics"]["top20"])
        assert payload["gallery_sizes"] == {"0.25": 50, "0.5": 100, "0.75": 150, "1.0": 200}
        timing = payload["timing"]
        assert timing["featurize"]["images_per_s"] > 0 and timing["hardware"]["cpu_count"] >= 1
        examples = pd.read_parquet(Path(ev) / "examples.parquet")
        assert list(examples["num_changes"]) == [1, 1, 1, 1, 2, 2]
        assert all(len(t) == 5 for t in examples["result_thumbs"]) and "→" in examples["manipulation"][0]
    ids = [list(pd.read_parquet(Path(ev) / "examples.parquet")["query_id"]) for ev in evaluations]
    assert all(i == ids[0] for i in ids)  # the same queries for every variant


def test_report_has_every_section_and_its_images_decode(run):
    _, out, _ = run
    page = (out / "report.html").read_text()
    assert page.startswith("<!doctype html>")
    for section in (*SECTIONS, "Registry decision"):
        assert section in page, section
    images = re.findall(r'src="data:image/(png|jpeg);base64,([^"]+)"', page)
    n = len(VARIANT_ORDER)
    assert len(images) == 4 + 6 * (1 + n * 5)  # 4 plots + Fig. 7: 6 queries, every variant x top-5
    for _, data in images:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()
    assert "src=\"http" not in page and "<script" not in page  # self-contained
    markdown = (out / "report.md").read_text()
    for png in sorted(out.glob("*.png")):
        assert f"]({png.name})" in markdown
        assert Image.open(png).size[0] > 100
    assert {"fig5_topk.png", "fig6_gallery.png", "two_attribute_topk.png", "per_attribute.png",
            "fig7_examples.png"} <= {p.name for p in out.glob("*.png")}


def test_per_query_table_and_headline(run):
    evaluations, out, scalars = run
    per_query = pd.read_parquet(out / "per_query.parquet")
    assert set(per_query["variant"]) == set(VARIANT_ORDER)
    assert len(per_query) == sum(len(pd.read_parquet(Path(ev) / "per_query.parquet")) for ev in evaluations)
    for variant in VARIANT_ORDER:
        for key in ("top1", "top20", "ndcg20", "two_top20", "two_ndcg20", "gallery_increase"):
            assert f"{variant}_{key}" in scalars
    results = json.loads((out / "results.json").read_text())
    assert list(results["variants"]) == list(VARIANT_ORDER) and results["decision"]["version"] == "3"


def test_image_only_is_a_baseline_row_beside_attribute_based(run):
    """Plain visual search appears wherever the attribute-based baseline does: the headline table, Table 2
    (no memory, no ranking loss), its description, AMNet − image_only with a paired interval."""
    _, out, scalars = run
    md = (out / "report.md").read_text()
    rows = [line.split(" | ")[0].lstrip("| ") for line in md.split("## Summary", 1)[1].split("\n## ", 1)[0]
            .splitlines() if line.startswith("| ")]
    assert rows[-2:] == ["attribute_based", "image_only"], rows
    assert "image_only = plain visual search: the query image's own representation r, no change applied" in md
    table2 = md.split("Table 2", 1)[1].split("\n## ", 1)[0]
    assert any(line.startswith("| image_only |  |  | ") for line in table2.splitlines()), table2
    differences = md.split("## Paired differences: AMNet − x", 1)[1].split("\n## ", 1)[0]
    assert any(line.startswith("| image_only | ") for line in differences.splitlines())
    assert "amnet_minus_image_only_top20_ci_low" in scalars and "image_only_gallery_increase" in scalars


def test_report_reads_evaluations_without_the_new_fields(run, tmp_path):
    """An evaluation written before curves / examples existed (e.g. a KFP cache hit) still reports."""
    evaluations, _, _ = run
    old = tmp_path / "old"
    old.mkdir()
    payload = json.loads((Path(evaluations[0]) / "metrics.json").read_text())
    (old / "metrics.json").write_text(json.dumps({k: payload[k] for k in ("variant", "metrics", "config")}))
    scalars = run_report([str(old), *evaluations[1:]], str(tmp_path / "report")).headline
    assert "amnet_top20" in scalars
    assert "not measured" in (tmp_path / "report" / "report.html").read_text()


@pytest.mark.slow
def test_report_goes_to_the_mlflow_parent_run(run, tmp_path, monkeypatch, mlflow_server):
    """Headline metrics, the page, the plots and the per-query table land on the parent run (real server)."""
    from mlflow import MlflowClient

    from amnet.ops.tracking import runs

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    evaluations, _, _ = run
    parent = runs.start_parent("amnet-report-tests", "report")
    from amnet.steps.report import run_step

    scalars = run_step(evaluations, str(tmp_path / "report"), parent)
    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    logged = client.get_run(parent).data.metrics
    assert logged["amnet_top20"] == pytest.approx(scalars["amnet_top20"])
    root = {a.path for a in client.list_artifacts(parent)}
    inside = {a.path for a in client.list_artifacts(parent, "report")}
    assert "report.html" in root
    assert {"report/report.md", "report/per_query.parquet", "report/results.json", "report/fig5_topk.png",
            "report/fig6_gallery.png", "report/fig7_examples.png"} <= inside


def test_an_independent_rescoring_of_the_saved_rankings_agrees_with_metrics_json(run):
    """Top-k and NDCG@20 recomputed from per_query.parquet's saved rankings and the dataset's own
    manifest by ``quality/rescore.py`` (code that shares nothing with amnet.retrieval.metrics),
    for every evaluation of the run, and by its command line over the whole run folder."""
    evaluations, _, _ = run
    root = Path(evaluations[0]).parent
    rescore = load_quality("rescore")
    truth = rescore.read_truth(root / "synth-700-0-64")
    for ev in evaluations:
        payload = json.loads((Path(ev) / "metrics.json").read_text())
        mine = rescore.rescore(truth, Path(ev))
        assert set(mine) >= {"top1", "top20", "ndcg20", "two_top20", "two_ndcg20"}
        for key, value in mine.items():
            assert value == pytest.approx(payload["metrics"][key], abs=1e-12), (payload["variant"], key)
    assert rescore.main(["--dataset", str(root / "synth-700-0-64"), "--runs", str(root)]) == 0


def test_evaluate_scores_the_validation_queries_when_told(run, tmp_path):
    evaluations, _, _ = run
    root = Path(evaluations[0]).parent
    out = tmp_path / "val"
    assert main(["step", "evaluate", "--split", str(root / "split"), "--model", str(root / "model-amnet"),
                 "--features", str(root / "feats-amnet"), "--out", str(out), "--quiet", "--set", "queries=val"]) == 0
    scored = set(pd.read_parquet(out / "per_query.parquet")["image_id"])
    val = set(pd.concat(pd.read_parquet(p) for p in sorted((root / "split" / "val_queries").glob("part-*.parquet")))
              ["image_id"])
    test = set(pd.read_parquet(Path(evaluations[0]) / "per_query.parquet")["image_id"])
    assert scored == val and not scored & test
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["config"]["queries"] == "val" and payload["seed"] == 0  # the model's training seed
