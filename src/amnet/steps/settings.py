"""A stage's settings: its config dataclass from the mapping a component or command line gives, and the
scalar part of its result (what is logged as metrics).

A stage's ``run_step(..., config=...)`` is its one code path: the KFP component and the CLI ``main``
both only parse their inputs and call it. ``config`` is a mapping of the stage config's keys
(nested for nested configs, as the run file's section holds them); the dataclass supplies defaults.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, TypeVar

from amnet import config as cfgmod
from amnet.errors import ConfigError

C = TypeVar("C")


def stage_config(cls: type[C], config: Mapping[str, Any] | None, **fixed: Any) -> C:
    """``cls`` from defaults <- ``config``; ``fixed`` keys (the variant a pipeline loop sets) win, and
    ``config`` may not contradict them."""
    values = dict(config or {})
    for key, value in fixed.items():
        if key in values and values[key] != value:
            raise ConfigError(f"{key} is set by the pipeline ({value!r}), not by the config ({values[key]!r}); "
                              "choose variants with the run-level `variants` list")
        values[key] = value
    return cfgmod.from_dict(cls, values)


def scalars(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in result.items()
            if isinstance(v, numbers.Number) and not isinstance(v, bool)}
