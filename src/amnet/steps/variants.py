"""The trained variants x training seeds the pipeline's variant loop iterates over (cheap: no torch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from amnet.errors import AmnetError


def variant_items(variants: Sequence[str], seeds: int = 1, base_seed: int = 0) -> list[dict[str, Any]]:
    """Variants x seeds as the items of the pipeline's variant ParallelFor, variant-major:
    ``[{"variant": "amnet", "seed": 0}, {"variant": "amnet", "seed": 1}, {"variant": "no_memory", "seed": 0}, ...]``.

    Seeds are ``base_seed .. base_seed + seeds - 1`` (``base_seed`` = the run's ``train.seed``), so
    ``seeds: 1`` trains exactly what a run without the key trains. Each item's seed is the training seed
    (``TrainConfig.seed``); the evaluation records it (``metrics.json`` ``seed``) and the report, the
    closing table and ``amnet runs compare`` show mean ± sd across seeds.
    """
    seeds = int(seeds)  # KFP hands JSON numbers as floats
    if seeds < 1:
        raise AmnetError(f"seeds must be >= 1 (got {seeds})")
    return [{"variant": str(v), "seed": int(base_seed) + i} for v in variants for i in range(seeds)]


def expand(variants: Sequence[str], seeds: int, train_config: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """:func:`variant_items` with the base seed read from the run's train config (default 0)."""
    return variant_items(variants, seeds, int((train_config or {}).get("seed", 0)))
