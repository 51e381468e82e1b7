"""Run files and ``--set`` items (:func:`amnet_pipeline.run_config.load`).

Whatever the run file and the items hold, loading gives a run config whose every stage resolves to a
typed config, or one :class:`AmnetError` that names an offending key, value or item (the file itself
when it is not YAML or not a mapping); never another error.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml
from amnet_pipeline import run_config
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from amnet import config as cfgmod
from amnet.errors import AmnetError
from tests.property.configs import field_names, keys, override_items, parsed_items, stage_document, typed, values
from tests.property.inputs import EXAMPLES, assert_names, leaves_and_keys, mostly, text

COUNTER = itertools.count()
SECTIONS = run_config.SECTIONS
DOTTED = [*run_config.RUN_KEYS, *SECTIONS, *(f"{s}.{f}" for s, cls in SECTIONS.items() for f in field_names(cls)),
          *(f"pretrain.model.{f}" for f in field_names(cfgmod.ModelConfig))]
RUN_VALUES = {"dataset": mostly(text(), values()), "experiment": mostly(text(), values()),
              "variants": mostly(st.lists(st.sampled_from(["amnet", "no_memory", "no_ranking", "x"]), max_size=3),
                                 st.one_of(text(), values()), 2),
              "seeds": mostly(st.integers(-1, 4), values()), "attribute_baseline": mostly(st.booleans(), values()),
              "image_baseline": mostly(st.booleans(), values())}


def run_document() -> st.SearchStrategy[dict]:
    """A run file's mapping: run-level keys, stage sections of real and random keys, random extra keys."""
    sections = {name: mostly(stage_document(cls), values()) for name, cls in SECTIONS.items()}
    extra = mostly(st.just({}), st.dictionaries(keys(), values(), max_size=2), 2)
    return st.tuples(extra, st.fixed_dictionaries({}, optional={**RUN_VALUES, **sections})).map(
        lambda parts: {**parts[0], **parts[1]})


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("run-files")


def message_body(message: str, where: str) -> str:
    """A run-file error without its ``FILE: SECTION:`` or ``--set:`` prefix (those alone name nothing)."""
    for prefix in (f"{where}: ", "--set: "):
        message = message.removeprefix(prefix)
    for section in SECTIONS:
        message = message.removeprefix(f"{section}: ")
    return message


@st.composite
def run_file(draw: st.DrawFn) -> tuple[str | None, object, list[str]]:
    """The run file's text (None: no file), the document it dumps (None: raw text), ``--set`` items."""
    kind = draw(st.sampled_from(["dump", "dump", "raw", "none"]))
    document = draw(RUN_DOCUMENT) if kind == "dump" else None
    if kind == "dump":
        content = yaml.safe_dump(document, sort_keys=False, allow_unicode=draw(st.booleans()))
    elif kind == "raw":
        content = draw(st.one_of(text(200), st.sampled_from(["train: [", "- 1", "train: 5", "seeds: 0x1F"])))
    else:
        content = None
    return content, document, draw(st.lists(override_items(DOTTED), max_size=3))


RUN_DOCUMENT = run_document()


@settings(max_examples=EXAMPLES, deadline=None)
@given(run_file())
@example(("seeds: " + "9" * 5000 + "\n", {"seeds": 0}, []))
@example((None, None, ["seeds=0x" + "f" * 4000]))
@example((None, None, ["train.epochs=!!int abc"]))
@example((None, None, ["train.lr=2001-13-01"]))
@example((None, None, ["evaluate.ks=" + "[" * 3000]))
@example((None, None, ["train..epochs=2"]))
@example(("variants: &a [*a]\n", {"variants": []}, []))
@example(("dataset: \udcff\n", None, []))
def test_a_run_file_loads_or_names_the_bad_input(folder, case):
    content, document, overrides = case
    path = None
    if content is not None:
        path = folder / f"run-{next(COUNTER)}.yaml"
        path.write_bytes(content.encode("utf-8", "surrogatepass"))
        path = str(path)
    try:
        run = run_config.load(path, overrides)
    except AmnetError as exc:
        event("refused")
        where = path or "--set"
        whole_file = document is None or not isinstance(document, dict)  # not YAML, or not a mapping
        candidates = [*leaves_and_keys(document), *parsed_items(overrides), *([where] if whole_file else [])]
        assert_names(str(exc) if whole_file else message_body(str(exc), where), *candidates)
    else:
        event("accepted")
        for name, cls in SECTIONS.items():
            assert typed(run.stage(name), cls)
        assert run.variants and run.seeds >= 1
        json.dumps(run.pipeline_arguments(), allow_nan=True)  # what a submission sends
