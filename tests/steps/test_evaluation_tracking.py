"""What the evaluate and report stages leave in MLflow besides scalars, against the real server: the top-k
and Recall@K curves as step metrics (evaluation run and, per variant, the parent run), and the model's own
evaluation logged against the logged model with the split's dataset (MLflow's Models page)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

EXPERIMENT = "evaluation-tracking"


@pytest.fixture(scope="module")
def tracked(mlflow_server, trained_chain, tmp_path_factory) -> dict:
    """A tracked train -> featurize -> evaluate (amnet and image_only) -> report under one parent run."""
    from mlflow import MlflowClient

    from amnet.steps import evaluate, featurize, parent, report, train

    root = tmp_path_factory.mktemp("evaluation-tracking")
    out = {name: str(root / name) for name in ("model", "feats", "eval", "image", "report")}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in mlflow_server.env.items():
            mp.setenv(name, value)
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mp.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
        chain = trained_chain
        parent_id = parent.start(EXPERIMENT, "kfp-run", "evaluation-tracking")
        train.run_step(str(chain.split), str(chain.attr), str(chain.protos), out["model"], "amnet",
                       {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8}, parent_id, progress=False)
        featurize.run_step(str(chain.split), out["model"], out["feats"], parent_run_id=parent_id, progress=False)
        evaluate.run_with_image_only(str(chain.split), out["model"], out["feats"], out["eval"], out["image"],
                                     parent_run_id=parent_id, image_only=True, progress=False)
        report.run_step([out["eval"]], out["report"], parent_id, image_evaluations=[out["image"]])
        parent.finish(parent_id, True)
    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    stage_runs = {r.data.tags.get("amnet.stage"): r for r in client.search_runs([exp.experiment_id])}
    return {"client": client, "out": out, "parent": parent_id, "runs": stage_runs,
            "marker": json.loads((root / "model" / "mlflow_run.json").read_text()),
            "metrics": json.loads((root / "eval" / "metrics.json").read_text())}


def _steps(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_the_evaluation_run_holds_the_curves_with_step_k(tracked):
    client, run = tracked["client"], tracked["runs"]["evaluate-amnet"]
    curves = tracked["metrics"]["curves"]
    for changes, name in (("1", "curve/top_k_accuracy"), ("2", "curve/two_top_k_accuracy")):
        assert _steps(client, run.info.run_id, name) == [(k, pytest.approx(v)) for k, v in
                                                          enumerate(curves[changes], start=1)]
    assert len(curves["1"]) == 50
    for changes, values in (tracked["metrics"].get("recall_curves") or {}).items():
        name = f"curve/{'two_' if changes == '2' else ''}exact_recall"
        assert [s for s, _ in _steps(client, run.info.run_id, name)] == list(range(1, len(values) + 1))
    # the scalars are as before
    assert run.data.metrics["top20"] == pytest.approx(tracked["metrics"]["metrics"]["top20"])
    assert "curve/top_k_accuracy" in tracked["runs"]["evaluate-image_only"].data.metrics


def test_the_parent_run_holds_each_variants_curves(tracked):
    client, parent = tracked["client"], tracked["parent"]
    metrics = client.get_run(parent).data.metrics
    assert "amnet_top20" in metrics and "image_only_top20" in metrics
    for variant in ("amnet", "image_only"):
        steps = [s for s, _ in _steps(client, parent, f"curve/{variant}_top_k_accuracy")]
        assert steps == list(range(1, 51)), variant


def test_the_models_own_evaluation_is_logged_against_the_logged_model(tracked):
    client, model_id = tracked["client"], tracked["marker"]["model_id"]
    evaluation, image_only = tracked["runs"]["evaluate-amnet"], tracked["runs"]["evaluate-image_only"]
    model_metrics = client.get_logged_model(model_id).metrics  # also the training run's (MLflow links those)
    ours = {m.key: m for m in model_metrics if m.run_id == evaluation.info.run_id}
    assert {"top1", "top20", "ndcg20", "two_top20"} <= set(ours)
    assert ours["top20"].value == pytest.approx(tracked["metrics"]["metrics"]["top20"])
    (entry,) = evaluation.inputs.dataset_inputs  # the split's dataset, as the evaluation run records it
    assert {(m.dataset_name, m.dataset_digest) for m in ours.values()} == {(entry.dataset.name, entry.dataset.digest)}
    # plain visual search with the same model is not the model's own evaluation
    assert not any(m.run_id == image_only.info.run_id for m in model_metrics)
