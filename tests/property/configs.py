"""Strategies for stage configs and run files: the real keys (so values reach the typed parsing) mixed
with random ones, and the check that an accepted config holds values of its annotated types."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, get_args, get_origin

import yaml
from hypothesis import strategies as st

from amnet import config as cfgmod
from tests.property.inputs import leaves_and_keys, mostly, nested, scalars, text

STAGES = list(cfgmod.SECTION_OF)
NESTED = {"model": cfgmod.ModelConfig}  # fields that are sections of their own


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


ALL_FIELDS = sorted({name for cls in [*STAGES, cfgmod.ModelConfig] for name in field_names(cls)})
CHOICES = sorted({c for cls in [*STAGES, cfgmod.ModelConfig] for kind in cfgmod.field_types(cls).values()
                  for c in (cfgmod.choices(kind) or ())})


def keys() -> st.SearchStrategy[Any]:
    """Mostly real config keys; else any text, a number, a boolean or null (YAML allows them all)."""
    return mostly(st.sampled_from(ALL_FIELDS), st.one_of(text(12), st.integers(), st.booleans(), st.none()), 2)


def plausible(kind: Any) -> st.SearchStrategy[Any]:
    """Values close to right for annotation ``kind`` (so validation past the types runs too): small
    numbers, numbers and booleans as text, the allowed choices, lists of them."""
    allowed = cfgmod.choices(kind)
    if allowed is not None:
        return st.sampled_from(allowed)
    inner = cfgmod.optional_of(kind)
    if inner is not None:
        return st.one_of(st.none(), plausible(inner))
    if get_origin(kind) is tuple:
        item = plausible(get_args(kind)[0])
        return st.one_of(st.lists(item, max_size=4), st.lists(item, max_size=4).map(lambda v: ",".join(map(str, v))))
    if kind is bool:
        return st.one_of(st.booleans(), st.sampled_from(cfgmod.TRUE_WORDS + cfgmod.FALSE_WORDS))
    if kind is int:
        return st.one_of(st.integers(-2, 300), st.integers(-2, 300).map(str), st.sampled_from([2.0, 1.5]))
    if kind is float:
        return st.one_of(st.floats(-0.5, 2.0), st.sampled_from(["1e-3", "0.5", "-1", "inf"]), st.integers(-1, 3))
    return st.one_of(st.sampled_from(["top20", "ndcg20", "amnet", ""]), text(12))


def values() -> st.SearchStrategy[Any]:
    """A config value: any scalar, a real choice, or lists and mappings of them."""
    return nested(keys(), st.one_of(scalars(), st.sampled_from(CHOICES)), max_leaves=6)


def stage_document(cls: type) -> st.SearchStrategy[dict]:
    """A stage file's mapping for ``cls``: its keys (the nested model section too) with random values."""
    names = field_names(cls)
    kinds = cfgmod.field_types(cls)
    model = st.fixed_dictionaries({}, optional={name: mostly(plausible(kind), values(), 2) for name, kind in
                                                cfgmod.field_types(cfgmod.ModelConfig).items()})
    value_of = {name: (mostly(model, values(), 3) if name in NESTED else mostly(plausible(kinds[name]), values(), 2))
                for name in names}
    extra = mostly(st.just({}), st.dictionaries(keys(), values(), max_size=2), 2)
    return st.tuples(extra, st.fixed_dictionaries({}, optional=value_of)).map(lambda p: {**p[0], **p[1]})


def override_items(dotted: list[str]) -> st.SearchStrategy[str]:
    """``--set`` items: a real (dotted) key or any text, ``=``, then any text; or any text at all."""
    key = mostly(st.sampled_from(dotted), text(12))
    value = mostly(st.one_of(st.integers(-2, 300).map(str), st.sampled_from(["0.5", "true", "[1, 2]", "paper"])),
                   text(), 1)
    return mostly(st.builds(lambda k, v: f"{k}={v}", key, value), text())


def typed(value: Any, kind: Any) -> bool:
    """``value`` is of annotation ``kind`` as strict parsing promises: no bool as a number, finite floats,
    only the listed choices, tuples of the item type, nested configs of their own types."""
    allowed = cfgmod.choices(kind)
    if allowed is not None:
        return value in allowed
    inner = cfgmod.optional_of(kind)
    if inner is not None:
        return value is None or typed(value, inner)
    if dataclasses.is_dataclass(kind):
        return isinstance(value, kind) and all(typed(getattr(value, n), k)
                                               for n, k in cfgmod.field_types(kind).items())
    if get_origin(kind) is tuple:
        return isinstance(value, tuple) and all(typed(v, get_args(kind)[0]) for v in value)
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, float) and math.isfinite(value)
    return isinstance(value, kind)


def parsed_items(overrides: list[str]) -> list[object]:
    """The keys, key parts and values of ``key=value`` items (what a message may name)."""
    out: list[object] = []
    for item in overrides:
        key, _, raw = item.partition("=")
        out += [item, key, raw, *key.split(".")]
        with contextlib.suppress(yaml.YAMLError):
            out += leaves_and_keys(cfgmod.parse_yaml(raw))
    return out
