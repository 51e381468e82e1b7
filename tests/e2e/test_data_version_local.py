"""Scheduled retraining sees new data: a changed dataset retrains, through ``kfp.local``.

The whole pipeline (``local_run.run_pipeline``, kfp.local's cache on) against the real local stack
(SeaweedFS + MLflow, ``mlflow_server``): run it, run it again on the same data (the fingerprint runs,
the split, pretraining, prototypes and training are cache hits), then remove rows from ``manifest.parquet`` at
the same URI, as a catalogue update does, and run again: split, pretraining and prototypes rerun,
and the new split, model and MLflow training run carry the new digest and row count. The model
artifacts hold no checkpoint folder: the resumable state lives under ``kfp-root/checkpoints``.
"""

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from amnet.config import RegisterConfig
from amnet.data.fingerprint import fingerprint_dataset
from amnet.model_store import load_payload
from amnet.names import TAG_DATASET_DIGEST
from amnet.ops.registry.gate import GateRule, compare
from tests.helpers import tiny_dataset

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TINY = {"split_config": {"per_value": 10, "gallery_size": 300, "num_queries": 40},
        "pretrain_config": {"epochs": 1}, "train_config": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 8}}
UPSTREAM = ("split-dataset", "pretrain-attribute-cnn", "compute-prototypes")



def split_summary(run_dir: Path) -> dict:
    (path,) = run_dir.glob("**/split-dataset/split/split.json")
    return json.loads(path.read_text())


def test_changed_data_at_the_same_uri_reruns_split_pretrain_and_prototypes(tmp_path, stack_env):
    from amnet_pipeline.local_run import run_pipeline

    dataset = Path(tiny_dataset(tmp_path))
    params = {**TINY, "dataset_uri": str(dataset), "variants": ["amnet"], "attribute_baseline": False,
              "experiment": "data-version"}
    work = tmp_path / "work"
    first_times: dict[str, str] = {}
    first = run_pipeline(params, work, cache=True, times=first_times)
    assert all(first_times[t].endswith(" s") for t in ("fingerprint-dataset", *UPSTREAM)), first_times
    before = split_summary(first)
    assert before["dataset_digest"] == fingerprint_dataset(str(dataset)).digest and before["rows_in"] == 900

    same: dict[str, str] = {}
    run_pipeline(params, work, cache=True, times=same)
    assert same["fingerprint-dataset"].endswith(" s")  # never cached: it is what detects a change
    assert all(same[t] == "cached" for t in UPSTREAM), same
    # no per-run input: training too (train-amnet-2: the variant loop of the no-baseline branch)
    assert [v for t, v in same.items() if t.startswith("train-amnet")] == ["cached"], same

    manifest = dataset / "manifest.parquet"  # a catalogue update: 100 rows fewer, same URI
    df = pd.read_parquet(io.BytesIO(manifest.read_bytes()))
    df.iloc[:800].to_parquet(manifest, index=False)
    changed: dict[str, str] = {}
    third = run_pipeline(params, work, cache=True, times=changed)
    assert all(changed[t].endswith(" s") for t in UPSTREAM), changed  # rerun on the new data
    after = split_summary(third)
    digest = fingerprint_dataset(str(dataset)).digest
    assert after["dataset_digest"] == digest != before["dataset_digest"] and after["rows_in"] == 800

    # the new model records the new data, in model.pt and on its MLflow training run
    (model,) = third.glob("**/train-amnet*/model")
    assert load_payload(str(model / "model.pt"))["extra"][TAG_DATASET_DIGEST] == digest
    experiment = stack_env.get_experiment_by_name("data-version")
    runs = stack_env.search_runs([experiment.experiment_id], "tags.`amnet.stage` = 'train-amnet'",
                                 order_by=["attributes.start_time DESC"])
    assert runs[0].data.tags[TAG_DATASET_DIGEST] == digest

    # the champion (run 1's model, scored on the old split) was re-scored on the new data by the GPU task,
    # and the registry gate used those scores
    (rescored,) = [json.loads(p.read_text()) for p in third.glob("**/reevaluate-champion*/champion/champion.json")]
    assert rescored["reevaluated"] is True and rescored["version"] is not None
    (decision,) = [json.loads(p.read_text()) for p in third.glob("**/register-model*/decision/decision.json")]
    rule = GateRule.of(RegisterConfig())
    assert decision["model_name"] == "amnet" and decision["version"].isdigit(), decision
    assert str(decision["champion_before"]) == rescored["version"] != decision["version"], (decision, rescored)
    assert set(decision["challenger"]) == set(decision["champion"]) == set(rule.metrics), decision
    assert decision["champion"] == {m: rescored["scores"][m] for m in rule.metrics}
    # the verdict is the gate's on exactly these scores, and every reason names a metric and both values
    promote, reasons = compare(decision["challenger"], decision["champion"], rule)
    assert isinstance(decision["promoted"], bool) and decision["promoted"] == promote, decision
    assert decision["reasons"] == reasons and len(reasons) == len(rule.metrics), decision
    assert all(r.startswith(m) for r, m in zip(decision["reasons"], rule.metrics, strict=True)), decision
    # ... and the registry did what the decision says
    champion_now = str(stack_env.get_model_version_by_alias("amnet", "champion").version)
    assert champion_now == (decision["version"] if promote else decision["champion_before"]), decision
    assert str(stack_env.get_model_version_by_alias("amnet", "challenger").version) == decision["version"]

    # resumable state outside the artifacts, keyed by task, inputs and config (no run id: the tasks are cached)
    assert not (model / "checkpoints").exists()
    assert not any(p.name == "checkpoints" for p in third.rglob("*"))
    states = list((work / "kfp-root" / "checkpoints").glob("*/train-amnet-*/train_state.pt"))
    assert len(states) == 2  # the first data and the new data; the rerun on the same data was a cache hit
    assert {p.parent.parent.name for p in states} == {"shared"}
    assert list((work / "kfp-root" / "checkpoints" / "shared").glob("pretrain-*/train_state.pt"))
