"""Strategies for what users feed amnet (run files, ``--set`` items, manifests, search requests) and the
check every rejection must pass: it names the offending input."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

EXAMPLES = 1000  # generated inputs per parser

# Strings users get wrong: numbers and booleans as text, YAML that is not what it looks like, unicode,
# control characters, paths, and one huge string.
TRICKY_WORDS = ["", " ", "0", "1", "-1", "1.5", "1e-3", "1e999", "-0", "nan", ".nan", ".inf", "inf", "true",
                "True", "yes", "on", "off", "no", "flase", "null", "None", "~", "[]", "{}", "[1, 2]", "{a: 1}",
                "0x1F", "0b101", "0777", "1_000", "12:30:00", "2001-13-01", "2001-02-29", "!!int abc",
                "!!bool x", "!!float x", "!!timestamp x", "!!binary ###", "!!python/object:os.system x",
                "&a [*a]", "*undefined", "---", "...", "- a", "a: b: c", "'", '"', "#", "%YAML 1.1", "\t",
                "\x00", "\ufeff", "é", "日本語", "\U0001F600", "../../etc/passwd", "/abs/path", "s3://b/k",
                "amnet", "paper", "alexnet", "best", "fp32", "9" * 400, "0x" + "f" * 300, "[" * 300]
# Larger strings (a megabyte) are explicit examples: PyYAML reads them slowly, hypothesis shrinks them slowly.
HUGE = "é" * 3_000


def text(max_size: int = 30) -> st.SearchStrategy[str]:
    """Any unicode text (surrogates and control characters included), a tricky word, or the huge string."""
    return st.one_of(st.text(max_size=max_size), st.sampled_from(TRICKY_WORDS), st.just(HUGE))


def mostly(usual: st.SearchStrategy, other: st.SearchStrategy, odds: int = 4) -> st.SearchStrategy:
    """``usual`` ``odds`` times out of ``odds + 1``, else ``other`` (``one_of`` draws its branches evenly)."""
    return st.integers(0, odds).flatmap(lambda i: usual if i < odds else other)


def scalars() -> st.SearchStrategy[Any]:
    """What a YAML or JSON scalar can be: None, bools, ints (huge too), floats (NaN, infinities), text."""
    return st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63),
                     st.floats(), text())


def nested(keys: st.SearchStrategy[Any], leaves: st.SearchStrategy[Any] | None = None,
           max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Leaves, lists and mappings of them (keys drawn from ``keys``), nested."""
    return st.recursive(scalars() if leaves is None else leaves,
                        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                st.dictionaries(keys, inner, max_size=4)),
                        max_leaves=max_leaves)


def forms(value: Any) -> set[str]:
    """How a message may show ``value``: its str and repr, cut to their first 20 characters (a long
    value may be shortened); a huge integer by its first digits."""
    out = set()
    for show in (str, repr):
        try:
            shown = show(value)
        except ValueError:  # an integer too long to print
            continue
        out.add(shown[:20])
    return {f for f in out if f}


def leaves_and_keys(value: Any, seen: set[int] | None = None) -> list[Any]:
    """Every key and scalar of a nested value (the things an error may name); a YAML alias may make a
    list contain itself (``&a [*a]``), so each container is visited once."""
    seen = set() if seen is None else seen
    if isinstance(value, (dict, list, tuple)):
        if id(value) in seen:
            return []
        seen.add(id(value))
    out: list[Any] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(k)
            out.extend(leaves_and_keys(v, seen))
    elif isinstance(value, (list, tuple)):
        for v in value:
            out.extend(leaves_and_keys(v, seen))
    else:
        out.append(value)
    return out


def assert_names(message: str, *candidates: Any) -> None:
    """``message`` shows at least one of ``candidates`` (the offending keys, values or items)."""
    shown = {f for c in candidates for f in forms(c)}
    assert any(f in message for f in shown), f"the message names none of the input: {message[:300]!r}"
