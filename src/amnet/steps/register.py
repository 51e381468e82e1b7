"""Stage: register the trained model in the MLflow Model Registry and gate the ``champion`` alias."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from amnet.config import EvaluateConfig, FeaturizeConfig, RegisterConfig, read_values
from amnet.ops.registry import gate
from amnet.ops.tracking.runs import tracking_enabled
from amnet.runtime import match_torch_threads
from amnet.steps.cli_args import base_parser, cli_config, print_result
from amnet.steps.settings import stage_config

log = logging.getLogger(__name__)


def run_step(models: list[str], evaluations: list[str], features: list[str], split: str, out: str,
             config: Mapping[str, Any] | None = None, parent_run_id: str = "",
             featurize_config: Mapping[str, Any] | None = None,
             evaluate_config: Mapping[str, Any] | None = None, champion: str = "") -> dict:
    """Trained variants' models, evaluations and features -> a registered version (alias ``challenger``;
    its catalogue vocabulary's champion when it passes the gate) and ``out/decision.json``. The result:
    ``promoted`` (0/1), ``version`` and ``compared_with`` (the champion's version, 0 for none).

    The featurize and evaluate configs are the run's own: a champion evaluated on other data is
    re-scored exactly as the challenger was, by the ``reevaluate-champion`` task when ``champion`` (its
    output folder) holds the scores, else here. Without tracking there is no registry: the decision says so.
    """
    cfg = stage_config(RegisterConfig, config)
    featurize_cfg = stage_config(FeaturizeConfig, featurize_config)
    evaluate_cfg = stage_config(EvaluateConfig, evaluate_config, variant=cfg.variant)
    match_torch_threads()
    if not tracking_enabled():
        gate.write_decision(out, {"model_name": cfg.model_name, "promoted": False,
                                      "reasons": ["tracking off: not registered"]})
        return {"promoted": 0.0}
    from amnet.ops.registry import champion as champion_scores

    decision = gate.run_register(models, evaluations, features, split, out, cfg, parent_run_id,
                                     featurize_cfg, evaluate_cfg, champion_scores.read(champion))
    log.info("%s [catalogue vocabulary %s: alias %s]", decision.summary(), decision.vocabulary[:8], decision.alias)
    return {"promoted": float(decision.promoted), "version": float(decision.version),
            "compared_with": float(decision.compared_with or 0)}


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step register", "Register the trained model of one variant (default amnet) in the "
                    "MLflow Model Registry with alias `challenger`, and move the champion of its catalogue vocabulary "
                    "(alias champion-<digest>; `champion` follows it when it serves this vocabulary) to it only when "
                    "it is at least as good on the same evaluation data (re-evaluating the champion when its data "
                    "differ). Needs MLFLOW_TRACKING_URI.", config=RegisterConfig)
    p.add_argument("--models", nargs="+", required=True, help="trained model folders (`amnet step train` outputs)")
    p.add_argument("--evaluations", nargs="+", required=True, help="their `amnet step evaluate` outputs")
    p.add_argument("--features", nargs="*", default=[], help="their `amnet step featurize` outputs")
    p.add_argument("--split", required=True, help="output of `amnet data split` (the evaluation data)")
    p.add_argument("--out", required=True, help="folder for decision.json")
    p.add_argument("--champion", default="", help="output of `amnet step reevaluate` (the champion's scores on "
                   "this split); without it the champion is re-scored here when needed")
    args = p.parse_args(argv)
    # a run file's featurize / evaluate sections: the champion is re-scored as the challenger was
    print_result(run_step(args.models, args.evaluations, args.features, args.split, args.out,
                          cli_config(RegisterConfig, args), args.parent_run_id,
                          read_values(FeaturizeConfig, args.config), read_values(EvaluateConfig, args.config),
                          args.champion), as_json=args.json)
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
