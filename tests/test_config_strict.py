"""Strict settings: every int, float, choice and list field takes only values of its kind, through a run
file, a stage file and ``--set`` alike, with one error naming the key; the run file's JSON Schema
(``amnet config schema``) is valid, matches the committed ``configs/amnet-run.schema.json`` and accepts
every shipped run file."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from amnet_pipeline import run_config, run_schema

from amnet import cli
from amnet import config as cfgmod
from amnet.config import EvaluateConfig, ModelConfig, PretrainConfig, RegisterConfig, SplitConfig, TrainConfig
from amnet.errors import EXIT_BAD_INPUT, AmnetError, ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / run_schema.SCHEMA_FILE
RUN_FILES = sorted((ROOT / "configs").glob("*.yaml"))
STAGES = list(cfgmod.SECTION_OF)  # the stage config classes, one section of the run file each


def fields_of_kind(test) -> list[tuple[type, str]]:
    """(stage class, dotted key) of every field whose annotation passes ``test`` (nested model included)."""
    found = []
    for cls in STAGES:
        for name, kind in cfgmod.field_types(cls).items():
            if kind is ModelConfig:
                found += [(cls, f"model.{n}") for n, k in cfgmod.field_types(ModelConfig).items() if test(k)]
            elif test(kind):
                found.append((cls, name))
    return found


def leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def stage_file(tmp_path: Path, cls: type, override: str) -> str:
    """A run file holding ``override`` (``a.b=value``) in ``cls``'s section."""
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({cfgmod.SECTION_OF[cls]: cfgmod.apply_overrides({}, [override])}))
    return str(path)


BAD = [  # (stage, override, the error it gives)
    (TrainConfig, "epochs=1.5", r"^epochs: cannot use 1\.5 \(expected int\)$"),
    (TrainConfig, "epochs='1.5'", r"^epochs: cannot use '1\.5' \(expected int\)$"),
    (TrainConfig, "epochs=abc", r"^epochs: cannot use 'abc' \(expected int\)$"),
    (TrainConfig, "epochs=true", r"^epochs: cannot use True \(expected int\)$"),
    (TrainConfig, "epochs=[8]", r"^epochs: cannot use \[8\] \(expected int\)$"),
    (TrainConfig, "lr=abc", r"^lr: cannot use 'abc' \(expected a finite float\)$"),
    (TrainConfig, "lr=.nan", r"^lr: cannot use nan \(expected a finite float\)$"),
    (TrainConfig, "margin=.inf", r"^margin: cannot use inf \(expected a finite float\)$"),
    (TrainConfig, "weight_decay=nan", r"^weight_decay: cannot use 'nan' \(expected a finite float\)$"),
    (TrainConfig, "lr=yes", r"^lr: cannot use True \(expected a finite float\)$"),
    (TrainConfig, "retrieval=rprime",
     r"^unknown retrieval 'rprime'; choose one of representation, attributes, combined$"),
    (TrainConfig, "preset=papr", r"""^unknown preset 'papr'; choose one of "", paper$"""),
    (TrainConfig, "precision=fp64", r"^unknown precision 'fp64'; choose one of auto, fp32, bf16$"),
    (PretrainConfig, "model.backbone=vgg16", r"^unknown backbone 'vgg16'; choose one of small, alexnet, resnet18, "),
    (EvaluateConfig, "index=annoy", r"^unknown index 'annoy'; choose one of exact, ivf, pq, hnsw, auto$"),
    (RegisterConfig, "gate_rule=3", r"^unknown gate_rule 3; choose one of all, any$"),
    (EvaluateConfig, "ks=[1, 2.5]", r"^ks: cannot use 2\.5 \(expected int\)$"),
    (EvaluateConfig, "ks={a: 1}", r"^ks: cannot use \{'a': 1\} \(expected a list\)$"),
    (SplitConfig, "num_changes=one", r"^num_changes: cannot use 'one' \(expected int\)$"),
    (RegisterConfig, "model_name=[amnet]", r"^model_name: cannot use \['amnet'\] \(expected str\)$"),
    (TrainConfig, "flip=flase", r"^flip: cannot use 'flase' \(expected a boolean: "),
    (TrainConfig, "learning_rate=0.1", r"^unknown TrainConfig key 'learning_rate'; valid keys: variant, epochs, "),
    (PretrainConfig, "model.depth=5", r"^unknown ModelConfig key 'depth'; valid keys: backbone, "),
]


@pytest.mark.parametrize(("cls", "override", "error"), BAD, ids=[b[1] for b in BAD])
def test_a_bad_value_is_one_error_naming_the_key_through_set_and_through_a_file(cls, override, error, tmp_path):
    with pytest.raises(ConfigError, match=error):
        cfgmod.load(cls, overrides=[override])
    with pytest.raises(ConfigError, match=error):
        cfgmod.load(cls, stage_file(tmp_path, cls, override))
    section = cfgmod.SECTION_OF[cls]
    with pytest.raises(AmnetError, match=re.escape(f"--set: {section}: ") + error.lstrip("^")):
        run_config.load(overrides=[f"{section}.{override}"])
    with pytest.raises(AmnetError, match=re.escape(f"{section}: ") + error.lstrip("^")):
        run_config.load(stage_file(tmp_path, cls, override))


@pytest.mark.parametrize(("cls", "key"), fields_of_kind(lambda k: cfgmod.choices(k) is not None),
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_every_choice_field_refuses_an_unknown_value_naming_key_value_and_choices(cls, key):
    kind = cfgmod.field_types(ModelConfig if key.startswith("model.") else cls)[leaf(key)]
    with pytest.raises(ConfigError) as err:
        cfgmod.load(cls, overrides=[f"{key}=bogus"])
    allowed = ", ".join(a or '""' for a in cfgmod.choices(kind))
    assert str(err.value) == f"unknown {leaf(key)} 'bogus'; choose one of {allowed}"


@pytest.mark.parametrize(("cls", "key"), fields_of_kind(lambda k: k is int),
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
@pytest.mark.parametrize("raw", ["1.5", "abc", "true", "'8.0x'"])
def test_every_int_field_refuses_fractions_words_and_booleans(cls, key, raw):
    with pytest.raises(ConfigError, match=rf"^{leaf(key)}: cannot use .* \(expected int\)$"):
        cfgmod.load(cls, overrides=[f"{key}={raw}"])


@pytest.mark.parametrize(("cls", "key"), fields_of_kind(lambda k: k is float),
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
@pytest.mark.parametrize("raw", [".nan", ".inf", "-.inf", "abc", "false", "[0.1]"])
def test_every_float_field_refuses_non_numbers_and_non_finite_values(cls, key, raw):
    with pytest.raises(ConfigError, match=rf"^{leaf(key)}: cannot use .* \(expected a finite float\)$"):
        cfgmod.load(cls, overrides=[f"{key}={raw}"])


def test_values_of_the_right_kind_in_other_spellings_are_taken():
    train = cfgmod.load(TrainConfig, overrides=["epochs=2.0", "lr=1e-3", "margin=1", "steps_per_epoch='12'",
                                                "flip=no"])
    assert (train.epochs, train.lr, train.margin, train.steps_per_epoch, train.flip) == (2, 0.001, 1.0, 12, False)
    assert isinstance(train.margin, float) and isinstance(train.epochs, int)
    evaluate = cfgmod.load(EvaluateConfig, overrides=["ks=1,5, 10", "index=exact"])
    assert (evaluate.ks, evaluate.index) == ((1, 5, 10), "exact")
    assert cfgmod.load(PretrainConfig, overrides=["model.weights=none"]).model.weights is None
    assert cfgmod.load(PretrainConfig, overrides=["model.weights=w.pt"]).model.weights == "w.pt"
    assert cfgmod.load(RegisterConfig, overrides=["gate_metrics=top20"]).gate_metrics == ("top20",)
    assert cfgmod.load(TrainConfig, overrides=["preset="]).preset == ""


def test_a_config_built_in_code_is_checked_against_its_choices_too():
    with pytest.raises(ConfigError, match=r"^unknown retrieval 'rprime'; choose one of "):
        dataclasses.replace(TrainConfig(), retrieval="rprime").validate()


@pytest.mark.parametrize(("argv", "error"), [
    (["run", "--local", "--set", "train.epochs=1.5"], "--set: train: epochs: cannot use 1.5 (expected int)"),
    (["run", "--local", "--set", "evaluate.index=annoy"],
     "--set: evaluate: unknown index 'annoy'; choose one of exact, ivf, pq, hnsw, auto"),
    (["run", "--local", "--config", "{FILE}"],
     "{FILE}: train: unknown retrieval 'rprime'; choose one of representation, attributes, combined"),
])
def test_a_bad_setting_exits_3_with_one_line_naming_it(argv, error, tmp_path, capsys):
    bad = tmp_path / "run.yaml"
    bad.write_text("train:\n  retrieval: rprime\n")
    argv = [a.replace("{FILE}", str(bad)) for a in argv]
    assert cli.main(argv) == EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == f"amnet run: error: {error.replace('{FILE}', str(bad))}"


# ------------------------------------------------------------------------------------------- schema


def printed_schema(capsys) -> dict:
    assert cli.main(["config", "schema"]) == 0
    return json.loads(capsys.readouterr().out)


def test_config_schema_prints_a_valid_draft_2020_12_schema_equal_to_the_committed_file(capsys):
    schema = printed_schema(capsys)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert SCHEMA.read_text(encoding="utf-8") == run_schema.schema_text(), (
        f"{run_schema.SCHEMA_FILE} is stale; regenerate it: amnet config schema --out {run_schema.SCHEMA_FILE}")


def test_config_schema_out_writes_the_file(tmp_path, capsys):
    out = tmp_path / "sub" / "schema.json"
    assert cli.main(["config", "schema", "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert out.read_text(encoding="utf-8") == run_schema.schema_text()
    assert [p.name for p in out.parent.iterdir()] == ["schema.json"]  # no temporary file left beside it


def test_the_schema_covers_every_key_with_its_default_and_is_closed_everywhere():
    schema = run_schema.run_file_schema()
    assert set(schema["properties"]) == {*run_config.RUN_KEYS, *run_config.SECTIONS}

    def closed(node: dict) -> None:
        if node.get("type") == "object":
            assert node["additionalProperties"] is False
            for child in node["properties"].values():
                closed(child)

    closed(schema)
    for name, cls in run_config.SECTIONS.items():
        section = schema["properties"][name]["properties"]
        fixed = run_config.PIPELINE_VARIANT_KEYS.get(name)
        assert set(section) == {f.name for f in dataclasses.fields(cls)} - {fixed}  # the pipeline sets variant
        defaults = cfgmod.to_dict(cls())
        for key, prop in section.items():
            if prop.get("type") != "object":
                expected = defaults[key]
                assert prop["default"] == (list(expected) if isinstance(expected, tuple) else expected), key
    train = schema["properties"]["train"]["properties"]
    assert train["retrieval"]["enum"] == ["representation", "attributes", "combined"]
    assert "λ in Eq. 6" in train["lam"]["description"]  # descriptions come from the fields' comments


@pytest.mark.parametrize("path", RUN_FILES, ids=lambda p: p.name)
def test_every_shipped_run_file_names_the_schema_and_validates_against_it(path):
    assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=./amnet-run.schema.json"
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(yaml.safe_load(path.read_text()))


def test_the_schedule_files_run_file_validates_against_the_schema_too():
    schedule = yaml.safe_load((ROOT / "manifests" / "schedule" / "recurring-run.yaml").read_text())
    jsonschema.Draft202012Validator(run_schema.run_file_schema()).validate(schedule["config"])


@pytest.mark.parametrize("doc", [
    {"train": {"retrieval": "rprime"}},
    {"train": {"epochs": 1.5}},
    {"train": {"lr": "abc"}},
    {"train": {"learning_rate": 0.1}},
    {"train": {"variant": "amnet"}},  # set by the pipeline for each variant
    {"pretrain": {"model": {"backbone": "vgg16"}}},
    {"evaluate": {"ks": [1, 2.5]}},
    {"variants": ["amnet", "vit"]},
    {"seeds": 0},
    {"gallery_size": 10},
], ids=json.dumps)
def test_what_the_schema_refuses_the_loader_refuses_too(doc):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(run_schema.run_file_schema()).validate(doc)
    with pytest.raises(AmnetError):
        run_config.parse(doc)
