"""Fingerprint the dataset: the digest that makes the split's cache key follow the data, not its URI."""

from typing import NamedTuple

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl
from kfp.dsl import Metrics, Output


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def fingerprint_dataset(dataset_uri: str,
                        metrics: Output[Metrics]) -> NamedTuple("Outputs", [("digest", str), ("rows", int)]):
    """Dataset folder or s3:// prefix -> content digest + manifest rows (parameters: cache keys hold them)."""
    from collections import namedtuple

    from amnet.steps.fingerprint import run_step
    from amnet.steps.results import log_results

    result = run_step(dataset_uri)
    log_results(metrics, {k: result[k] for k in ("rows", "images", "missing", "image_bytes", "seconds")})
    return namedtuple("Outputs", ["digest", "rows"])(result["digest"], result["rows"])
