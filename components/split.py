"""Validate the dataset and write the paper-protocol splits as Parquet shards (§5.1)."""

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def split_dataset(dataset_uri: str, dataset_digest: str, dataset_rows: int, config: dict, parent_run_id: str,
                  split: Output[Dataset], metrics: Output[Metrics]):
    """Dataset folder or s3:// prefix -> attr_train / gallery / queries / triplet_pool shards; the
    fingerprint (``dataset_digest``, ``dataset_rows``) is part of the cache key and goes to split.json."""
    from amnet.steps.results import log_results
    from amnet.steps.split import run_step

    log_results(metrics, run_step(dataset_uri, split.path, config, parent_run_id, dataset_digest=dataset_digest,
                                  dataset_rows=dataset_rows))
