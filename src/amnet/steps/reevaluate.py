"""Stage: the current champion scored on this run's evaluation data (``reevaluate-champion``, a GPU task).

Its ``champion.json`` feeds ``register-model``, so the featurization a champion from other data needs
runs on the GPU node next to training instead of inside the small CPU register task.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from amnet.config import EvaluateConfig, FeaturizeConfig, RegisterConfig, read_values
from amnet.ops.registry import champion
from amnet.ops.tracking.runs import tracking_enabled
from amnet.runtime import match_torch_threads
from amnet.steps.cli_args import base_parser, cli_config, print_result
from amnet.steps.settings import stage_config

log = logging.getLogger(__name__)


def run_step(split: str, out: str, config: Mapping[str, Any] | None = None,
             featurize_config: Mapping[str, Any] | None = None,
             evaluate_config: Mapping[str, Any] | None = None) -> dict:
    """``out/champion.json``: the version and gate metrics on ``split``'s evaluation data of the champion
    of the split's catalogue vocabulary, scored with the run's featurize / evaluate configs (as the
    challenger is). A champion of another vocabulary is not scored (the file says it is incomparable).
    Without tracking there is no registry, hence no champion: the file says so."""
    cfg = stage_config(RegisterConfig, config)
    featurize_cfg = stage_config(FeaturizeConfig, featurize_config)
    evaluate_cfg = stage_config(EvaluateConfig, evaluate_config, variant=cfg.variant)
    match_torch_threads()
    if not tracking_enabled():
        result = {"model_name": cfg.model_name, "version": None, "scores": {}, "reevaluated": False,
                  "reason": "tracking off: no registry"}
        champion.write(out, result)
    else:
        result = champion.reevaluate_champion(split, out, cfg, featurize_cfg, evaluate_cfg)
    log.info("champion of %r: %s (%s)", cfg.model_name, result["version"] or "none", result["reason"])
    return {"reevaluated": float(result["reevaluated"]), **{k: float(v) for k, v in result["scores"].items()}}


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step reevaluate", "Score the current champion of the registered model for "
                    "SPLIT's catalogue vocabulary on its evaluation data (featurize + evaluate when its recorded "
                    "scores are for other data; a champion of another vocabulary is not scored) and write "
                    "OUT/champion.json, which `amnet step register --champion OUT` uses. Needs MLFLOW_TRACKING_URI.",
                    config=RegisterConfig)
    p.add_argument("--split", required=True, help="output of `amnet data split` (the evaluation data)")
    p.add_argument("--out", required=True, help="folder for champion.json")
    args = p.parse_args(argv)
    print_result(run_step(args.split, args.out, cli_config(RegisterConfig, args),
                          read_values(FeaturizeConfig, args.config), read_values(EvaluateConfig, args.config)),
                 as_json=args.json)
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
