"""One registered model name, two catalogues with other attributes: each vocabulary gets its own champion, a
champion of another vocabulary is never re-scored (its model cannot read the other split's labels), and the
decision says why — through the reevaluate and register stages' ``run_step``, against the real MLflow server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from amnet.ops.registry import champion, promote
from amnet.ops.tracking.runs import TAG_DECISION
from amnet.steps import reevaluate, register
from tests.conftest import TINY_MODEL, build_chain
from tests.ops.registry.models import another_model, fewer_attributes, scored


@pytest.fixture(scope="module")
def catalogues(trained_chain, tmp_path_factory) -> tuple[dict[str, str], dict[str, str]]:
    """(the built-in garments, a catalogue of three of their attributes), each trained, featurized, evaluated."""
    root = tmp_path_factory.mktemp("catalogue-b")
    other = build_chain(root, fewer_attributes(trained_chain.dataset, root / "dataset"),
                        {"per_value": 8, "gallery_size": 200, "num_queries": 20, "shard_size": 64},
                        {"model": TINY_MODEL, "epochs": 1, "batch_size": 32},
                        {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8})
    return scored(trained_chain, root / "garments"), scored(other, root / "other")


def run(chain: dict[str, str], out: Path, config: dict) -> tuple[dict, dict]:
    """reevaluate-champion then register-model, as the pipeline runs them: (champion.json, decision.json)."""
    reevaluate.run_step(chain["split"], str(out / "champion"), config)
    register.run_step([chain["model"]], [chain["evaluation"]], [chain["features"]], chain["split"],
                      str(out / "decision"), config, champion=str(out / "champion"))
    return (json.loads((out / "champion" / "champion.json").read_text()),
            json.loads((out / "decision" / "decision.json").read_text()))


@pytest.mark.slow
def test_two_catalogues_in_one_registry_each_keep_their_own_champion(catalogues, stack_env, tmp_path):
    garments, other = catalogues
    name = f"amnet-catalogues-{uuid.uuid4().hex[:8]}"
    config = {"model_name": name}
    digest_a, digest_b = (champion.split_vocabulary(c["split"]) for c in (garments, other))
    assert digest_a != digest_b

    rescored, first = run(garments, tmp_path / "a1", config)
    assert rescored["version"] is None and rescored["reason"] == "no champion yet for this catalogue vocabulary"
    assert first["promoted"] and first["serves_champion"] and first["vocabulary"] == digest_a
    assert str(stack_env.get_model_version_by_alias(name, "champion").version) == first["version"]

    # a registry from before per-vocabulary aliases and tags: `champion` alone, its vocabulary read from model.pt
    stack_env.delete_registered_model_alias(name, champion.champion_alias(digest_a))
    stack_env.delete_model_version_tag(name, first["version"], champion.TAG_VOCAB)

    rescored, second = run(other, tmp_path / "b1", config)  # the champion serves the garments: not re-scored
    assert rescored["version"] is None and rescored["reevaluated"] is False
    assert champion.INCOMPARABLE in rescored["reason"], rescored
    assert second["promoted"] and not second["serves_champion"] and second["compared_with"] is None, second
    assert any(r.startswith(champion.INCOMPARABLE) for r in second["reasons"]), second
    assert second["alias"] == champion.champion_alias(digest_b) != champion.champion_alias(digest_a)
    assert str(stack_env.get_model_version_by_alias(name, second["alias"]).version) == second["version"]
    assert str(stack_env.get_model_version_by_alias(name, "champion").version) == first["version"]  # untouched
    tags = stack_env.get_model_version(name, second["version"]).tags
    assert tags[champion.TAG_VOCAB] == digest_b and champion.INCOMPARABLE in tags[TAG_DECISION]
    assert stack_env.get_model_version(name, first["version"]).tags[champion.TAG_VOCAB] == digest_a  # read back

    # each catalogue's next model is compared with its own champion only
    rescored, third = run(another_model(garments, tmp_path / "a2-model", 0.99, 0.99), tmp_path / "a2", config)
    assert rescored["version"] == first["version"] and rescored["reason"] == "already scored on this data"
    assert third["promoted"] and third["compared_with"] == first["version"] and third["serves_champion"], third
    assert not any(champion.INCOMPARABLE in r for r in third["reasons"]), third
    rescored, fourth = run(another_model(other, tmp_path / "b2-model", 0.0, 0.0), tmp_path / "b2", config)
    assert rescored["version"] == second["version"]
    assert not fourth["promoted"] and fourth["compared_with"] == second["version"], fourth
    assert stack_env.get_model_version(name, fourth["version"]).tags[promote.TAG_COMPARED_WITH] == second["version"]
    assert {a: str(stack_env.get_model_version_by_alias(name, a).version) for a in
            ("champion", champion.champion_alias(digest_a), champion.champion_alias(digest_b))} == {
        "champion": third["version"], champion.champion_alias(digest_a): third["version"],
        champion.champion_alias(digest_b): second["version"]}
