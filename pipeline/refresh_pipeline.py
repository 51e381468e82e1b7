"""The refresh pipeline: the champion's gallery brought up to date with the catalogue, without retraining.

Shape::

    fingerprint-dataset (the catalogue's digest: lineage; a catalogue that did not change is cheap anyway)
      -> refresh-gallery (diff by per-image digest, featurize new / changed images, drop removed ones,
         update the index, check it, register the same weights with the new gallery, move the alias)

Wiring only, like :mod:`amnet_pipeline.amnet_pipeline`: the same secrets by name, resources and image.
Nothing is cached: each run reads the registry's current champion and the catalogue as they are now.
"""

from amnet_components import fingerprint_dataset, refresh_gallery
from amnet_components.images import GPU_IMAGE
from amnet_pipeline.amnet_pipeline import CompileOptions, on_gpu_node, with_infra
from kfp import dsl
from kfp.dsl import PipelineTask

REFRESH_PIPELINE_NAME = "amnet-refresh"
DEFAULT_MODEL = "models:/amnet@champion"


def build_refresh_pipeline(options: CompileOptions | None = None):
    """Return the refresh ``@dsl.pipeline`` function with ``options`` applied to its tasks."""
    options = options or CompileOptions()

    def infra(task: PipelineTask, gpu_task: bool = False) -> PipelineTask:
        return with_infra(task, options, gpu_task).set_caching_options(False)

    @dsl.pipeline(name=REFRESH_PIPELINE_NAME,
                  description="Refresh the champion's gallery from the current catalogue: featurize only new or "
                  "changed images, update the index, register the same weights with it, move the alias.")
    def amnet_refresh_pipeline(
        catalogue_uri: str,
        model_uri: str = DEFAULT_MODEL,
        refresh_config: dict = {},  # noqa: B006
        featurize_config: dict = {},  # noqa: B006
    ):
        fingerprint = infra(fingerprint_dataset(dataset_uri=catalogue_uri))
        refresh = infra(refresh_gallery(model_uri=model_uri, catalogue_uri=catalogue_uri,
                                        catalogue_digest=fingerprint.outputs["digest"], config=refresh_config,
                                        featurize_config=featurize_config), gpu_task=True)
        # featurizing the changed images: the CUDA image on a GPU node, as featurize-gallery
        on_gpu_node(refresh, options, image=GPU_IMAGE)

    return amnet_refresh_pipeline


def refresh_arguments(items: list[str], base: dict | None = None) -> dict:
    """The refresh pipeline's arguments from ``key=value`` items: ``catalogue_uri`` (or ``dataset``),
    ``model_uri``, and ``refresh.KEY`` / ``featurize.KEY`` config keys; validated before anything runs."""
    from amnet import config as cfgmod
    from amnet.config import FeaturizeConfig, RefreshConfig
    from amnet.errors import AmnetError

    args: dict = {"model_uri": DEFAULT_MODEL, "refresh_config": {}, "featurize_config": {}, **(base or {})}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise AmnetError(f"--set {item!r}: expected KEY=VALUE")
        key = key.strip()
        if key in ("catalogue_uri", "catalogue", "dataset"):
            args["catalogue_uri"] = value
        elif key == "model_uri":
            args["model_uri"] = value
        elif key.split(".", 1)[0] in ("refresh", "featurize") and "." in key:
            section, name = key.split(".", 1)
            args[f"{section}_config"] = cfgmod.apply_overrides(args[f"{section}_config"], [f"{name}={value}"])
        else:
            raise AmnetError(f"--set {key}: the refresh pipeline takes catalogue_uri, model_uri, refresh.KEY and "
                             "featurize.KEY")
    if not args.get("catalogue_uri"):
        raise AmnetError("no catalogue: pass --set catalogue_uri=s3://bucket/prefix (a dataset or a split)")
    cfgmod.from_dict(RefreshConfig, args["refresh_config"])
    cfgmod.from_dict(FeaturizeConfig, args["featurize_config"])
    return args
