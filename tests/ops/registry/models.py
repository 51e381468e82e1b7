"""Registry test inputs: a chain's model featurized and evaluated, a copy with other bytes and chosen scores
(another registry version without training), and a catalogue with fewer attributes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from amnet.data.schema import Vocabulary, load_vocabulary, write_dataset
from amnet.model_store import load_payload, save_payload
from amnet.steps import evaluate, featurize
from tests.conftest import TrainedChain

KEPT = ("category", "color", "sleeve")  # a second catalogue: three of the garments' six attributes


def fewer_attributes(dataset: Path, out: Path) -> str:
    """``dataset`` with only the attributes in ``KEPT``: the same images, another ``attributes.json``."""
    out.mkdir(parents=True, exist_ok=True)
    vocab = load_vocabulary(str(dataset))
    manifest = pd.read_parquet(dataset / "manifest.parquet")
    shutil.copytree(dataset / "images", out / "images")  # a link would point outside the dataset: refused
    write_dataset(str(out), manifest[["image_id", "image", *KEPT]],
                  Vocabulary(tuple(a for a in vocab.attributes if a.name in KEPT)))
    return str(out)


def scored(chain: TrainedChain, out: Path) -> dict[str, str]:
    """The chain's model featurized and evaluated into ``out`` (tracking off): register's inputs."""
    feats, ev = out / "feats", out / "eval"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        featurize.run_step(str(chain.split), str(chain.model), str(feats), progress=False)
        evaluate.run_step(str(chain.split), str(chain.model), str(feats), str(ev), progress=False)
    return {"split": str(chain.split), "model": str(chain.model), "features": str(feats), "evaluation": str(ev)}


def another_model(chain: dict[str, str], root: Path, top20: float, ndcg20: float) -> dict[str, str]:
    """A copy of ``chain``'s model under ``root`` with other bytes (a new registry version; ``root`` names it)
    and an evaluation with the given gate metrics."""
    model, ev = root / "model", root / "eval"
    shutil.copytree(chain["model"], model)
    payload = load_payload(str(model / "model.pt"))
    payload["extra"] = {**payload.get("extra", {}), "copy": root.name}
    save_payload(str(model / "model.pt"), payload)
    shutil.copytree(chain["evaluation"], ev)
    metrics = json.loads((ev / "metrics.json").read_text())
    metrics["metrics"].update(top20=top20, ndcg20=ndcg20)
    (ev / "metrics.json").write_text(json.dumps(metrics))
    return {**chain, "model": str(model), "evaluation": str(ev)}
