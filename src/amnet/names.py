"""Names every part of amnet shares: artifact file names, variants, config choices, metric columns, label codes.

Standard library only (a test checks it), so any layer may import it, ``models/`` included.
"""

from __future__ import annotations

# ----------------------------------------------------------------------------- artifact file names
MODEL_FILE = "model.pt"  # model artifact: tensors only, loads with weights_only=True (amnet.model_store)
CONFIG_FILE = "config.yaml"  # the resolved stage config, next to the stage's outputs
SPLIT_JSON = "split.json"  # split summary: counts, quarantine, the split config
ATTRIBUTES_JSON = "attributes.json"  # attribute vocabulary (dataset, split)
PROTOTYPES_FILE = "prototypes.pt"  # memory initialisation (C x Q)
FEATURES_JSON = "features.json"  # feature artifact metadata: dim, count, variant, precision
METRICS_JSON = "metrics.json"  # evaluation: variant, headline metrics, curves, timing
PER_QUERY = "per_query.parquet"  # evaluation: one row per query
EXAMPLES = "examples.parquet"  # evaluation: retrieval examples (Fig. 7)
DECISION_JSON = "decision.json"  # registry gate: promoted or not, and why
NOT_EVALUATED_JSON = "not_evaluated.json"  # an evaluation output left empty on purpose, and why (amnet.steps.evaluate)
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
TRAIN_STATE = "train_state.pt"  # resumable training checkpoint (amnet.train.checkpoint)

# ------------------------------------------------------------------------------------- model URIs
MODEL_URI_SCHEMES = ("models:/", "runs:/")  # MLflow model URIs (resolved in amnet.ops.registry.model_uri)

# ------------------------------------------------------------------------------------- lineage tags
TAG_DATASET_DIGEST = "amnet.dataset_digest"  # MLflow tag (and model.pt extra key) naming the data's fingerprint

# ---------------------------------------------------------------------------------------- variants
TRAINED_VARIANTS = ("amnet", "no_memory", "no_ranking")  # AMNet and its two ablations (§5.2)
ATTRIBUTE_BASED = "attribute_based"  # the attribute-CNN retrieval baseline (§5.2)
# plain visual search: a trained AMNet model's own representation of the query image, no change applied
IMAGE_ONLY = "image_only"
IMAGE_ONLY_MODEL = TRAINED_VARIANTS[0]  # the trained variant whose model (and gallery features) image_only uses
BASELINES = (ATTRIBUTE_BASED, IMAGE_ONLY)  # evaluated for comparison; never registered
VARIANTS = (*TRAINED_VARIANTS, *BASELINES)  # also the paper's order in every table

# ---------------------------------------------------------------------------------- config choices
# Defined here once: amnet.config validates the settings against them, the layers that act on a
# setting (the model modules, the search index, the split) check and use the same tuples.
NEGATIVE_MINING = ("sampled", "batch_hard", "semi_hard")  # TrainConfig.negatives (amnet.models.losses)
MEMORY_READS = ("mean", "sum")  # TrainConfig.memory_read (amnet.models.memory)
ACTIVATIONS = ("none", "relu")  # TrainConfig.manipulator_activation (amnet.models.manipulator)
RETRIEVAL_SPACES = ("representation", "attributes", "combined")  # TrainConfig.retrieval (amnet.models.amnet)
INDEX_KINDS = ("exact", "ivf", "pq", "hnsw", "auto")  # EvaluateConfig.index (amnet.retrieval.index)
# EvaluateConfig.queries (the query set scored) -> the split's folder of its shards (amnet.data.split)
QUERY_SHARDS = {"test": "queries", "val": "val_queries"}
QUERY_SETS = tuple(QUERY_SHARDS)  # ("test", "val")

# ---------------------------------------------------------------------------------- metric columns
# (metrics.json key, label) of the headline table: run summary, report, `amnet runs compare`.
METRIC_COLUMNS = (
    ("top1", "top-1"), ("top5", "top-5"), ("top10", "top-10"), ("top20", "top-20"), ("top50", "top-50"),
    ("ndcg20", "NDCG@20"), ("two_top20", "2-attr top-20"), ("two_ndcg20", "2-attr NDCG@20"),
)
REGISTRY_METRICS = ("top20", "ndcg20", "two_top20")  # copied onto registered model versions as tags
# The exact-target yardstick of composed-image retrieval (CSS / TIRG Recall@1, FashionIQ Recall@10/50): the
# rank of the query's one exact target image (the split's ``target_id``) in the full gallery ranking.
# Present only when the split's queries carry target ids; a second headline table, beside METRIC_COLUMNS.
EXACT_COLUMNS = (
    ("recall1", "R@1"), ("recall10", "R@10"), ("recall50", "R@50"), ("median_rank", "median rank"),
    ("two_recall10", "2-attr R@10"),
)
EXACT_KS = (1, 5, 10, 50)  # recall{k} in metrics.json, per number of changes (PREFIX: "", "two_", ...)
# every exact-target metric with an interval: recall1 .. recall50, median_rank, and the two-attribute ones
EXACT_METRICS = tuple(f"{p}{m}" for p in ("", "two_") for m in (*(f"recall{k}" for k in EXACT_KS), "median_rank"))
LOWER_IS_BETTER = ("median_rank",)  # metric name suffixes where a smaller value is better

# ------------------------------------------------------------------------------------- label codes
MISSING = -1  # label code of a missing attribute value (shards, losses, metrics)


def variant_order(variant: str) -> int:
    """Sort key: the paper's order first, unknown variants after."""
    return VARIANTS.index(variant) if variant in VARIANTS else len(VARIANTS)
