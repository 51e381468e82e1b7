"""The run file: one nested YAML for ``amnet run --local``, ``amnet pipeline submit`` and the schedule file.

Run-level keys (``dataset``, ``variants``, ``attribute_baseline``, ``image_baseline``, ``experiment``,
``seeds``) plus one section per
stage (``split``, ``pretrain``, ``prototypes``, ``train``, ``featurize``, ``evaluate``, ``register``) whose
keys are that stage's config dataclass fields (:mod:`amnet.config`, the only place defaults live).
Everything is validated here, before anything is submitted or run: an unknown key or a bad value is
an error naming the key and the valid ones. :func:`pipeline_arguments` turns the file into the
pipeline's parameters (``dataset_uri``, ``split_config``, ...), each section passed to its stage only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from amnet import config as cfgmod
from amnet.errors import AmnetError, ConfigError
from amnet.names import TRAINED_VARIANTS
from amnet.steps.variants import variant_items

RUN_KEYS = ("dataset", "variants", "attribute_baseline", "image_baseline", "experiment", "seeds")
SECTIONS: dict[str, type] = {section: cls for cls, section in cfgmod.SECTION_OF.items()}
PIPELINE_VARIANT_KEYS = {"train": "variant", "evaluate": "variant"}  # set per ParallelFor iteration


@dataclass(frozen=True)
class RunConfig:
    """A validated run file: run-level values and one config mapping per stage (only the keys given)."""

    dataset: str | None = None
    variants: tuple[str, ...] = TRAINED_VARIANTS
    attribute_baseline: bool = True
    experiment: str = "amnet"
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: int = 1  # train each variant with this many seeds (train.seed, train.seed + 1, ...)
    image_baseline: bool = True  # also score plain visual search with the amnet model (query unmanipulated)

    def variant_items(self) -> list[dict[str, Any]]:
        """What the pipeline's variant ParallelFor iterates over: variants x seeds (:func:`variant_items`)."""
        return variant_items(self.variants, self.seeds, int(self.sections.get("train", {}).get("seed", 0)))

    def stage(self, name: str):
        """The resolved config dataclass of stage ``name`` (defaults <- this file's section)."""
        return resolve_section(name, self.sections.get(name, {}))

    def pipeline_arguments(self) -> dict[str, Any]:
        """Arguments of :func:`amnet_pipeline.amnet_pipeline.amnet_pipeline` (``dataset_uri`` when given)."""
        args: dict[str, Any] = {"variants": list(self.variants), "attribute_baseline": self.attribute_baseline,
                                "image_baseline": self.image_baseline, "experiment": self.experiment}
        if self.seeds != 1:  # the pipeline parameter's default is 1
            args["seeds"] = self.seeds
        if self.dataset:
            args["dataset_uri"] = self.dataset
        for name in SECTIONS:
            args[f"{name}_config"] = dict(self.sections.get(name, {}))
        return args


def resolve_section(name: str, section: dict[str, Any]):
    """Stage ``name``'s config dataclass from a run file's section; the per-variant key (set by the
    pipeline's loop) is filled with the first variant so the rest of the section can be checked."""
    fixed = PIPELINE_VARIANT_KEYS.get(name)
    return cfgmod.from_dict(SECTIONS[name], {**section, **({fixed: TRAINED_VARIANTS[0]} if fixed else {})})


def parse(values: dict[str, Any], where: str = "run config") -> RunConfig:
    """Check a run file's mapping; raises :class:`AmnetError` naming the key and the valid ones."""
    if not isinstance(values, dict):
        raise AmnetError(f"{where}: expected a mapping of run keys and stage sections")
    valid = [*RUN_KEYS, *SECTIONS]
    unknown = [k for k in values if k not in valid]
    if unknown:
        raise AmnetError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; valid: {', '.join(valid)}")
    sections: dict[str, dict[str, Any]] = {}
    for name, cls in SECTIONS.items():
        section = values.get(name) or {}
        if not isinstance(section, dict):
            raise AmnetError(f"{where}: {name} must be a section of {cls.__name__} keys, got {section!r}")
        fixed = PIPELINE_VARIANT_KEYS.get(name)
        if fixed and fixed in section:
            raise AmnetError(f"{where}: {name}.{fixed} is set by the pipeline for each variant; list the variants "
                             f"to train in the run-level `variants` key instead")
        try:
            resolve_section(name, section)
        except ConfigError as exc:
            raise AmnetError(f"{where}: {name}: {exc}") from None
        sections[name] = section
    variants = values.get("variants", list(TRAINED_VARIANTS))
    if isinstance(variants, str):
        variants = [v.strip() for v in variants.split(",") if v.strip()]
    if not isinstance(variants, list) or not variants or any(v not in TRAINED_VARIANTS for v in variants):
        raise AmnetError(f"{where}: variants must be a non-empty list of {', '.join(TRAINED_VARIANTS)} "
                         f"(got {values.get('variants')!r})")
    baseline = values.get("attribute_baseline", True)
    if not isinstance(baseline, bool):
        raise AmnetError(f"{where}: attribute_baseline must be true or false (got {baseline!r})")
    image_baseline = values.get("image_baseline", True)
    if not isinstance(image_baseline, bool):
        raise AmnetError(f"{where}: image_baseline must be true or false (got {image_baseline!r}); true also "
                         "scores plain visual search with the amnet model (the query image unchanged)")
    seeds = values.get("seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise AmnetError(f"{where}: seeds must be an integer >= 1 (got {seeds!r}); it trains each variant that "
                         "many times (train.seed, train.seed + 1, ...) and reports mean ± sd across seeds")
    for key in ("dataset", "experiment"):
        if key in values and (not isinstance(values[key], str) or not values[key].strip()):
            raise AmnetError(f"{where}: {key} must be a non-empty string (got {values[key]!r})")
    return RunConfig(values.get("dataset"), tuple(variants), baseline, values.get("experiment", "amnet"), sections,
                     seeds, image_baseline)


def load(path: str | None = None, overrides: list[str] | None = None, base: dict[str, Any] | None = None,
         where: str | None = None) -> RunConfig:
    """``base`` <- the run file at ``path`` <- ``--set KEY=VALUE`` items (dotted: ``train.epochs=2``)."""
    values = dict(base or {})
    if path:
        try:
            values.update(cfgmod.read_yaml(path))
        except ConfigError as exc:
            raise AmnetError(str(exc)) from None
    try:
        values = cfgmod.apply_overrides(values, overrides)
    except ConfigError as exc:
        raise AmnetError(f"--set: {exc}") from None
    return parse(values, where or path or "--set")


def help_text() -> str:
    """What a run file holds, for ``--help`` epilogs."""
    return ("run file / --set keys: dataset, variants (e.g. '[amnet,no_memory]'), attribute_baseline, "
            "image_baseline (plain visual search with the amnet model; default true), experiment, "
            "seeds (train each variant with N seeds; default 1), "
            "and one section per stage: " + ", ".join(f"{n}.KEY ({c.__name__})" for n, c in SECTIONS.items())
            + "; e.g. --set train.epochs=2 --set pretrain.model.backbone=alexnet (see configs/demo.yaml)")
