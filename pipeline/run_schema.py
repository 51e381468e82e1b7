"""``amnet config schema``: the run file's JSON Schema (draft 2020-12), generated from the config dataclasses.

Editors that read ``# yaml-language-server: $schema=...`` (VS Code's YAML extension, JetBrains, Neovim)
complete and check ``configs/*.yaml`` with it. Each stage section comes from its dataclass in
:mod:`amnet.config`: types and ``Literal`` choices from the annotations, defaults from the fields,
descriptions from the comments beside the fields and the class docstrings; the run-level keys from
:class:`amnet_pipeline.run_config.RunConfig`. Every object is closed (``additionalProperties: false``),
as the loader is. ``configs/amnet-run.schema.json`` is this command's output, kept equal by a test.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import json
import logging
import sys
import tokenize
from typing import Any, get_args, get_origin

from amnet_pipeline.run_config import PIPELINE_VARIANT_KEYS, RUN_KEYS, SECTIONS, RunConfig

from amnet import config as cfgmod
from amnet import storage
from amnet.names import TRAINED_VARIANTS

log = logging.getLogger(__name__)

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILE = "configs/amnet-run.schema.json"
# The run-level keys (RunConfig validates them by hand, so their schemas are written out here).
RUN_KEY_SCHEMAS: dict[str, dict[str, Any]] = {
    "dataset": {"type": "string", "minLength": 1,
                "description": "dataset root (local path or s3:// URI); local runs use the built-in synthetic "
                               "dataset when omitted"},
    "variants": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": list(TRAINED_VARIANTS)},
                 "description": "trained variants: AMNet and its ablations (§5.2)"},
    "attribute_baseline": {"type": "boolean", "description": "also evaluate the attribute-based baseline"},
    "image_baseline": {"type": "boolean", "description": "also score plain visual search: the amnet model's "
                                                         "vector of the query image, no change applied"},
    "experiment": {"type": "string", "minLength": 1, "description": "MLflow experiment"},
    "seeds": {"type": "integer", "minimum": 1,
              "description": "train each variant with this many seeds (train.seed, train.seed + 1, ...)"},
}


def run_file_schema() -> dict[str, Any]:
    """The JSON Schema of a run file: run-level keys, then one closed section per stage."""
    missing = [key for key in RUN_KEYS if key not in RUN_KEY_SCHEMAS]
    if missing:
        raise RuntimeError(f"run-level key(s) without a schema: {', '.join(missing)}")
    defaults = RunConfig()
    properties: dict[str, Any] = {}
    for key in RUN_KEYS:
        default = getattr(defaults, key)
        properties[key] = {**RUN_KEY_SCHEMAS[key], **({} if default is None else {"default": _json(default)})}
    for name, cls in SECTIONS.items():
        omit = (PIPELINE_VARIANT_KEYS[name],) if name in PIPELINE_VARIANT_KEYS else ()
        properties[name] = section_schema(cls, omit)
    return {"$schema": DIALECT, "title": "amnet run file",
            "description": "run-level keys and one section per stage (amnet run --local, amnet pipeline submit "
                           "and schedule --config); every key is optional, an omitted one keeps its default",
            "type": "object", "additionalProperties": False, "properties": properties}


def section_schema(cls: type, omit: tuple[str, ...] = ()) -> dict[str, Any]:
    """A config dataclass as a closed JSON Schema object (nested dataclasses as nested objects)."""
    types, notes = cfgmod.field_types(cls), field_notes(cls)
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in omit:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            prop = section_schema(type(default))
        else:
            prop = {**value_schema(types[f.name]), "default": _json(default)}
        properties[f.name] = {"description": notes[f.name], **prop} if notes.get(f.name) else prop
    head = {"description": " ".join(cls.__doc__.split())} if cls.__doc__ else {}
    return {**head, "type": "object", "additionalProperties": False, "properties": properties}


def value_schema(kind: Any) -> dict[str, Any]:
    """The JSON Schema of one field annotation: bool, int, float, str, ``Literal``, ``tuple[X, ...]``, ``X | None``."""
    allowed = cfgmod.choices(kind)
    if allowed is not None:
        return {"type": "string", "enum": list(allowed)}
    inner = cfgmod.optional_of(kind)
    if inner is not None:
        return {"anyOf": [value_schema(inner), {"type": "null"}]}
    if get_origin(kind) is tuple:
        return {"type": "array", "items": value_schema(get_args(kind)[0])}
    scalar = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(kind)
    if scalar is None:
        raise TypeError(f"no JSON Schema for the annotation {kind!r}")
    return {"type": scalar}


def field_notes(cls: type) -> dict[str, str]:
    """Field name -> its comments in ``cls``'s source: the comment lines right above it and the one beside it."""
    try:
        source = inspect.getsource(sys.modules[cls.__module__])
    except (OSError, TypeError):  # no source shipped: a schema without descriptions
        return {}
    comments = _comments(source)
    lines = source.splitlines()
    notes: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.ClassDef) and node.name == cls.__name__):
            continue
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                above, row = [], item.lineno - 1
                while row >= 1 and lines[row - 1].lstrip().startswith("#"):
                    above.insert(0, comments[row])
                    row -= 1
                rows = range(item.lineno, (item.end_lineno or item.lineno) + 1)
                beside = [comments[r] for r in rows if r in comments]
                notes[item.target.id] = " ".join(above + beside)
    return notes


@functools.cache
def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment on that line."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0]: tok.string.lstrip("#").strip() for tok in tokens if tok.type == tokenize.COMMENT}


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def schema_text() -> str:
    """The schema as the committed file holds it: 2-space JSON, UTF-8 characters kept, a final newline."""
    return json.dumps(run_file_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="amnet config schema",
        description="Print the run file's JSON Schema (draft 2020-12): every run-level key and stage section, "
                    "with types, choices, defaults and descriptions. configs/*.yaml point editors at "
                    f"{SCHEMA_FILE} with a `# yaml-language-server: $schema=...` first line.")
    parser.add_argument("--out", metavar="FILE", help="write it to FILE (atomically; local path or s3://) instead "
                                                      "of printing it")
    args = parser.parse_args(argv)
    text = schema_text()
    if args.out:
        storage.write_text(args.out, text)
        log.info("wrote the run file's JSON Schema to %s", args.out)
    else:
        sys.stdout.write(text)
    return 0
