"""The AMNet pipeline: wiring only (stages, data flow, GPUs, secrets, retries, caching).

Shape::

    start-parent-run (MLflow parent, tagged with the KFP run)           caching off
    amnet-stages(parent_run_id)                                        nested pipeline
      exit handler -> finish-parent-run (FINISHED / FAILED)            caching off
        stage-params -> split-dataset -> pretrain-attribute-cnn -> compute-prototypes
        if attribute_baseline:  featurize + evaluate the attribute CNN ("attribute_based")
        for variant in variants:  train-amnet -> featurize-gallery -> evaluate-retrieval
        register-model(Collected models/evaluations/features)          MLflow registry gate
        build-report(Collected(evaluations) [+ baseline evaluation] + decision)  HTML + Markdown + Metrics

Two KFP constraints shape it. An exit task may not consume another task's output, so the stages live
in a nested pipeline whose *input* is the parent run id: the exit task reads that input. And
``dsl.Collected`` cannot cross into a ``dsl.If`` group (KFP 2.17 compiler error), so each branch of
the baseline condition holds its own variant loop and report; both branches are the same wiring.
"""

from dataclasses import dataclass, field
from typing import Any

from amnet_components import (
    build_report,
    compute_prototypes,
    evaluate_retrieval,
    featurize_gallery,
    finish_parent_run,
    pretrain_attribute_cnn,
    register_model,
    split_dataset,
    stage_params,
    start_parent_run,
    train_amnet,
)
from amnet_components.images import PROJECT_IMAGE
from kfp import dsl, kubernetes
from kfp.dsl import PipelineTask

PIPELINE_NAME = "amnet"
TRAINED_VARIANTS = ["amnet", "no_memory", "no_ranking"]
UPSTREAM = ""  # parent run id given to cacheable upstream stages (see amnet_stages)

# Secret data key -> environment variable, per secret (see manifests/).
S3_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}
S3_OPTIONAL_KEYS = {
    "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",  # SeaweedFS / MinIO; absent on AWS S3
    "AWS_DEFAULT_REGION": "AWS_DEFAULT_REGION",
    "MLFLOW_S3_ENDPOINT_URL": "MLFLOW_S3_ENDPOINT_URL",
}
MLFLOW_KEYS = {
    "MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD",
}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class CompileOptions:
    """Cluster settings fixed when the pipeline is compiled (not run parameters).

    Secrets: ``s3_secret`` holds ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` (required) and
    optionally ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, ``MLFLOW_S3_ENDPOINT_URL``;
    ``mlflow_secret`` optionally holds ``MLFLOW_TRACKING_URI`` (+ username / password). Each key
    becomes the environment variable of the same name in every task. Only names reach the YAML.
    """

    use_gpu: bool = True
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: tuple[dict[str, Any], ...] = (GPU_TOLERATION,)
    s3_secret: str = "amnet-s3"
    mlflow_secret: str = "amnet-mlflow"
    retries: int = 3  # on pretrain / train / featurize (pre-emptible GPU nodes)
    parallelism: int = 0  # concurrent variants (0 = all at once)
    shm_size: str = "8Gi"  # /dev/shm for DataLoader workers on GPU tasks


def build_pipeline(options: CompileOptions | None = None):
    """Return the ``@dsl.pipeline`` function with ``options`` applied to its tasks."""
    options = options or CompileOptions()

    def infra(task: PipelineTask) -> PipelineTask:
        """Credentials and tracking endpoint as env, from Kubernetes secrets, on every task."""
        kubernetes.use_secret_as_env(task, options.s3_secret, S3_KEYS)
        kubernetes.use_secret_as_env(task, options.s3_secret, S3_OPTIONAL_KEYS, optional=True)
        kubernetes.use_secret_as_env(task, options.mlflow_secret, MLFLOW_KEYS, optional=True)
        return task

    def accelerated(task: PipelineTask) -> PipelineTask:
        """GPU request, placement, shared memory and retries for the training / featurization tasks."""
        infra(task)
        if options.use_gpu:
            task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
            for key, value in sorted(options.gpu_node_selector.items()):
                kubernetes.add_node_selector(task, key, value)
            for toleration in options.gpu_tolerations:
                kubernetes.add_toleration(task, **toleration)
        else:
            task.set_container_image(PROJECT_IMAGE)
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                                   size_limit=options.shm_size)
        if options.retries:
            task.set_retry(num_retries=options.retries, backoff_duration="60s", backoff_factor=2.0,
                           backoff_max_duration="3600s")
        return task

    def evaluate_model(split, model, variant, parent_run_id) -> tuple[PipelineTask, PipelineTask]:
        """featurize(model) -> evaluate(variant); returns both tasks."""
        features = accelerated(featurize_gallery(split=split, model=model, variant=variant, params={},
                                                 parent_run_id=parent_run_id))
        evaluation = infra(evaluate_retrieval(split=split, model=model, features=features.outputs["features"],
                                              variant=variant, params={}, parent_run_id=parent_run_id))
        return features, evaluation

    def trained_variants(variants, split, attr_model, prototypes, train_params, parent_run_id, gate):
        """ParallelFor over variants: train -> featurize -> evaluate; then the registry gate.

        Returns the collected evaluations and the register task (its decision goes into the report).
        """
        with dsl.ParallelFor(variants, parallelism=options.parallelism) as variant:
            model = accelerated(train_amnet(split=split, attr_model=attr_model, prototypes=prototypes,
                                            variant=variant, params=train_params,
                                            parent_run_id=parent_run_id))
            features, evaluation = evaluate_model(split, model.outputs["model"], variant, parent_run_id)
        evaluations = dsl.Collected(evaluation.outputs["evaluation"])  # one Collected per consumer (KFP 2.17)
        register = infra(register_model(
            models=dsl.Collected(model.outputs["model"]),
            evaluations=dsl.Collected(evaluation.outputs["evaluation"]),
            features=dsl.Collected(features.outputs["features"]), split=split, parent_run_id=parent_run_id,
            **gate)).set_caching_options(False)
        return evaluations, register

    @dsl.pipeline(name="amnet-stages", description="The AMNet stages under one MLflow parent run.")
    def amnet_stages(
        parent_run_id: str,
        dataset_uri: str,
        per_value: int,
        gallery_size: int,
        num_queries: int,
        backbone: str,
        image_size: int,
        pretrain_epochs: int,
        epochs: int,
        steps_per_epoch: int,
        lr: float,
        lam: float,
        margin: float,
        batch_size: int,
        seed: int,
        variants: list,
        attribute_baseline: bool,
        model_name: str,
        gate_metrics: str,
        gate_margin: float,
        gate_rule: str,
    ):
        finish = infra(finish_parent_run(parent_run_id=parent_run_id)).set_caching_options(False)
        with dsl.ExitHandler(finish):
            params = infra(stage_params(
                per_value=per_value, gallery_size=gallery_size, num_queries=num_queries, backbone=backbone,
                image_size=image_size, pretrain_epochs=pretrain_epochs, epochs=epochs,
                steps_per_epoch=steps_per_epoch, lr=lr, lam=lam, margin=margin, batch_size=batch_size,
                seed=seed)).set_caching_options(False)  # cheap; a cached copy's JSON types would change
            # downstream cache keys (ints read back as floats), so it always runs fresh.
            # Upstream stages get no parent run id: it changes every run and would defeat KFP caching.
            # On a cache miss they log standalone MLflow runs (tagged amnet.stage); on a hit, nothing.
            split = infra(split_dataset(dataset_uri=dataset_uri, params=params.outputs["split"],
                                        parent_run_id=UPSTREAM)).outputs["split"]
            attr_model = accelerated(pretrain_attribute_cnn(
                split=split, params=params.outputs["pretrain"], parent_run_id=UPSTREAM)).outputs["model"]
            prototypes = infra(compute_prototypes(split=split, attr_model=attr_model, params={},
                                                  parent_run_id=UPSTREAM)).outputs["prototypes"]
            gate = {"model_name": model_name, "gate_metrics": gate_metrics, "gate_margin": gate_margin,
                    "gate_rule": gate_rule}
            loop_args = (variants, split, attr_model, prototypes, params.outputs["train"], parent_run_id, gate)
            with dsl.If(attribute_baseline == True):  # noqa: E712 (a KFP condition, not a Python test)
                _, baseline = evaluate_model(split, attr_model, "attribute_based", UPSTREAM)
                evaluations, register = trained_variants(*loop_args)
                infra(build_report(evaluations=evaluations, parent_run_id=parent_run_id,
                                   baseline=baseline.outputs["evaluation"],
                                   decision=register.outputs["decision"]))
            with dsl.Else():
                evaluations, register = trained_variants(*loop_args)
                infra(build_report(evaluations=evaluations, parent_run_id=parent_run_id,
                                   decision=register.outputs["decision"]))

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="AMNet fashion search with attribute manipulation (CVPR 2017): split, pretrain, "
        "prototypes, train variants, featurize, evaluate, report; tracked in MLflow.",
    )
    def amnet_pipeline(
        dataset_uri: str,
        per_value: int = 200,
        gallery_size: int = 2000,
        num_queries: int = 300,
        backbone: str = "small",
        image_size: int = 64,
        pretrain_epochs: int = 15,
        epochs: int = 6,
        steps_per_epoch: int = 150,
        lr: float = 0.01,
        lam: float = 0.2,
        margin: float = 0.5,
        batch_size: int = 32,
        seed: int = 0,
        variants: list = TRAINED_VARIANTS,  # noqa: B006 (KFP reads the default; never mutated)
        attribute_baseline: bool = True,
        experiment: str = "amnet",
        model_name: str = "amnet",
        gate_metrics: str = "top20,ndcg20",
        gate_margin: float = 0.0,
        gate_rule: str = "all",
    ):
        start = infra(start_parent_run(experiment=experiment, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                       kfp_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER))
        start.set_caching_options(False)
        amnet_stages(
            parent_run_id=start.output, dataset_uri=dataset_uri, per_value=per_value,
            gallery_size=gallery_size, num_queries=num_queries, backbone=backbone, image_size=image_size,
            pretrain_epochs=pretrain_epochs, epochs=epochs, steps_per_epoch=steps_per_epoch, lr=lr, lam=lam,
            margin=margin, batch_size=batch_size, seed=seed, variants=variants,
            attribute_baseline=attribute_baseline, model_name=model_name, gate_metrics=gate_metrics,
            gate_margin=gate_margin, gate_rule=gate_rule)

    return amnet_pipeline


amnet_pipeline = build_pipeline()
