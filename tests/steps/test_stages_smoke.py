"""All five model-core stages on a tiny synthetic dataset on the CPU, through the public CLI (split, pretrain
and prototypes come from the session's ``trained_chain``)."""

from __future__ import annotations

import json

import pytest
import torch

from amnet import config as cfgmod
from amnet.cli import main
from amnet.config import ModelConfig
from amnet.data.split import load_split_vocab
from amnet.model_store import build_model, load_model, load_payload, save_model
from amnet.models.memory import make_indicator

MODEL = ["--set", "model.image_size=32", "--set", "model.width=8", "--set", "model.feature_dim=32"]


@pytest.fixture(scope="module")
def run_dir(trained_chain):
    """The session's tiny chain (tests/conftest.py ``trained_chain``): split/, attr/ and protos/ at the sizes
    these tests were written for; each test trains, featurizes and evaluates into its own folders next to them."""
    return trained_chain.root


def train(run_dir, variant: str, out: str, epochs: int = 1) -> int:
    return main(["step", "train", "--split", str(run_dir / "split"), "--attr-model", str(run_dir / "attr"),
                 "--prototypes", str(run_dir / "protos"), "--variant", variant, "--out", str(run_dir / out),
                 "--quiet", "--set", f"epochs={epochs}", "--set", "steps_per_epoch=2", "--set", "batch_size=8"])


@pytest.mark.parametrize("variant", ["amnet", "no_memory", "no_ranking"])
def test_train_featurize_evaluate(run_dir, variant):
    assert train(run_dir, variant, f"model-{variant}") == 0
    model, feats, ev = (str(run_dir / f"{p}-{variant}") for p in ("model", "feats", "eval"))
    assert main(["step", "featurize", "--split", str(run_dir / "split"), "--model", model, "--out", feats,
                 "--quiet"]) == 0
    assert main(["step", "evaluate", "--split", str(run_dir / "split"), "--model", model, "--features", feats,
                 "--variant", variant, "--out", ev, "--quiet"]) == 0
    metrics = json.loads((run_dir / f"eval-{variant}" / "metrics.json").read_text())["metrics"]
    for key in ("top1", "top5", "top10", "top20", "top50", "ndcg20", "two_top20", "two_ndcg20"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["top1"] <= metrics["top5"] <= metrics["top20"] <= metrics["top50"]
    assert (run_dir / f"eval-{variant}" / "per_query.parquet").exists()
    index = json.loads((run_dir / f"eval-{variant}" / "metrics.json").read_text())["timing"]["index"]
    assert index == {"requested": "auto", "kind": "exact", "recall_vs_exact": None, "recall_k": 20, "stored": False}


def test_evaluate_records_an_approximate_index_and_its_recall(run_dir):
    """``index=pq`` (what ``auto`` picks from 50k gallery images): metrics come from that index, and
    its recall@20 against exact search over the same queries is recorded next to them."""
    if not (run_dir / "feats-amnet").exists():
        test_train_featurize_evaluate(run_dir, "amnet")
    ev = run_dir / "eval-pq"
    assert main(["step", "evaluate", "--split", str(run_dir / "split"), "--model", str(run_dir / "model-amnet"),
                 "--features", str(run_dir / "feats-amnet"), "--variant", "amnet", "--out", str(ev), "--quiet",
                 "--set", "index=pq"]) == 0
    payload = json.loads((ev / "metrics.json").read_text())
    index = payload["timing"]["index"]
    assert index["requested"] == "pq" and index["kind"] == "pq" and 0.5 <= index["recall_vs_exact"] <= 1.0
    assert payload["config"]["index"] == "pq"
    exact = json.loads((run_dir / "eval-amnet" / "metrics.json").read_text())["metrics"]
    # a query's top-20 hit can only change if its top-20 set changed, i.e. it lost >= 1/20 of its recall
    assert abs(payload["metrics"]["top20"] - exact["top20"]) <= 20 * (1 - index["recall_vs_exact"]) + 1e-9


def test_attribute_based_baseline(run_dir):
    split, attr = str(run_dir / "split"), str(run_dir / "attr")
    assert main(["step", "featurize", "--split", split, "--model", attr, "--out", str(run_dir / "feats-attr"),
                 "--quiet"]) == 0
    assert main(["step", "evaluate", "--split", split, "--model", attr, "--features", str(run_dir / "feats-attr"),
                 "--variant", "attribute_based", "--out", str(run_dir / "eval-attr"), "--quiet"]) == 0
    metrics = json.loads((run_dir / "eval-attr" / "metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["top20"] <= 1.0


def test_checkpoint_round_trip_gives_identical_outputs(run_dir, tmp_path):
    """A model before ``save_model`` and the model ``load_model`` rebuilds from the file: the same tensors,
    the same outputs (gallery representation and manipulated query)."""
    vocab = load_split_vocab(str(run_dir / "split"))
    cfg = ModelConfig(image_size=32, width=8, feature_dim=16)
    torch.manual_seed(0)
    model = build_model("amnet", "amnet", cfg, vocab, torch.randn(vocab.total_values, cfg.feature_dim))
    model.train()
    with torch.no_grad():  # state a fresh model lacks: batch-norm statistics, a manipulator off its identity init
        for _ in range(3):
            model.represent(torch.rand(8, 3, 32, 32))
        for p in model.manipulator.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.eval()
    x = torch.rand(4, 3, 32, 32)
    h = make_indicator([[(0, 1)], [(1, 0)], [(0, 0), (1, 1)], []], vocab.offsets, vocab.total_values)
    with torch.no_grad():
        before_r, before_q = model.represent(x), model.query_vector(x, h)

    save_model(str(tmp_path / "m"), "amnet", "amnet", model, cfgmod.to_dict(cfg), vocab.to_json())
    loaded = load_model(str(tmp_path / "m"))
    assert (loaded.kind, loaded.variant, loaded.model_config, loaded.vocab) == ("amnet", "amnet", cfg, vocab)
    assert not loaded.model.training
    saved, restored = model.state_dict(), loaded.model.state_dict()
    assert list(restored) == list(saved)
    for name, tensor in saved.items():
        assert restored[name].dtype == tensor.dtype and torch.equal(restored[name], tensor), name
    assert any(t.abs().sum() > 0 for k, t in saved.items() if k.endswith("running_mean"))  # BN stats travelled
    with torch.no_grad():
        assert torch.equal(loaded.represent(x), before_r)
        assert torch.equal(loaded.model.query_vector(x, h), before_q)
    assert not torch.equal(before_q[0], before_r[0])  # the indicator really manipulates


def test_resume_continues_from_saved_epoch(run_dir):
    assert train(run_dir, "amnet", "model-resume", epochs=1) == 0
    state = run_dir / "model-resume" / "checkpoints" / "train_state.pt"
    first = load_payload(str(state))
    assert first["epoch"] == 1 and first["optimizer"]["state"]  # momentum buffers saved
    assert train(run_dir, "amnet", "model-resume", epochs=2) == 0  # same folder: resumes at epoch 2
    second = load_payload(str(state))
    assert second["epoch"] == 2
    assert len(second["history"]) == 2 and second["history"][0] == first["history"][0]


def test_featurize_skips_shards_already_written(run_dir):
    model, feats = str(run_dir / "model-amnet"), str(run_dir / "feats-amnet")
    if not (run_dir / "model-amnet").exists():
        assert train(run_dir, "amnet", "model-amnet") == 0
    args = ["step", "featurize", "--split", str(run_dir / "split"), "--model", model, "--out", feats, "--quiet"]
    assert main(args) == 0
    assert main(args) == 0
    meta = json.loads((run_dir / "feats-amnet" / "features.json").read_text())
    assert meta["skipped_shards"] == meta["shards"] == 4 and meta["count"] == 200


def test_corrupted_checkpoint_is_a_clear_error(run_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.pt").write_bytes(b"not a checkpoint")
    code = main(["step", "featurize", "--split", str(run_dir / "split"), "--model", str(bad),
                 "--out", str(tmp_path / "f"), "--quiet"])
    assert code == 3
    assert "not a readable amnet checkpoint" in capsys.readouterr().err


def test_pretrain_accepts_an_initial_weights_file(run_dir, tmp_path):
    from amnet.models.backbones import build_backbone

    cfg = ModelConfig(image_size=32, width=8, feature_dim=32)
    weights = tmp_path / "init.pt"
    torch.save(build_backbone(cfg).state_dict(), weights)
    assert main(["step", "pretrain", "--split", str(run_dir / "split"), "--out", str(tmp_path / "attr"), "--quiet",
                 *MODEL, "--set", "epochs=1", "--weights", str(weights)]) == 0
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["step", "pretrain", "--split", str(run_dir / "split"), "--out", str(tmp_path / "attr2"),
                 "--quiet", *MODEL, "--set", "epochs=1", "--set", f"model.weights={bad}"]) == 3


@pytest.mark.parametrize(("stage", "key"), [("featurize", "decoder=pil"), ("train", "lam=0.5"),
                                             ("evaluate", "index=auto"), ("pretrain", "model.backbone=small")])
def test_stage_help_lists_its_config_keys_with_defaults(stage, key, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["step", stage, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "config keys (--set KEY=VALUE or --config FILE), with defaults:" in out and key in out
