"""Stage: build-index: merge the featurization fan-out's feature shards and build the search index once.

Evaluation, the registry's servable model and the searcher load the stored index; nobody rebuilds it.
The index kind follows the evaluate config (``index``: exact while one exact query stays cheap, PQ fast-scan +
exact re-ranking above, hnsw by name with efSearch tuned on the queries); an approximate index records its
recall@20 against exact search on the split's evaluation queries, manipulated as evaluation manipulates them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from amnet.config import EvaluateConfig


def plan(split: str, config: Mapping[str, Any] | None) -> list[dict[str, int]]:
    """The featurization fan-out of ``split``'s gallery: ``[{"group": g, "groups": G}, ...]``,
    G = ceil(gallery shards / ``shards_per_task``) (cheap: no torch import)."""
    from amnet import config as cfgmod
    from amnet import storage
    from amnet.config import FeaturizeConfig
    from amnet.data.shards import shard_groups

    per_task = cfgmod.from_dict(FeaturizeConfig, dict(config or {})).shards_per_task
    return shard_groups(storage.join(split, "gallery"), per_task)


def build(parts: Sequence[str], split: str, model: str, out: str, cfg: EvaluateConfig) -> dict:
    """Merge ``parts`` into ``out``, then build and store the index there; returns the index summary."""
    from amnet.data import shards
    from amnet.data.split import query_set
    from amnet.model_store import load_model
    from amnet.retrieval.evaluate import query_vectors
    from amnet.retrieval.feature_index import build_feature_index, merge_parts
    from amnet.retrieval.index import resolve_kind
    from amnet.runtime import pick_device

    merged = merge_parts(list(parts), out)
    queries = None
    # recall is measured (and hnsw tuned) for an approximate index only
    if resolve_kind(cfg.index, merged["count"], merged["dim"]) != "exact":
        device = pick_device()
        loaded = load_model(model, device)
        frame = shards.read_shards(query_set(split, cfg.queries))  # the queries evaluation scores
        queries, _ = query_vectors(loaded, frame, cfg.batch_size, device, str(merged.get("precision") or "fp32"))
    summary = build_feature_index(out, out, kind=cfg.index, queries=queries)
    return {"index_count": summary["count"], "index_seconds": summary["seconds"], "index_kind": summary["kind"],
            **({"index_recall_at_20": summary["recall_at_20"]} if summary["recall_at_20"] is not None else {}),
            "featurize_parts": len(parts), "featurize_images_per_s": merged["images_per_s"]}


def run_step(parts: Sequence[str], split: str, model: str, out: str, config: Mapping[str, Any] | None = None,
             parent_run_id: str = "", variant: str = "", attach: bool = True) -> dict:
    """Feature artifacts of one model (the fan-out's groups) -> one feature artifact + its index in
    ``out``; tracked as ``index-<variant>``; ``attach``: the whole gallery goes with the model's
    servable MLflow model (when it has one)."""
    from amnet.model_store import model_variant
    from amnet.steps.featurize import attach_gallery
    from amnet.steps.settings import stage_config
    from amnet.steps.tracked import run_tracked

    cfg = stage_config(EvaluateConfig, {k: v for k, v in dict(config or {}).items() if k != "variant"})
    variant = variant or model_variant(model)
    return run_tracked(f"index-{variant}", cfg, lambda log: build(parts, split, model, out, cfg), parent_run_id,
                       {"amnet.variant": variant}, after=attach_gallery(split, model, out) if attach else None,
                       io={"split": split, "model": model, "out": out})


def main(argv: list[str] | None = None) -> int:
    from amnet.steps.cli_args import base_parser, cli_config, print_result

    p = base_parser("amnet step index", "Merge the feature artifacts of one model (the groups of `amnet step "
                    "featurize --group G --groups N`) into --out and build the search index there once (exact "
                    "below 50k vectors, PQ fast-scan + exact re-ranking above; --set index=exact|pq). "
                    "`amnet step evaluate --features OUT` and the searcher load it.", config=EvaluateConfig)
    p.add_argument("--features", required=True, nargs="+", help="feature artifacts (outputs of featurize)")
    p.add_argument("--split", required=True, help="the split they were computed from (its queries measure recall)")
    p.add_argument("--model", required=True, help="the model that featurized the gallery")
    p.add_argument("--out", required=True, help="folder for the merged feature shards + index.faiss")
    args = p.parse_args(argv)
    print_result(run_step(args.features, args.split, args.model, args.out, cli_config(EvaluateConfig, args),
                          args.parent_run_id), as_json=args.json)
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
