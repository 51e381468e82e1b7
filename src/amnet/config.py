"""One frozen dataclass per stage: defaults in code, YAML/`key=value` overrides, validated ranges.

The defaults are sized for the built-in synthetic dataset on a 2-core CPU (64 px, small CNN); the
paper's settings (AlexNet fc7, 227 px) are one override away: ``backbone=alexnet image_size=224``.

Parsing is strict and driven by each field's annotation: an int, float, bool, ``Literal`` choice or list
field takes only values of its kind, so a typo is one :class:`ConfigError` naming the key, never a
silently different setting. The same annotations give the run file's JSON Schema
(``amnet_pipeline.run_schema``, ``amnet config schema``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from dataclasses import dataclass, field
from types import NoneType, UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from amnet.errors import ConfigError
from amnet.names import (
    ACTIVATIONS,
    INDEX_KINDS,
    MEMORY_READS,
    NEGATIVE_MINING,
    QUERY_SETS,
    RETRIEVAL_SPACES,
    TRAINED_VARIANTS,
    VARIANTS,
)

BACKBONES = ("small", "alexnet", "resnet18", "resnet50")
PRECISIONS = ("auto", "fp32", "bf16")
GATE_RULES = ("all", "any")
RANKING_SPACES = ("representation", "retrieval")
DECODERS = ("pil", "torchvision")
# Named sets of TrainConfig values; ``preset`` applies one over the keys given beside it.
TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"negatives": "sampled", "classify_pos_neg": False, "flip": False, "manipulator_lr_mult": 1.0,
              "memory_read": "mean", "manipulator_activation": "none", "hard_negative_fraction": 0.0, "margin": 0.5,
              "lam": 0.2, "retrieval": "representation", "ranking_space": "representation",
              "group_positives": 0.0},
}
PRESETS = ("", *TRAIN_PRESETS)  # TrainConfig.preset: "" = every key as given


@dataclass(frozen=True)
class ModelConfig:
    """The representation learner: backbone CNN, input size and feature size."""

    backbone: Literal[BACKBONES] = "small"
    image_size: int = 64
    feature_dim: int = 256  # Q: representation size (AlexNet: fc7 = 4096)
    width: int = 32  # channels of the small CNN's first conv
    weights: str | None = None  # optional initialisation file (local path or s3://)

    def validate(self) -> None:
        _check_choices(self)
        _positive("image_size", self.image_size)
        _positive("feature_dim", self.feature_dim)
        _positive("width", self.width)
        if self.image_size < 32:
            raise ConfigError(f"image_size must be >= 32 (got {self.image_size}); the small CNN needs 32 px or more")


@dataclass(frozen=True)
class SplitConfig:
    """Validation and the paper-protocol split (§5.1): training images, gallery, queries, shards."""

    per_value: int = 200  # P: attribute-CNN training images per attribute value (paper: 200)
    gallery_size: int = 2000  # paper: 200,000
    num_queries: int = 300  # per number of changes (paper: 5,000)
    num_changes: tuple[int, ...] = (1, 2)  # query sets to build: one- and two-attribute (§5.5)
    # validation queries per number of changes, drawn after the test queries (-1 = num_queries, 0 = none)
    num_val_queries: int = -1
    # exact-target (item_id group) queries: unrelated gallery images carrying the target's exact labels
    decoys_per_query: int = 2
    shard_size: int = 2000
    seed: int = 0
    max_quarantine_fraction: float = 0.05

    def validate(self) -> None:
        for name in ("per_value", "gallery_size", "num_queries", "shard_size"):
            _positive(name, getattr(self, name))
        if self.num_val_queries < -1:
            raise ConfigError(f"num_val_queries must be >= 0, or -1 for num_queries (got {self.num_val_queries})")
        if isinstance(self.decoys_per_query, bool) or not isinstance(self.decoys_per_query, int) \
                or self.decoys_per_query < 0:
            raise ConfigError(f"decoys_per_query must be an integer >= 0 (got {self.decoys_per_query!r})")
        if not self.num_changes or any(n not in (1, 2, 3) for n in self.num_changes):
            raise ConfigError(f"num_changes must be a list of 1, 2 or 3 (got {self.num_changes})")
        _fraction("max_quarantine_fraction", self.max_quarantine_fraction)

    @property
    def val_queries(self) -> int:
        """Validation queries per number of changes (``num_val_queries``, -1 resolved to ``num_queries``)."""
        return self.num_queries if self.num_val_queries == -1 else self.num_val_queries


@dataclass(frozen=True)
class PretrainConfig:
    """The attribute CNN (§3.4, §4): its model and SGD schedule."""

    model: ModelConfig = field(default_factory=ModelConfig)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    holdout_fraction: float = 0.1
    seed: int = 0
    num_workers: int = 0

    def validate(self) -> None:
        self.model.validate()
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("lr", self.lr)
        _fraction("momentum", self.momentum)
        _fraction("holdout_fraction", self.holdout_fraction)


@dataclass(frozen=True)
class TrainConfig:
    """AMNet training on triplets (Eq. 1-6), its options beyond the paper and what search compares."""

    variant: Literal[TRAINED_VARIANTS] = "amnet"
    epochs: int = 8
    steps_per_epoch: int = 150
    batch_size: int = 32  # triplets per step
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lam: float = 0.5  # λ in Eq. 6 (paper: 0.2; 0.5 chosen on validation with retrieval=attributes); no_ranking: 1
    margin: float = 1.0  # m in Eq. 5 (paper: 0.5)
    two_change_fraction: float = 0.5  # share of training manipulations that change two attributes
    # share of negatives one attribute away from the target (paper: 0 = all random; docs/model.md)
    hard_negative_fraction: float = 0.5
    lr_step_epochs: int = 0  # StepLR period, x0.1 each period (0 = cosine annealing over the epochs)

    # Options beyond the paper (docs/model.md, deviations); each value below the paper's is named.

    # Eq. 5's negative: sampled (the triplet's own, paper) | batch_hard | semi_hard (mined among the batch's
    # images whose attributes differ from the target)
    negatives: Literal[NEGATIVE_MINING] = "batch_hard"
    classify_pos_neg: bool = True  # Eq. 4 also on the pos and neg images with their own labels (paper: r' only)
    flip: bool = True  # random horizontal flip of each training image, as pretraining does (paper: none)
    manipulator_lr_mult: float = 1.0  # learning rate of the memory and manipulator = lr x this (paper: 1)
    # Eq. 1's h' = h / sum(h) (paper) | sum: h unnormalised, one prototype per change
    memory_read: Literal[MEMORY_READS] = "mean"
    # after Eq. 3: none (paper) | relu (r' non-negative like the gallery's r)
    manipulator_activation: Literal[ACTIVATIONS] = "none"
    # what search compares: representation (r' vs r, paper) | attributes (the attribute branches' softmax
    # outputs on r' vs on r, concatenated per attribute) | combined (both, weighted; chosen on validation
    # queries of both yardsticks, docs/experiments.md)
    retrieval: Literal[RETRIEVAL_SPACES] = "combined"
    # retrieval=combined: the attribute outputs' share of the squared distance; the rest is the distance
    # between unit-length r' and r, which keeps the item's look among images with the target labels
    retrieval_weight: float = 0.5
    # share of triplets whose positive is the reference's own variant (the split's item groups; paper: 0,
    # any image with the target labels); no effect on datasets without item_id
    group_positives: float = 0.5
    # where Eq. 5 measures distances: representation (r' vs r, paper) | retrieval (the retrieval space's vectors)
    ranking_space: Literal[RANKING_SPACES] = "representation"
    # "paper": every option above (and hard_negative_fraction) at the paper's value, over any value given
    # for them, also by a run file (``--config configs/demo.yaml --set train.preset=paper``); "" = as given
    preset: Literal[PRESETS] = ""
    seed: int = 0
    num_workers: int = 0
    precision: Literal[PRECISIONS] = "auto"  # auto (bf16 autocast on CUDA, fp32 on the CPU) | fp32 | bf16
    # score the split's validation queries after every epoch (logged as val_* per epoch; training unchanged)
    val_each_epoch: bool = True
    # which epoch's weights the model keeps: last | best (the highest validation Recall@1, else top-1)
    keep: Literal["last", "best"] = "last"

    def validate(self) -> None:
        _check_choices(self)
        if self.keep == "best" and not self.val_each_epoch:
            raise ConfigError("train.keep: best needs train.val_each_epoch: true (the best epoch is chosen on "
                              "the validation queries)")
        _positive("manipulator_lr_mult", self.manipulator_lr_mult)
        _positive("epochs", self.epochs)
        _positive("steps_per_epoch", self.steps_per_epoch)
        _positive("batch_size", self.batch_size)
        _positive("lr", self.lr)
        _fraction("momentum", self.momentum)
        _fraction("lam", self.lam)
        _positive("margin", self.margin)
        _fraction("two_change_fraction", self.two_change_fraction)
        _fraction("hard_negative_fraction", self.hard_negative_fraction)
        _fraction("retrieval_weight", self.retrieval_weight)
        _fraction("group_positives", self.group_positives)

    @property
    def effective_lam(self) -> float:
        return 1.0 if self.variant == "no_ranking" else self.lam

    @property
    def architecture(self) -> dict[str, Any]:
        """AMNet's constructor options these keys set (saved with the model, read back by load_model)."""
        arch: dict[str, Any] = {"memory_read": self.memory_read, "activation": self.manipulator_activation,
                                "retrieval": self.retrieval}
        if self.retrieval == "combined":
            arch["retrieval_weight"] = self.retrieval_weight
        return arch


@dataclass(frozen=True)
class FeaturizeConfig:
    """Gallery featurization: batches, JPEG decoding, precision and the fan-out over tasks."""

    batch_size: int = 256
    decode_workers: int = 0  # JPEG decode threads (0 = auto: CPUs up to 8 beside a GPU, CPUs / 4 beside a CPU model)
    prefetch: bool = True  # decode the next batch while the model runs on this one
    # auto (bf16 autocast + channels-last on CUDA, fp32 on the CPU) | fp32 | bf16
    precision: Literal[PRECISIONS] = "auto"
    # pil (the decoder training and evaluation use) | torchvision (decode_jpeg on the model's device:
    # nvJPEG on a GPU; pixels differ slightly from pil, so use it for queries too when searching)
    decoder: Literal[DECODERS] = "pil"
    # gallery shards per featurization task: the pipeline fans the gallery out over ceil(shards / this)
    # tasks (one GPU each) and one build-index task merges them (0 = every shard in one task)
    shards_per_task: int = 0

    def validate(self) -> None:
        _check_choices(self)
        _positive("batch_size", self.batch_size)
        if self.shards_per_task < 0:
            raise ConfigError(f"shards_per_task must be >= 0 (0 = one featurization task); got {self.shards_per_task}")
        if self.decode_workers < 0:
            raise ConfigError(f"decode_workers must be >= 0 (0 = automatic); got {self.decode_workers}")


@dataclass(frozen=True)
class PrototypesConfig:
    """The memory's initialisation: attribute-CNN features averaged per attribute value."""

    batch_size: int = 256  # images per forward pass of the attribute CNN

    def validate(self) -> None:
        _positive("batch_size", self.batch_size)


@dataclass(frozen=True)
class EvaluateConfig:
    """Scoring manipulated queries: the variant, the cut-offs, the search index and the query set."""

    # amnet | no_memory | no_ranking | attribute_based (the attribute CNN) | image_only (the amnet model's own
    # vector of the query image, no change applied: plain visual search)
    variant: Literal[VARIANTS] = "amnet"
    ks: tuple[int, ...] = (1, 5, 10, 20, 30, 50)
    ndcg_k: int = 20
    batch_size: int = 256
    # exact | ivf | pq | hnsw | auto (exact while one exact query stays cheap, else pq; amnet.retrieval.index)
    index: Literal[INDEX_KINDS] = "auto"
    # which query set is scored: test (the split's `queries`, reported) | val (`val_queries`, to choose defaults on)
    queries: Literal[QUERY_SETS] = "test"

    def validate(self) -> None:
        _check_choices(self)
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"ks must be positive integers (got {self.ks})")
        _positive("ndcg_k", self.ndcg_k)


@dataclass(frozen=True)
class RegisterConfig:
    """The registry gate: which variant is registered and when ``champion`` moves to it."""

    variant: Literal[TRAINED_VARIANTS] = "amnet"  # the trained variant registered as the challenger
    model_name: str = "amnet"  # MLflow registered model
    gate_metrics: tuple[str, ...] = ("top20", "ndcg20")  # compared with the champion's on the same data
    gate_margin: float = 0.0  # promote when the challenger >= champion - margin
    gate_rule: Literal[GATE_RULES] = "all"  # all: every gate metric must pass; any: one is enough

    def validate(self) -> None:
        _check_choices(self)
        if not self.model_name.strip():
            raise ConfigError("model_name must not be empty; name the MLflow registered model")
        if not self.gate_metrics:
            raise ConfigError("gate_metrics must name at least one metric (e.g. top20)")
        if self.gate_margin < 0:
            raise ConfigError(f"gate_margin must be >= 0 (got {self.gate_margin})")


@dataclass(frozen=True)
class RefreshConfig:
    """Refreshing the served gallery from a changed catalogue between retrainings (same weights)."""

    model_name: str = "amnet"  # MLflow registered model the refreshed version joins
    min_recall: float = 0.95  # an approximate index's recall@20 against exact search must reach this
    known_queries: int = 5  # unchanged (and added) gallery images queried by id: each must come back first
    rebuild_fraction: float = 0.5  # past this changed fraction an approximate index is trained again
    promote: bool = True  # move the champion aliases to the refreshed version once it passes the checks

    def validate(self) -> None:
        if not self.model_name.strip():
            raise ConfigError("model_name must not be empty; name the MLflow registered model")
        if not 0.0 <= self.min_recall <= 1.0:
            raise ConfigError(f"min_recall must be in [0, 1] (got {self.min_recall})")
        if self.known_queries < 0:
            raise ConfigError(f"known_queries must be >= 0 (got {self.known_queries})")
        if not 0.0 < self.rebuild_fraction <= 1.0:
            raise ConfigError(f"rebuild_fraction must be in (0, 1] (got {self.rebuild_fraction})")


# The section of a run file (configs/*.yaml) each stage config is read from.
SECTION_OF: dict[type, str] = {
    SplitConfig: "split", PretrainConfig: "pretrain", PrototypesConfig: "prototypes", TrainConfig: "train",
    FeaturizeConfig: "featurize", EvaluateConfig: "evaluate", RegisterConfig: "register",
}

C = TypeVar("C")


def from_dict(cls: type[C], values: dict[str, Any] | None) -> C:
    """Build ``cls`` from defaults + ``values`` (nested dicts for nested configs), then validate."""
    values = dict(values or {})
    preset = values.get("preset")
    if cls is TrainConfig and isinstance(preset, str) and preset in TRAIN_PRESETS:
        values = {**values, **TRAIN_PRESETS[preset]}  # the preset wins, also over a run file's keys
    kwargs: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types = field_types(cls)
    for key, raw in values.items():
        if key not in fields:
            raise ConfigError(f"unknown {cls.__name__} key {key!r}; valid keys: {', '.join(fields)}")
        f = fields[key]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            if raw is not None and not isinstance(raw, dict):
                raise ConfigError(f"{key}: expected a section of keys ({', '.join(to_dict(default))}), got {raw!r}")
            kwargs[key] = from_dict(type(default), {**dataclasses.asdict(default), **(raw or {})})
        else:
            kwargs[key] = _coerce(key, raw, types[key])
    cfg = cls(**kwargs)
    validate = getattr(cfg, "validate", None)
    if validate:
        validate()
    return cfg


def read_yaml(path: str) -> dict[str, Any]:
    """A YAML mapping from a local path or ``s3://`` URI; a clear error when it is not one."""
    from amnet import storage

    try:
        text = storage.read_text(path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except OSError as exc:  # a folder, no permission...
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        loaded = parse_yaml(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)}); fix the file") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys")
    return loaded


def apply_overrides(values: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """``values`` with ``key=value`` items applied (values parsed as YAML; dotted keys reach nested
    mappings: ``model.backbone=alexnet``). Returns a new mapping."""
    out = copy.deepcopy(values)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        if not all(part.strip() for part in key.split(".")):
            raise ConfigError(f"override {item!r}: the key {key.strip()!r} has an empty part; write section.key=value")
        try:
            parsed = parse_yaml(raw) if raw else raw
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(exc)})") from None
        target = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            child = target.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
            target = child
        target[leaf] = parsed
    return out


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader whose scalars fail only as YAML errors: ``!!int abc``, a date that does not
    exist (2001-13-01) or an integer beyond 64 bits (Python may refuse even to print it) is a
    ConstructorError naming the value and its line, like any other malformed YAML."""


def _checked_scalar(tag: str, kind: str) -> None:
    """Register ``tag``'s safe constructor on :class:`_StrictLoader`, its failures as ConstructorErrors."""
    construct = yaml.SafeLoader.yaml_constructors[tag]

    def checked(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        try:
            value = construct(loader, node)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            problem = f"not {kind} ({str(exc).split(';')[0][:80]})"
        else:
            if not isinstance(value, int) or isinstance(value, bool) or -(2**63) <= value < 2**63:
                return value
            problem = "an integer beyond 64 bits"
        raise yaml.constructor.ConstructorError(None, None, f"{str(node.value)[:40]!r}: {problem}", node.start_mark)

    _StrictLoader.add_constructor(tag, checked)


for _tag, _kind in (("bool", "a boolean"), ("int", "an integer"), ("float", "a number"), ("timestamp", "a date")):
    _checked_scalar(f"tag:yaml.org,2002:{_tag}", _kind)


def parse_yaml(text: str) -> Any:
    """``text`` as YAML data (plain values only, as ``yaml.safe_load``); every problem is a
    ``yaml.YAMLError``, also a document nested too deeply to read."""
    try:
        loader = _StrictLoader(text)  # a SafeLoader: no Python objects
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def read_values(cls: type, path: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """The config values a stage command line gives: YAML file <- ``key=value`` overrides, unvalidated.

    The file may be a stage file (its top level holds ``cls``'s keys) or a run file as
    ``amnet run --local --config`` reads it (one section per stage): then ``cls``'s section is used.
    """
    values = read_yaml(path) if path else {}
    section = SECTION_OF.get(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if section and section not in names and isinstance(values.get(section), dict):
        values = values[section]
    return apply_overrides(values, overrides)


def load(cls: type[C], path: str | None = None, overrides: list[str] | None = None) -> C:
    """Defaults <- YAML file (a stage file or a run file's section) <- ``key=value`` overrides."""
    return from_dict(cls, read_values(cls, path, overrides))


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """A config (or nested mapping) as flat ``a.b`` keys, for MLflow params."""
    out: dict[str, Any] = {}
    for key, value in (to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)).items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """``cls``'s field annotations, resolved (``Literal[...]`` choices, ``tuple[int, ...]``, ``str | None``)."""
    return get_type_hints(cls)


def choices(kind: Any) -> tuple[str, ...] | None:
    """The values a ``Literal[...]`` annotation allows; None for any other annotation."""
    return get_args(kind) if get_origin(kind) is Literal else None


def optional_of(kind: Any) -> Any | None:
    """``X`` for an ``X | None`` annotation, else None."""
    args = get_args(kind)
    if get_origin(kind) in (Union, UnionType) and len(args) == 2 and NoneType in args:
        return args[0] if args[1] is NoneType else args[1]
    return None


NONE_WORDS = ("", "none", "None", "null")


def _coerce(key: str, raw: Any, kind: Any) -> Any:
    """``raw`` (from YAML or ``key=value``) as a value of annotation ``kind``; a ConfigError naming ``key``
    when it is not one. Strict: no bool as a number, no 1.5 as an int, no NaN or infinity, no unknown choice."""
    allowed = choices(kind)
    if allowed is not None:
        if not isinstance(raw, str) or raw not in allowed:
            raise ConfigError(f"unknown {key} {raw!r}; choose one of {_listing(allowed)}")
        return raw
    inner = optional_of(kind)
    if inner is not None:
        return None if raw is None or (isinstance(raw, str) and raw.strip() in NONE_WORDS) else _coerce(key, raw, inner)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if isinstance(raw, (list, dict)) or word not in TRUE_WORDS + FALSE_WORDS:  # a typo (flase) must not be False
            raise ConfigError(f"{key}: cannot use {raw!r} (expected a boolean: "
                              f"{', '.join(TRUE_WORDS)} or {', '.join(FALSE_WORDS)})")
        return word in TRUE_WORDS
    if get_origin(kind) is tuple:
        if isinstance(raw, (list, tuple)):
            items = list(raw)
        elif isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
            items = [part.strip() for part in str(raw).split(",")]  # --set ks=1,5,10
        else:
            raise ConfigError(f"{key}: cannot use {raw!r} (expected a list)")
        return tuple(_coerce(key, item, get_args(kind)[0]) for item in items)
    if kind not in _SCALARS:
        raise TypeError(f"{key}: no parser for the annotation {kind!r}")
    parse, expected = _SCALARS[kind]
    try:
        return parse(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer too large for a float
        raise ConfigError(f"{key}: cannot use {raw!r} (expected {expected})") from None


def _int(raw: Any) -> int:
    """An int from an int, a float with no fractional part (2.0) or an integer literal string ("8")."""
    if isinstance(raw, bool):
        raise TypeError
    if isinstance(raw, float):
        if not raw.is_integer():  # also NaN and infinity
            raise ValueError
        return int(raw)
    if isinstance(raw, (int, str)):
        return int(raw)
    raise TypeError


def _float(raw: Any) -> float:
    """A finite float from a number or a numeric string ("1e-3": PyYAML reads it as a string)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise TypeError
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError
    return value


def _str(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError
    return raw


_SCALARS: dict[Any, tuple[Any, str]] = {int: (_int, "int"), float: (_float, "a finite float"), str: (_str, "str")}


def _listing(allowed: tuple[str, ...]) -> str:
    return ", ".join(a if a else '""' for a in allowed)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line from a YAML error (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc) or type(exc).__name__
    return " ".join(f"{problem}{where}".split())


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0 (got {value}); set a positive value")


def _fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1] (got {value}); set a value between 0 and 1")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {_listing(allowed)}")


def _check_choices(cfg: Any) -> None:
    """Every ``Literal[...]`` field of ``cfg`` holds one of its values (also for configs built in code)."""
    for name, kind in field_types(type(cfg)).items():
        allowed = choices(kind)
        if allowed is not None:
            _choice(name, getattr(cfg, name), allowed)
