"""Two registry gates at once, against the real MLflow server: no ordering of their steps loses the better
model (``amnet.ops.registry.promote``: compare-and-set on the champion alias), and both decisions are recorded.

Each case registers versions directly (no training: the scores are the versions' tags, on one evaluation
fingerprint), then runs two :func:`gate_version` calls in threads. ``promote.pause`` is replaced by a turnstile
that lets the two gates run one *segment* at a time (what a gate does between two pauses: compare and record,
re-read, set, settle) in the case's order; a gate that finishes early gives up its remaining turns.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass

import pytest

from amnet.ops.registry import champion, promote
from amnet.ops.registry.gate import GateRule, compare, gate_version, record
from amnet.ops.tracking.runs import TAG_DECISION
from tests.ops.registry.models import another_model, scored

RULE = GateRule()
DIGEST = "0123456789abcdef"  # one catalogue vocabulary for every version here
FINGERPRINT = "race-eval-data"
CHAMPION_SCORES = {"top20": 0.30, "ndcg20": 0.20}
BETTER = {"top20": 0.60, "ndcg20": 0.50}
WORSE = {"top20": 0.50, "ndcg20": 0.40}  # worse than BETTER, better than the champion

# Segments: 0 compare + record, 1 re-read, 2 set, 3 settle + record. AABBAABB: both re-read the same champion,
# then A sets and settles before B sets; AABBBBAA: A sets after B has finished, from a stale re-read.
ORDERS = ["AAAABBBB", "BBBBAAAA", "ABABABAB", "BABABABA", "AABBAABB", "BBAABBAA", "AAABBBBA", "ABBBBAAA",
          "AABBBBAA", "ABBAABBA"]
CASES = [(order, better, i % 3 != 2) for i, order in enumerate(ORDERS) for better in "AB"]


class Turnstile:
    """Lets two gate threads (named "A" and "B") run one segment at a time in ``order``; the order used up,
    they run freely."""

    def __init__(self, order: str) -> None:
        self.order = list(order)
        self.cond = threading.Condition()
        self.done: set[str] = set()
        self.trace: list[tuple[str, str]] = []

    def _wait_turn(self, me: str) -> None:
        with self.cond:
            while True:
                while self.order and self.order[0] in self.done:
                    self.order.pop(0)
                if not self.order or self.order[0] == me:
                    return
                if not self.cond.wait(timeout=60):
                    raise TimeoutError(f"{me} waited a minute for its turn: {self.order}, {self.trace}")

    def _end_segment(self, me: str) -> None:
        with self.cond:
            if self.order and self.order[0] == me:
                self.order.pop(0)
            self.cond.notify_all()

    def start(self, me: str) -> None:
        self._wait_turn(me)

    def pause(self, point: str, version: str) -> None:
        me = threading.current_thread().name
        self.trace.append((me, point))
        self._end_segment(me)
        self._wait_turn(me)

    def finish(self, me: str) -> None:
        self._end_segment(me)
        with self.cond:
            self.done.add(me)
            self.cond.notify_all()


def scores_of(version) -> dict[str, float]:
    assert version.tags[champion.TAG_FINGERPRINT] == FINGERPRINT
    return {m: float(version.tags[f"amnet.{m}"]) for m in RULE.metrics}


def register(client, name: str, scores: dict[str, float]) -> str:
    tags = {champion.TAG_FINGERPRINT: FINGERPRINT, champion.TAG_VOCAB: DIGEST,
            **{f"amnet.{m}": f"{v:.6f}" for m, v in scores.items()}}
    return str(client.create_model_version(name, f"s3://test-bucket/race/{name}/model", tags=tags).version)


@dataclass
class Race:
    name: str
    versions: dict[str, str]  # "A" / "B" / "champion" -> version
    decisions: dict[str, object]
    errors: list[BaseException]
    trace: list[tuple[str, str]]  # (gate, pause point) in the order they were reached


def race(tracking_uri: str, order: str, better: str, with_champion: bool, monkeypatch, out) -> Race:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    name = f"amnet-race-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    versions = {}
    if with_champion:
        versions["champion"] = register(client, name, CHAMPION_SCORES)
        for alias in (champion.champion_alias(DIGEST), champion.CHAMPION):
            client.set_registered_model_alias(name, alias, versions["champion"])
    for label in "AB":
        versions[label] = register(client, name, BETTER if label == better else WORSE)

    def gate(label: str) -> object:
        own = MlflowClient(tracking_uri=tracking_uri)  # one client per thread, as two pipeline runs have
        scores = BETTER if label == better else WORSE
        decision = gate_version(own, name, versions[label], scores, DIGEST, RULE, scores_of)
        record(own, decision, str(out / label))  # as register_and_gate does
        return decision

    decisions, errors, trace = in_turns(order, gate, monkeypatch)
    return Race(name, versions, decisions, errors, trace)


def in_turns(order: str, body, monkeypatch) -> tuple[dict[str, object], list[BaseException], list]:
    """``body("A")`` and ``body("B")`` in two threads, segment by segment in ``order``: (results, errors, trace)."""
    turnstile = Turnstile(order)
    monkeypatch.setattr(promote, "pause", turnstile.pause)
    results: dict[str, object] = {}
    errors: list[BaseException] = []

    def thread(label: str) -> None:
        try:
            turnstile.start(label)
            results[label] = body(label)
        except BaseException as exc:  # noqa: BLE001 (the test reports it)
            errors.append(exc)
        finally:
            turnstile.finish(label)

    threads = [threading.Thread(target=thread, args=(label,), name=label) for label in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results, errors, turnstile.trace


def test_ranking_a_pair_is_antisymmetric():
    def judge(a, b):
        return compare(a, b, RULE)

    pairs = [(("3", BETTER), ("4", WORSE)), (("3", BETTER), ("4", BETTER)),
             (("3", {"top20": 0.6, "ndcg20": 0.3}), ("4", {"top20": 0.5, "ndcg20": 0.4}))]
    for a, b in pairs:
        assert promote.ranks_higher(a, b, judge) != promote.ranks_higher(b, a, judge)
    assert promote.ranks_higher(("3", BETTER), ("4", WORSE), judge)
    assert promote.ranks_higher(("4", BETTER), ("3", BETTER), judge)  # a tie: the newer version


@pytest.mark.parametrize(("order", "better", "with_champion"), CASES)
def test_two_gates_at_once_keep_the_better_model(order, better, with_champion, stack_env, mlflow_server,
                                                 monkeypatch, tmp_path):
    run = race(mlflow_server.tracking_uri, order, better, with_champion, monkeypatch, tmp_path)
    assert not run.errors, run.errors
    loser = "B" if better == "A" else "A"
    win, lose = run.versions[better], run.versions[loser]
    for alias in (champion.champion_alias(DIGEST), champion.CHAMPION):  # 0 lost updates
        assert str(stack_env.get_model_version_by_alias(run.name, alias).version) == win, (alias, order, run)

    decisions = run.decisions
    assert set(decisions) == {"A", "B"}
    assert decisions[better].promoted and decisions[better].serves_champion, decisions[better]
    # a loser is recorded as promoted (and serving champion) only when the better model was then compared with it
    if decisions[loser].promoted:
        assert decisions[better].compared_with == lose, decisions
    else:
        assert not decisions[loser].serves_champion, decisions
    base = run.versions.get("champion")
    for label in "AB":
        decision = decisions[label]
        assert decision.compared_with in {base, run.versions["A"], run.versions["B"]} - {decision.version}
        tags = stack_env.get_model_version(run.name, decision.version).tags
        assert tags[TAG_DECISION] == decision.summary()
        assert json.loads((tmp_path / label / "decision.json").read_text())["compared_with"] == decision.compared_with
        recorded = tags.get(promote.TAG_COMPARED_WITH, promote.NO_CHAMPION)
        assert recorded == (decision.compared_with or promote.NO_CHAMPION), (tags, decision)


@pytest.fixture(scope="module")
def evaluated(trained_chain, tmp_path_factory) -> dict[str, str]:
    return scored(trained_chain, tmp_path_factory.mktemp("race-evaluated"))


@pytest.mark.slow
@pytest.mark.parametrize("better", "AB")
def test_two_register_stages_at_once_keep_the_better_model(better, evaluated, stack_env, monkeypatch, tmp_path):
    """The whole register stage twice at once (two new model files of one catalogue), both reading the champion
    before either sets the alias: the better one ends as champion and both decisions are recorded."""
    from amnet.steps import register

    name = f"amnet-race-{uuid.uuid4().hex[:8]}"
    config = {"model_name": name}
    base = another_model(evaluated, tmp_path / "champion", 0.30, 0.20)
    register.run_step([base["model"]], [base["evaluation"]], [base["features"]], base["split"],
                      str(tmp_path / "d0"), config)
    models = {label: another_model(evaluated, tmp_path / f"model-{label}", *(
        (BETTER if label == better else WORSE)[m] for m in ("top20", "ndcg20"))) for label in "AB"}

    def stage(label: str) -> dict:
        m = models[label]
        return register.run_step([m["model"]], [m["evaluation"]], [m["features"]], m["split"],
                                 str(tmp_path / f"d{label}"), config)

    results, errors, trace = in_turns("AABBAABB", stage, monkeypatch)
    assert not errors, errors
    assert [p for _, p in trace] == ["compared", "re-read", "compared", "re-read", "set", "set"], trace
    decisions = {label: json.loads((tmp_path / f"d{label}" / "decision.json").read_text()) for label in "AB"}
    win = decisions[better]["version"]
    assert str(stack_env.get_model_version_by_alias(name, "champion").version) == win
    assert decisions[better]["promoted"] and decisions[better]["compared_with"] == "1"
    loser = decisions["B" if better == "A" else "A"]
    assert not loser["promoted"] and any(f"v{win}, promoted concurrently" in r for r in loser["reasons"]), loser
    for label in "AB":
        assert results[label]["compared_with"] == 1.0
        tags = stack_env.get_model_version(name, decisions[label]["version"]).tags
        assert tags[TAG_DECISION].startswith(f"{name} v{decisions[label]['version']}: ")
