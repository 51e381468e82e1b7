"""The KFP component bodies of register_model and build_report, called as plain Python (``.python_func``).

Their artifacts are fakes (``FakeArtifact``, ``FakeMetrics``; hence this file's name) with what KFP hands a
component (``.path``, ``.metadata``; ``log_metric`` on Metrics) pointing at real folders: the session's tiny
chain (tests/conftest.py ``trained_chain``), its model featurized and evaluated here.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from amnet_components.register import register_model
from amnet_components.report import build_report

from amnet.steps import evaluate, featurize


class FakeArtifact:
    """What a component body reads of an Input / Output artifact."""

    def __init__(self, path: Path | str, metadata: dict | None = None):
        self.path = str(path)
        self.metadata = dict(metadata or {})


class FakeMetrics(FakeArtifact):
    """An Output[Metrics]: ``log_metric`` keeps the values in ``metadata``, as KFP's does."""

    def log_metric(self, name: str, value: float) -> None:
        self.metadata[name] = value


@pytest.fixture(scope="module")
def evaluated(trained_chain, tmp_path_factory):
    """The chain's AMNet model featurized and evaluated (tracking off) into this module's folders."""
    root = tmp_path_factory.mktemp("components")
    feats, ev = root / "feats", root / "eval"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        featurize.run_step(str(trained_chain.split), str(trained_chain.model), str(feats), progress=False)
        evaluate.run_step(str(trained_chain.split), str(trained_chain.model), str(feats), str(ev), progress=False)
    return {"split": trained_chain.split, "model": trained_chain.model, "features": feats, "evaluation": ev}


def register(evaluated, out: Path, config: dict | None = None) -> tuple[FakeArtifact, FakeMetrics]:
    decision, metrics = FakeArtifact(out / "decision"), FakeMetrics(out / "metrics" / "data")
    register_model.python_func(models=[FakeArtifact(evaluated["model"])],
                               evaluations=[FakeArtifact(evaluated["evaluation"])],
                               features=[FakeArtifact(evaluated["features"])], split=FakeArtifact(evaluated["split"]),
                               config=config or {}, featurize_config={}, evaluate_config={}, parent_run_id="",
                               champion=FakeArtifact(out / "no-champion-scores"), decision=decision, metrics=metrics)
    return decision, metrics


def test_register_without_tracking_writes_a_not_registered_decision(evaluated, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    decision, metrics = register(evaluated, tmp_path)
    payload = json.loads((Path(decision.path) / "decision.json").read_text())
    assert payload["promoted"] is False and payload["reasons"] == ["tracking off: not registered"]
    assert payload["model_name"] == "amnet"
    assert metrics.metadata == {"promoted": 0.0}
    assert json.loads(Path(metrics.path).read_text()) == {"promoted": 0.0}


@pytest.mark.slow
def test_register_promotes_the_first_model_in_the_real_registry(evaluated, tmp_path, monkeypatch, mlflow_server):
    for name, value in mlflow_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.tracking_uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    name = f"amnet-component-{uuid.uuid4().hex[:8]}"
    decision, metrics = register(evaluated, tmp_path, {"model_name": name})
    assert metrics.metadata["promoted"] == 1.0 and metrics.metadata["version"] == 1.0
    assert json.loads(Path(metrics.path).read_text()) == metrics.metadata
    payload = json.loads((Path(decision.path) / "decision.json").read_text())
    assert payload["promoted"] is True and payload["model_name"] == name and payload["version"] == "1"
    assert payload["reasons"] == ["first model: no champion yet"]
    from mlflow import MlflowClient

    assert MlflowClient(mlflow_server.tracking_uri).get_model_version_by_alias(name, "champion").version == "1"


def report(evaluated, out: Path, decision: FakeArtifact | None = None) -> dict:
    outputs = {"report": FakeArtifact(out / "report"), "report_html": FakeArtifact(out / "html" / "page.html"),
               "report_md": FakeArtifact(out / "md" / "page.md"), "metrics": FakeMetrics(out / "metrics" / "data")}
    for artifact in outputs.values():  # KFP creates an output's parent folder before the body runs
        Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
    build_report.python_func(evaluations=[FakeArtifact(evaluated["evaluation"])], parent_run_id="", decision=decision,
                             **outputs)
    return outputs


def test_report_writes_the_folder_and_both_pages(evaluated, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = report(evaluated, tmp_path)
    folder = Path(out["report"].path)
    for name in ("report.html", "report.md", "results.json"):
        assert (folder / name).is_file(), name
    html, md = Path(out["report_html"].path).read_text(), Path(out["report_md"].path).read_text()
    assert html == (folder / "report.html").read_text() and "<html" in html.lower()
    assert md == (folder / "report.md").read_text()
    assert "Registry decision" not in html and "Registry decision" not in md
    top20 = json.loads((Path(evaluated["evaluation"]) / "metrics.json").read_text())["metrics"]["top20"]
    assert out["metrics"].metadata["amnet_top20"] == pytest.approx(top20)
    assert json.loads(Path(out["metrics"].path).read_text()) == pytest.approx(out["metrics"].metadata)
    results = json.loads((folder / "results.json").read_text())
    assert list(results["variants"]) == ["amnet"] and results["decision"] is None


def test_report_shows_the_register_decision(evaluated, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    decision, _ = register(evaluated, tmp_path / "register")
    out = report(evaluated, tmp_path / "report", decision=decision)
    html, md = Path(out["report_html"].path).read_text(), Path(out["report_md"].path).read_text()
    for page in (html, md):
        assert "Registry decision" in page and "amnet: not registered" in page
        assert "tracking off: not registered" in page
    results = json.loads((Path(out["report"].path) / "results.json").read_text())
    assert results["decision"]["reasons"] == ["tracking off: not registered"]
    assert "amnet_top20" in out["metrics"].metadata


def test_evaluate_scores_image_only_beside_amnet_and_the_report_shows_it(evaluated, tmp_path, monkeypatch):
    """evaluate_retrieval with ``image_only``: the image output holds the image-only baseline (its scores also
    in the task's Metrics as ``image_only_*``); without it, only not_evaluated.json. build_report adds the
    scored one as a baseline row and skips the empty one; register_model never sees them."""
    from amnet_components.evaluate import evaluate_retrieval

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tasks = {}
    for name, image_only in (("on", True), ("off", False)):
        outputs = {"evaluation": FakeArtifact(tmp_path / name / "evaluation"),
                   "metrics": FakeMetrics(tmp_path / name / "metrics" / "data"),
                   "image_evaluation": FakeArtifact(tmp_path / name / "image_evaluation")}
        evaluate_retrieval.python_func(split=FakeArtifact(evaluated["split"]), model=FakeArtifact(evaluated["model"]),
                                       features=FakeArtifact(evaluated["features"]), variant="amnet", config={},
                                       parent_run_id="", image_only=image_only, **outputs)
        tasks[name] = outputs
    on, off = tasks["on"], tasks["off"]
    image = json.loads((Path(on["image_evaluation"].path) / "metrics.json").read_text())
    assert image["variant"] == "image_only" and on["image_evaluation"].metadata["variant"] == "image_only"
    assert on["metrics"].metadata["image_only_top20"] == pytest.approx(image["metrics"]["top20"])
    assert on["metrics"].metadata["top20"] == pytest.approx(
        json.loads((Path(on["evaluation"].path) / "metrics.json").read_text())["metrics"]["top20"])
    assert not (Path(off["image_evaluation"].path) / "metrics.json").exists()
    assert (Path(off["image_evaluation"].path) / "not_evaluated.json").is_file()
    assert not any(k.startswith("image_only_") for k in off["metrics"].metadata)

    out = {"report": FakeArtifact(tmp_path / "r" / "report"), "report_html": FakeArtifact(tmp_path / "r" / "p.html"),
           "report_md": FakeArtifact(tmp_path / "r" / "p.md"), "metrics": FakeMetrics(tmp_path / "r" / "m" / "data")}
    for artifact in out.values():
        Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
    build_report.python_func(evaluations=[on["evaluation"]], parent_run_id="",
                             image_evaluations=[on["image_evaluation"], off["image_evaluation"]], **out)
    results = json.loads((Path(out["report"].path) / "results.json").read_text())
    assert list(results["variants"]) == ["amnet", "image_only"]
    assert "amnet_minus_image_only_top20" in out["metrics"].metadata
    md = Path(out["report_md"].path).read_text()
    assert any(line.startswith("| image_only |") for line in md.splitlines())
    assert "image_only = plain visual search: the query image's own representation r, no change applied" in md
