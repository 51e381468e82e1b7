"""Stage: evaluation (§5.1): top-k accuracy and NDCG@k for one variant."""

from __future__ import annotations

import os

from amnet.config import EvaluateConfig
from amnet.evaluate import run_evaluate
from amnet.steps.common import base_parser, print_result, resolve, run_tracked


def run_step(split: str, model: str, features: str, out: str, variant: str, params: dict,
             parent_run_id: str = "", progress: bool = True) -> dict:
    cfg = resolve(EvaluateConfig, {**params, "variant": variant})
    return run_tracked(f"evaluate-{variant}", cfg,
                       lambda log: run_evaluate(split, model, features, out, cfg, progress), parent_run_id,
                       {"amnet.variant": variant}, [os.path.join(out, "metrics.json")],
                       io={"split": split, "model": model, "features": features, "out": out})


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step evaluate", "Manipulate each query of SPLIT/queries, search the featurized "
                    "gallery (L2 as in the paper: exact below 50k gallery images, PQ fast-scan + exact re-ranking "
                    "above, override with --set index=exact|ivf|pq; the choice and its recall are recorded) and "
                    "compute top-k accuracy (k = 1..50) and NDCG@k.", config=EvaluateConfig)
    p.add_argument("--split", required=True, help="output of `amnet data split`")
    p.add_argument("--model", required=True, help="the model that featurized the gallery")
    p.add_argument("--features", required=True, help="output of `amnet step featurize`")
    p.add_argument("--variant", default="amnet", choices=["amnet", "no_memory", "no_ranking", "attribute_based"])
    p.add_argument("--out", required=True, help="folder for metrics.json + per_query.parquet")
    args = p.parse_args(argv)
    cfg = resolve(EvaluateConfig, {"variant": args.variant}, args.config, args.overrides)
    print_result(run_tracked(f"evaluate-{cfg.variant}", cfg, lambda log: run_evaluate(
        args.split, args.model, args.features, args.out, cfg, not args.quiet), args.parent_run_id,
        io={"split": args.split, "model": args.model, "features": args.features, "out": args.out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
