"""Champion / challenger gate: the rule on numbers, then against the real MLflow server."""

from __future__ import annotations

import json
import shutil

import pytest

from amnet.cli import main
from amnet.ops.registry.gate import GateRule, compare, register_and_gate
from tests.helpers import tiny_dataset

MODEL = ["--set", "model.image_size=32", "--set", "model.width=8", "--set", "model.feature_dim=32"]


def test_first_model_is_promoted():
    assert compare({"top20": 0.1, "ndcg20": 0.1}, None, GateRule())[0]


def test_better_or_equal_is_promoted_worse_is_not():
    rule = GateRule()
    champ = {"top20": 0.5, "ndcg20": 0.4}
    assert compare({"top20": 0.5, "ndcg20": 0.4}, champ, rule)[0]
    assert compare({"top20": 0.6, "ndcg20": 0.45}, champ, rule)[0]
    promote, reasons = compare({"top20": 0.6, "ndcg20": 0.39}, champ, rule)
    assert not promote and any("ndcg20" in r and "<" in r for r in reasons)
    assert compare({"top20": 0.6, "ndcg20": 0.39}, champ, GateRule(rule="any"))[0]
    assert compare({"top20": 0.49, "ndcg20": 0.39}, champ, GateRule(margin=0.02))[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny split and two tiny AMNet models (different seeds), each featurized and evaluated."""
    root = tmp_path_factory.mktemp("registry")
    split = root / "split"
    assert main(["data", "split", tiny_dataset(root, num_images=600), "--out", str(split), "--per-value", "8",
                 "--gallery-size", "150", "--num-queries", "10", "--shard-size", "100"]) == 0
    assert main(["step", "pretrain", "--split", str(split), "--out", str(root / "attr"), "--quiet", *MODEL,
                 "--set", "epochs=1"]) == 0
    assert main(["step", "prototypes", "--split", str(split), "--attr-model", str(root / "attr"),
                 "--out", str(root / "protos"), "--quiet"]) == 0
    for seed in (1, 2):
        m, f, e = (str(root / f"{p}{seed}") for p in ("model", "feats", "eval"))
        assert main(["step", "train", "--split", str(split), "--attr-model", str(root / "attr"), "--prototypes",
                     str(root / "protos"), "--out", m, "--quiet", "--set", "epochs=1", "--set", "steps_per_epoch=2",
                     "--set", "batch_size=8", "--set", f"seed={seed}"]) == 0
        assert main(["step", "featurize", "--split", str(split), "--model", m, "--out", f, "--quiet"]) == 0
        assert main(["step", "evaluate", "--split", str(split), "--model", m, "--features", f, "--out", e,
                     "--quiet"]) == 0
    return root


def with_scores(root, src: str, name: str, top20: float, ndcg20: float) -> str:
    """A copy of a real evaluation whose gate metrics are set by the test (the gate's input)."""
    dst = root / name
    shutil.copytree(root / src, dst, dirs_exist_ok=True)
    payload = json.loads((dst / "metrics.json").read_text())
    payload["metrics"].update(top20=top20, ndcg20=ndcg20)
    (dst / "metrics.json").write_text(json.dumps(payload))
    return str(dst)


@pytest.fixture
def tracked(monkeypatch, mlflow_server):
    for name, value in mlflow_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.tracking_uri)


@pytest.mark.slow
def test_gate_against_the_real_registry(trained, tracked, tmp_path):
    root, split, name = trained, str(trained / "split"), "amnet-gate-test"
    first = register_and_gate(str(root / "model1"), with_scores(root, "eval1", "e1", 0.5, 0.4), str(root / "feats1"),
                              split, str(tmp_path / "d1"), model_name=name)
    assert first.promoted and first.reasons == ["first model: no champion yet"]
    assert tracked.get_model_version_by_alias(name, "champion").version == first.version

    worse = register_and_gate(str(root / "model2"), with_scores(root, "eval2", "e2", 0.45, 0.41),
                              str(root / "feats2"), split, str(tmp_path / "d2"), model_name=name)
    assert not worse.promoted
    assert tracked.get_model_version_by_alias(name, "champion").version == first.version
    assert tracked.get_model_version_by_alias(name, "challenger").version == worse.version
    tag = tracked.get_model_version(name, worse.version).tags["amnet.decision"]
    assert "kept the champion" in tag and "top20 0.4500 < 0.5000" in tag
    assert json.loads((tmp_path / "d2" / "decision.json").read_text())["promoted"] is False

    # a KFP retry of the same model: same version, no duplicate
    again = register_and_gate(str(root / "model2"), with_scores(root, "eval2", "e2b", 0.45, 0.41),
                              str(root / "feats2"), split, str(tmp_path / "d3"), model_name=name)
    assert again.version == worse.version
    assert len(tracked.search_model_versions(f"name = '{name}'")) == 2

    better = register_and_gate(str(root / "model2"), with_scores(root, "eval2", "e2c", 0.6, 0.5),
                               str(root / "feats2"), split, str(tmp_path / "d4"), model_name=name)
    assert better.promoted and tracked.get_model_version_by_alias(name, "champion").version == worse.version
    version = tracked.get_model_version(name, better.version)
    assert version.tags["amnet.variant"] == "amnet" and json.loads(version.tags["amnet.attributes"])[0] == "category"
