"""Moving a champion alias without losing a concurrent promotion (compare-and-set on MLflow aliases).

Two pipeline runs (a scheduled retraining and a manual run) can reach the registry gate together. A
plain read-compare-set would let the later, weaker model overwrite a better champion that the other
run set in between. :func:`gate_alias` therefore:

1. reads the vocabulary's champion and compares the challenger with it (the gate rule);
2. records the comparison on the challenger's version (tag ``amnet.gate.compared_with``: the version it
   was compared against, ``none`` for no champion; ``amnet.gate.at``: when, in ms) and, when it is to be
   promoted, the intent (tag ``amnet.gate.intent``: that same version; ``-`` once withdrawn);
3. re-reads the champion right before setting the alias; when it moved, compares again with the new
   one (at most ``rounds`` times);
4. sets the alias, then *settles*: re-reads it and looks for rivals, the versions whose recorded
   intent names the same champion (recent ones: ``RIVAL_WINDOW_S``). Among itself, the holder of the
   alias and the rivals, the one that :func:`ranks_higher` wins, and the alias is set to it (a holder
   that was compared with this version, after it, simply stays).

Every writer records its intent before its last re-read, and settles after its set, so of two
writers that both set the alias after comparing with the same champion, each sees the other when it
settles; both rank the pair the same way, so every ordering of their steps ends with the better one
as champion.

What remains: MLflow has no atomic compare-and-set on aliases, so the guarantee rests on the two
writers' records. It holds for two concurrent writers that score on the same evaluation data. With
other data (each run re-scores the other's model on its own split) the two may rank the pair
differently, and the last to settle wins; with three or more writers the pairwise ranking is applied
in version order and may not be transitive. A writer killed between setting the alias and settling
leaves its set standing until the next gate. A hand-made alias move within ``RIVAL_WINDOW_S`` of a
gate that raced from the same champion may be overridden by that gate's settling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

TAG_COMPARED_WITH = "amnet.gate.compared_with"  # on a version: the champion it was last compared against
TAG_INTENT = "amnet.gate.intent"  # on a version about to be promoted: that champion ("-": withdrawn)
TAG_AT = "amnet.gate.at"  # on a version: when its last comparison was recorded (ms since the epoch)
NO_CHAMPION = "none"
WITHDRAWN = "-"
ROUNDS = 5  # comparisons again after the champion moved, and settling rounds
RIVAL_WINDOW_S = 900  # how recent a rival's recorded intent must be to count

Judge = Callable[[dict[str, float], "dict[str, float] | None"], tuple[bool, list[str]]]
ScoresOf = Callable[[object], dict[str, float]]


def pause(point: str, version: str) -> None:
    """Between the steps of :func:`gate_alias` (``compared``, ``re-read``, ``set``); does nothing.

    Tests replace it to force an interleaving of two concurrent gates."""


@dataclass
class Outcome:
    """What the gate decided for one version, against which champion, and why."""

    promoted: bool
    compared_with: str | None
    reasons: list[str] = field(default_factory=list)
    champion: dict[str, float] = field(default_factory=dict)
    holder: str | None = None  # the version holding the alias when the gate finished
    moved: bool = False  # whether this gate set the alias


@dataclass(frozen=True)
class Contest:
    """Where one gate runs: the registered model, the alias it moves, and the challenger's vocabulary
    (the value of tag ``vocab_tag`` that its rivals share)."""

    name: str
    alias: str
    vocab: str
    vocab_tag: str


def ranks_higher(a: tuple[str, dict[str, float]], b: tuple[str, dict[str, float]], judge: Judge) -> bool:
    """Whether version ``a`` beats ``b`` ((version, scores) on the same data): the one that passes the gate
    against the other; when both or neither pass, the higher mean of the gate metrics, then the newer
    version. Antisymmetric, so two writers settle a pair the same way."""
    a_passes, b_passes = judge(a[1], b[1])[0], judge(b[1], a[1])[0]
    if a_passes != b_passes:
        return a_passes
    mean_a, mean_b = (sum(s.values()) / max(len(s), 1) for s in (a[1], b[1]))
    if mean_a != mean_b:
        return mean_a > mean_b
    return int(a[0]) > int(b[0])


def _version(v) -> str | None:
    return None if v is None else str(v.version)


def _label(version: str | None) -> str:
    return f"v{version}" if version else "no champion"


def _record(client, contest: Contest, version: str, base: str | None, intent: bool) -> None:
    """The comparison on the version (time first, intent last: a version found by its intent has both)."""
    tag = client.set_model_version_tag
    tag(contest.name, version, TAG_AT, str(int(time.time() * 1000)))
    tag(contest.name, version, TAG_COMPARED_WITH, base or NO_CHAMPION)
    tag(contest.name, version, TAG_INTENT, (base or NO_CHAMPION) if intent else WITHDRAWN)


def _rivals(client, contest: Contest, version: str, base: str | None) -> list:
    """Other versions of this vocabulary whose recent recorded intent names the same champion ``base``."""
    found = client.search_model_versions(
        f"name = '{contest.name}' and tag.`{TAG_INTENT}` = '{base or NO_CHAMPION}'")
    oldest = time.time() * 1000 - RIVAL_WINDOW_S * 1000
    return [v for v in found if str(v.version) != version and v.tags.get(contest.vocab_tag) == contest.vocab
            and float(v.tags.get(TAG_AT) or 0) >= oldest]


def gate_alias(client, contest: Contest, version: str, challenger: dict[str, float], judge: Judge,
               find: Callable[[], object | None], scores_of: ScoresOf, rounds: int = ROUNDS) -> Outcome:
    """Compare ``version`` (scores ``challenger``) with the champion ``find()`` returns and, when ``judge``
    promotes it, move ``contest.alias`` to it with the compare-and-set of the module docstring.

    ``scores_of(v)``: a registered version's gate metrics on this run's data."""
    notes: list[str] = []
    last: Outcome | None = None
    for _ in range(rounds):
        base = find()
        base_v = _version(base)
        if base_v == version:  # set meanwhile by a concurrent gate that ranked it higher
            return Outcome(True, last.compared_with if last else None, [*notes, "already champion"],
                           last.champion if last else {}, version)
        champion_scores = scores_of(base) if base is not None else None
        promote, reasons = judge(challenger, champion_scores)
        _record(client, contest, version, base_v, promote)
        last = Outcome(promote, base_v, notes + reasons, champion_scores or {}, base_v)
        if not promote:
            return last
        pause("compared", version)
        now = _version(find())
        if now != base_v:
            notes.append(f"champion moved from {_label(base_v)} to {_label(now)} while gating: compared again")
            continue
        pause("re-read", version)
        client.set_registered_model_alias(contest.name, contest.alias, version)
        last.moved = True
        pause("set", version)
        return _settle(client, contest, version, base_v, challenger, judge, scores_of, rounds, last)
    if last is not None and last.promoted:
        client.set_model_version_tag(contest.name, version, TAG_INTENT, WITHDRAWN)
    notes.append(f"the champion kept moving: gave up after {rounds} comparisons; the champion stays")
    return Outcome(False, last.compared_with if last else None, notes, last.champion if last else {},
                   last.holder if last else None)


def _settle(client, contest: Contest, version: str, base: str | None, challenger: dict[str, float],
            judge: Judge, scores_of: ScoresOf, rounds: int, outcome: Outcome) -> Outcome:
    """After setting the alias to ``version``: make the best of this version, the alias's holder and the
    rivals hold it (:func:`ranks_higher`); the outcome says whether this version won."""
    from amnet.ops.registry.champion import alias_version

    alias = contest.alias
    for _ in range(rounds):
        holder = alias_version(client, contest.name, alias)
        holder_v = _version(holder)
        contenders = {str(v.version): v for v in _rivals(client, contest, version, base)}
        if holder is not None and holder_v != version and holder_v not in contenders:
            if holder.tags.get(TAG_COMPARED_WITH) == version:  # a later gate compared it with this one
                outcome.reasons.append(f"then v{holder_v}, compared with this version, took {alias}")
                outcome.holder = holder_v
                return outcome
            contenders[holder_v] = holder
        best, best_scores = version, challenger
        for v in sorted(contenders, key=int):
            scores = scores_of(contenders[v])
            if ranks_higher((v, scores), (best, best_scores), judge):
                best, best_scores = v, scores
        outcome.holder = best
        if holder_v == best:
            break
        log.info("%s: %s is %s, setting it to v%s (concurrent promotions)", contest.name, alias,
                 _label(holder_v), best)
        client.set_registered_model_alias(contest.name, alias, best)
    if outcome.holder != version:
        outcome.promoted = False
        outcome.reasons.append(f"v{outcome.holder}, promoted concurrently over {_label(base)}, ranks higher "
                               f"and holds {alias}")
    return outcome


def follow(client, name: str, alias: str, source: str, owns: Callable[[object], bool], rounds: int = ROUNDS) -> bool:
    """Point ``alias`` at the holder of ``source`` when ``alias`` is free or ``owns(its version)``; True when
    it does so at the end. Re-reads ``source`` after each set, so a concurrent follower that copied an
    older holder is corrected by whichever of the two reads last."""
    from amnet.ops.registry.champion import alias_version

    for _ in range(rounds):
        target = alias_version(client, name, source)
        if target is None:
            return False
        current = alias_version(client, name, alias)
        if current is not None and _version(current) != _version(target) and not owns(current):
            return False
        if _version(current) != _version(target):
            client.set_registered_model_alias(name, alias, str(target.version))
        if _version(alias_version(client, name, source)) == _version(target):
            return True
    return False
