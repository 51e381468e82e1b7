"""The champion's re-scoring as its own task (``amnet.ops.registry.champion``, ``amnet step reevaluate``): which
scores the registry gate may use, and the file the task writes without a registry."""

from __future__ import annotations

import json

from amnet.cli import main
from amnet.ops.registry.champion import read, usable_scores

RESCORED = {"model_name": "amnet", "version": "3", "fingerprint": "abc", "scores": {"top20": 0.5, "ndcg20": 0.4},
            "reevaluated": True}


def test_the_gate_uses_rescored_scores_only_for_the_same_champion_data_and_metrics():
    assert usable_scores(RESCORED, "3", "abc", ("top20", "ndcg20")) == {"top20": 0.5, "ndcg20": 0.4}
    assert usable_scores(RESCORED, 3, "abc", ("top20",)) == {"top20": 0.5}  # versions compare as text
    assert usable_scores(RESCORED, "4", "abc", ("top20",)) is None  # the champion moved meanwhile
    assert usable_scores(RESCORED, "3", "other-split", ("top20",)) is None  # scored on other data
    assert usable_scores(RESCORED, "3", "abc", ("top20", "two_top20")) is None  # a gate metric missing
    assert usable_scores(None, "3", "abc", ("top20",)) is None


def test_reevaluate_without_tracking_writes_that_there_is_no_champion(trained_chain, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "champion"
    assert main(["step", "reevaluate", "--split", str(trained_chain.split), "--out", str(out)]) == 0
    written = json.loads((out / "champion.json").read_text())
    assert written["version"] is None and written["reason"] == "tracking off: no registry"
    assert read(str(out)) == written and read(str(tmp_path / "nothing")) is None and read("") is None
    assert "champion of 'amnet': none" in capsys.readouterr().err  # a diagnostic: logged to stderr


def test_a_vocabulary_digest_covers_names_values_and_their_order(tmp_path):
    import pandas as pd

    from amnet.data.schema import Attribute, Vocabulary, write_dataset
    from amnet.ops.registry.champion import champion_alias, split_vocabulary, vocabulary_digest

    colour, shape = Attribute("color", ("red", "blue")), Attribute("shape", ("round", "square"))
    digest = vocabulary_digest(Vocabulary((colour, shape)))
    assert len(digest) == 16 and digest == vocabulary_digest(Vocabulary((colour, shape)))
    assert digest != vocabulary_digest(Vocabulary((shape, colour)))  # label columns follow the order
    assert digest != vocabulary_digest(Vocabulary((Attribute("color", ("blue", "red")), shape)))
    assert digest != vocabulary_digest(Vocabulary((colour, Attribute("shape", ("round", "oval")))))
    write_dataset(str(tmp_path), pd.DataFrame({"image_id": [], "image": []}), Vocabulary((colour, shape)))
    assert split_vocabulary(str(tmp_path)) == digest  # read from attributes.json, formatting aside
    assert champion_alias(digest) == f"champion-{digest[:8]}"
