"""Refresh the champion's gallery from a changed catalogue between retrainings (same weights, new gallery)."""

from amnet_components.images import PROJECT_IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def refresh_gallery(model_uri: str, catalogue_uri: str, catalogue_digest: str, config: dict, featurize_config: dict,
                    refreshed: Output[Dataset], metrics: Output[Metrics]):
    """Registered model (``models:/amnet@champion``) + catalogue -> only new / changed images featurized,
    removed ones dropped, index updated and checked, registered as a new version with the same weights;
    the champion alias moves to it. ``catalogue_digest``: the fingerprint stage's digest (lineage)."""
    from amnet.steps.refresh import run_step
    from amnet.steps.results import log_results

    refreshed.metadata["catalogue_digest"] = catalogue_digest
    log_results(metrics, run_step(model_uri, catalogue_uri, refreshed.path, config, featurize_config))
