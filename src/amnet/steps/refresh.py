"""Stage: refresh the served gallery from a changed catalogue without retraining.

The champion's servable model (``models:/amnet@champion``, or a local servable folder) carries its
gallery features with each image's content digest. The catalogue (a dataset or a split) is digested,
only new or changed images are featurized, removed ones dropped, unchanged vectors kept byte for byte,
and the index updated (:mod:`amnet.retrieval.refresh`). Before anything is registered the refreshed
searcher is checked: its index's recall@20 against exact search reaches ``min_recall``, and a few
unchanged and added gallery images queried by id come back first. Then the same weights with the new
gallery become a new version of the registered model, and the champion aliases move to it
(:mod:`amnet.ops.registry.refresh`). ``amnet search`` / ``amnet serve`` pick it up through the alias.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from amnet import storage
from amnet.config import FeaturizeConfig, RefreshConfig
from amnet.errors import AmnetError
from amnet.ops.tracking.runs import tracking_enabled
from amnet.steps.cli_args import base_parser, cli_config, print_result
from amnet.steps.settings import stage_config

log = logging.getLogger(__name__)

FEATURES_DIR = "features"  # the refreshed feature artifact + index, inside the stage's output
CATALOGUE_DIR = "catalogue"  # a dataset catalogue's images as a split's gallery, inside the stage's output
RESULT_JSON = "refresh_result.json"


def known_queries(searcher, ids: list[str], n: int, seed: int = 0) -> list[str]:
    """Of ``n`` seeded picks among ``ids``, those a query by id (no change) does not return first; a
    duplicate image at distance 0 counts as itself."""
    if n <= 0 or not ids:
        return []
    rng = np.random.default_rng(seed)
    picks = [ids[i] for i in rng.choice(len(ids), size=min(n, len(ids)), replace=False)]
    failed = []
    for image_id in picks:
        results = searcher.search(image_id, {}, k=1, exclude_query=False)
        if not results or (results[0].image_id != image_id and results[0].distance > 1e-4):
            failed.append(image_id)
    return failed


def sanity_check(model_file: str, features: str, gallery: str, summary: dict, added: list[str],
                 unchanged: list[str], cfg: RefreshConfig) -> list[str]:
    """What is wrong with the refreshed gallery (empty: it may be served): the index recall and the
    known queries of the module docstring, searched as ``amnet search`` would (features + gallery split)."""
    from amnet.search.searcher import Searcher

    problems = []
    recall = summary["index"].get("refresh_recall_at_20", summary["index"].get("recall_at_20"))
    recall = 1.0 if recall is None else float(recall)
    if recall < cfg.min_recall:
        problems.append(f"index recall@20 {recall:.4f} < min_recall {cfg.min_recall}")
    searcher = Searcher.load(model_file, features=features, gallery=gallery)
    for label, ids in (("unchanged", unchanged), ("added", added)):
        failed = known_queries(searcher, ids, cfg.known_queries)
        if failed:
            problems.append(f"{label} images not found first by id: {', '.join(failed)}")
    return problems


def refresh(model: str, catalogue: str, out: str, cfg: RefreshConfig, featurize_cfg: FeaturizeConfig,
            parent_run_id: str = "") -> dict:
    """The stage's body: refresh, check, register (see the module docstring) into ``out``: ``features/``
    (the feature artifact + index) and, for a dataset catalogue, ``catalogue/`` (its images as a split's
    gallery). Returns the counts, ``checked`` (0/1), ``registered`` (the new version, 0 for none) and
    ``promoted`` (0/1)."""
    from amnet.data.catalogue import is_split, scan_catalogue, write_gallery
    from amnet.model_store import load_model
    from amnet.ops.registry import refresh as registry
    from amnet.ops.registry import servable
    from amnet.retrieval.refresh import diff_digests, recorded_digests, refresh_features
    from amnet.runtime import match_torch_threads, pick_device

    match_torch_threads()
    features_out, gallery = storage.join(out, FEATURES_DIR), catalogue
    with tempfile.TemporaryDirectory(prefix="amnet-refresh-") as tmp:
        source = registry.resolve_source(model, tmp)
        features = servable.attached_features(source.root)
        if features is None:
            raise AmnetError(f"{model}: the model has no gallery attached; featurize a gallery with it first")
        recorded = recorded_digests(features)
        scan = scan_catalogue(catalogue, recorded)
        device = pick_device()
        loaded = load_model(source.root, device)
        summary = refresh_features(features, catalogue, loaded, device, features_out, featurize_cfg,
                                   cfg.rebuild_fraction, scan=scan)
        if not is_split(catalogue):
            gallery = write_gallery(scan, storage.join(out, CATALOGUE_DIR))
        diff = diff_digests(recorded, dict(zip(scan.rows["image_id"], scan.rows["digest"], strict=True)))
        problems = sanity_check(source.model_file, features_out, gallery, summary, diff.added, diff.unchanged, cfg)
        counts = {k: summary[k] for k in ("added", "removed", "changed", "unchanged")}
        result: dict[str, Any] = {**counts, "count": summary["count"], "quarantined": summary["quarantined"],
                                  "seconds": summary["seconds"], "featurize_seconds": summary["featurize_seconds"],
                                  "checked": float(not problems), "registered": 0, "promoted": 0.0}
        if problems:
            log.error("refreshed gallery failed its checks, nothing registered: %s", "; ".join(problems))
        elif source.version is None or not tracking_enabled():
            log.info("refreshed gallery in %s (a local model or tracking off: nothing registered)", out)
        else:
            done = registry.register_refresh(source, features_out, gallery, counts, cfg.model_name, cfg.promote,
                                             parent_run_id, {"model": model, "catalogue": catalogue}, out)
            result.update(registered=int(done["version"]), promoted=float(done["promoted"]))
            log.info("%s v%s: %s", cfg.model_name, done["version"], "; ".join(done["reasons"]) or "registered")
        report = json.dumps({**result, "problems": problems}, indent=2)
        storage.write_text(storage.join(out, RESULT_JSON), report + "\n")
        if problems:
            raise AmnetError("refreshed gallery failed its checks: " + "; ".join(problems))
        return result


def run_step(model: str, catalogue: str, out: str, config: Mapping[str, Any] | None = None,
             featurize_config: Mapping[str, Any] | None = None, parent_run_id: str = "") -> dict:
    """Champion's servable model (``models:/NAME@ALIAS`` or a folder) + catalogue -> refreshed gallery
    features and index in ``out``, registered as a new version with the same weights (see the module doc)."""
    cfg = stage_config(RefreshConfig, config)
    featurize_cfg = stage_config(FeaturizeConfig, featurize_config)
    return refresh(model, catalogue, out, cfg, featurize_cfg, parent_run_id)


def main(argv: list[str] | None = None) -> int:
    p = base_parser("amnet step refresh", "Refresh the champion's gallery from a changed catalogue without "
                    "retraining: featurize only new or changed images, drop removed ones, update the index, "
                    "check it, register the same weights with the new gallery and move the champion alias.",
                    config=RefreshConfig)
    p.add_argument("--model", default="models:/amnet@champion",
                   help="registered model to refresh (default: %(default)s) or a servable model folder")
    p.add_argument("--catalogue", required=True,
                   help="the current catalogue: a dataset folder / s3:// prefix, or a split")
    p.add_argument("--out", required=True, help="folder for features/ (feature shards + index) and catalogue/")
    args = p.parse_args(argv)
    print_result(run_step(args.model, args.catalogue, args.out, cli_config(RefreshConfig, args),
                          parent_run_id=args.parent_run_id), as_json=args.json)
    return 0


if __name__ == "__main__":
    from amnet.logs import setup

    setup()
    raise SystemExit(main())
