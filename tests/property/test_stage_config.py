"""Stage configs (:mod:`amnet.config`): a stage file or a run file's section, then ``key=value`` items.

Whatever the file and the items hold, loading gives a config whose every field has its annotated type,
or one :class:`ConfigError` that names an offending key, value, item or the file; never another error.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from amnet import config as cfgmod
from amnet.errors import AmnetError, ConfigError
from tests.property.configs import STAGES, field_names, override_items, parsed_items, stage_document, typed
from tests.property.inputs import EXAMPLES, assert_names, leaves_and_keys, text

COUNTER = itertools.count()
DOCUMENTS = {cls: stage_document(cls) for cls in STAGES}
HUGE = "é" * 1_000_000


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stage-configs")


def write(folder: Path, content: str) -> str:
    """``content`` as a new file (lone surrogates kept as bytes: not UTF-8, as a broken file can be)."""
    path = folder / f"config-{next(COUNTER)}.yaml"
    path.write_bytes(content.encode("utf-8", "surrogatepass"))
    return str(path)


def dump(document: object, unicode: bool) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=unicode)


def check(cls: type, path: str, overrides: list[str], candidates: list[object]) -> None:
    try:
        cfg = cfgmod.load(cls, path, overrides)
    except ConfigError as exc:
        event("refused")
        assert_names(str(exc), path, *candidates, *parsed_items(overrides))
    else:
        event("accepted")
        assert typed(cfg, cls), cfg


@st.composite
def stage_file(draw: st.DrawFn) -> tuple[type, str, list[str], dict]:
    """A stage class, its file's text (a stage file, a run file with its section, or raw text), ``key=value``
    items of its keys, and the mapping the text dumps (what a message may name)."""
    cls = draw(st.sampled_from(STAGES))
    document = draw(DOCUMENTS[cls])
    kind = draw(st.sampled_from(["stage", "run", "raw"]))
    if kind == "raw":
        content = draw(st.one_of(text(200), st.sampled_from(["a: [", "a: b\n  c: d", "- 1\n- 2", "\x00", "{a: 1"])))
    else:
        content = dump(document if kind == "stage" else {cfgmod.SECTION_OF[cls]: document}, draw(st.booleans()))
    dotted = field_names(cls) + [f"model.{n}" for n in field_names(cfgmod.ModelConfig)]
    overrides = draw(st.lists(override_items(dotted), max_size=3))
    return cls, content, overrides, document


@settings(max_examples=EXAMPLES, deadline=None)
@given(stage_file())
@example((cfgmod.TrainConfig, "lr: 1" + "0" * 400 + "\n", [], {"lr": 10**400}))
@example((cfgmod.TrainConfig, "epochs: " + "9" * 5000 + "\n", [], {"epochs": "9" * 5000}))
@example((cfgmod.TrainConfig, "seed: 0x" + "f" * 4000 + "\n", [], {"seed": "f" * 4000}))
@example((cfgmod.RegisterConfig, f"model_name: {HUGE}\n", [f"gate_metrics={HUGE}"], {"model_name": HUGE}))
@example((cfgmod.EvaluateConfig, "ks: &a [*a]\n", ["ks=&b [*b]"], {"ks": [1]}))
@example((cfgmod.TrainConfig, "lr: 2001-13-01\n", [], {"lr": "2001-13-01"}))
@example((cfgmod.TrainConfig, "epochs: !!int abc\n", [], {"epochs": "abc"}))
@example((cfgmod.TrainConfig, "flip: !!bool maybe\n", [], {"flip": "maybe"}))
@example((cfgmod.TrainConfig, "lr: " + "[" * 3000 + "\n", [], {"lr": "["}))
@example((cfgmod.TrainConfig, "lr: 0.1\n", ["train..lr=1"], {}))
@example((cfgmod.TrainConfig, "lr: 0.1\n", ["lr=\udcff"], {}))
@example((cfgmod.TrainConfig, "lr: \udcff\n", [], {}))
def test_a_stage_config_loads_typed_or_names_the_bad_input(folder, case):
    cls, content, overrides, document = case
    check(cls, write(folder, content), overrides, leaves_and_keys(document))


def test_a_folder_or_a_missing_file_is_named(folder):
    for path in (str(folder), str(folder / "absent.yaml")):
        with pytest.raises(AmnetError) as caught:
            cfgmod.load(cfgmod.TrainConfig, path)
        assert path in str(caught.value)
