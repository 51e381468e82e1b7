"""The AMNet pipeline: wiring only (stages, data flow, GPUs, secrets, retries, caching).

Shape::

    start-parent-run (MLflow parent, tagged with the KFP run; Markdown link to it)   caching off
    amnet-stages(parent_run_id)                                        nested pipeline
      exit handler -> finish-parent-run (FINISHED / FAILED)            caching off
        fingerprint-dataset (digest + rows: the data's version)        caching off
        split-dataset(digest) -> pretrain-attribute-cnn -> compute-prototypes   cached unless the data changed
        link-upstream-runs (their MLflow runs, or links to them, under the parent)   caching off
        plan-featurization (ceil(gallery shards / featurize.shards_per_task) groups)
        if attribute_baseline:  featurize + evaluate the attribute CNN ("attribute_based") -> link-upstream-runs
        for (variant, seed) in expand-variants(variants, seeds):  train-amnet -> for group in plan: featurize-gallery
                                  -> build-search-index (merged features + index, built once) -> evaluate-retrieval
                                     (+ if image_baseline and variant == amnet: image_only, same task and index)
                                  -> link-upstream-runs (this item's stage runs under the parent)   caching off
        reevaluate-champion (GPU: the champion on this split) -> register-model(Collected models/evaluations/
            features)                                                  MLflow registry gate (trained variants only)
        build-report(Collected(evaluations) + Collected(image evaluations) [+ baseline evaluation] + decision)
                                                    HTML + Markdown + Metrics; onto the parent run: caching off

Two KFP constraints shape it. An exit task may not consume another task's output, so the stages live
in a nested pipeline whose *input* is the parent run id: the exit task reads that input. And
``dsl.Collected`` cannot cross into a ``dsl.If`` group (KFP 2.17 compiler error), so each branch of
the baseline condition holds its own variant loop and report; both branches are the same wiring.

The image-only baseline (plain visual search with the amnet model's unmanipulated query vector) is no
task of its own: a task inside a ``dsl.If`` in the variant loop cannot be collected (kfp.local 2.17
fails on the iterations that skip it). Each evaluate task of the loop gets ``image_only`` (the
``image_baseline`` parameter) and always has a second output, ``image_evaluation``: the amnet variant's
task scores image_only there with the same model, features and index; every other writes only a
``not_evaluated.json``, which the report skips. Only the ``evaluation`` outputs reach register-model.

One parameter path: each stage takes one config mapping (``split_config``, ``train_config``, ...; keys
of that stage's dataclass in :mod:`amnet.config`, which alone holds the defaults), passed only to
that stage, so a change to one stage's config never invalidates another stage's cache.
``amnet_pipeline.run_config`` builds these arguments from the nested run file and validates them
before anything is submitted.

Caching: every task that does real work (split, pretraining, prototypes, training, featurization, index,
evaluation) is cacheable and gets no per-run value: no parent run id, no KFP run id (either would make it
miss the cache every run). So a rerun on unchanged data and settings is served from the cache. Those
stages log top-level MLflow runs; an uncached link-upstream-runs task per group of them (the upstream
stages, the attribute baseline, each variant x seed item) nests them under the pipeline run's parent run,
or, for a cache hit, a short link run pointing at the run that made the artifact
(``amnet.steps.parent.link_upstream``). The start task tags the parent run with the KFP run (its UI page,
or kfp.local's run folder) and writes a Markdown link to the parent run for the KFP UI.

Data version: the fingerprint's digest is a *parameter* of the split, so KFP's cache key (which holds
parameter values) changes exactly when the data does; downstream stages follow through the split
artifact. Retries resume: training and featurization keep their state under ``checkpoint_root``
(``amnet.steps.checkpoints.checkpoint_dir``), keyed by the task's inputs and config (shared by the
runs that share them: exactly when the work is the same).
Every task requests and is limited in CPU and memory (``CompileOptions``).
"""

from dataclasses import dataclass, field
from typing import Any

from amnet_components import (
    build_report,
    build_search_index,
    compute_prototypes,
    evaluate_retrieval,
    expand_variants,
    featurize_gallery,
    fingerprint_dataset,
    finish_parent_run,
    link_upstream_runs,
    plan_featurization,
    pretrain_attribute_cnn,
    reevaluate_champion,
    register_model,
    split_dataset,
    start_parent_run,
    train_amnet,
    train_amnet_trainjob,
)
from amnet_components.images import GPU_IMAGE, PROJECT_IMAGE
from kfp import dsl, kubernetes
from kfp.dsl import PipelineTask

from amnet.errors import AmnetError
from amnet.names import ATTRIBUTE_BASED, TRAINED_VARIANTS

PIPELINE_NAME = "amnet"
UPSTREAM = ""  # parent run id (and run id) given to the cacheable stages: no per-run value (see amnet_stages)

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
KFP_UI_KEYS = {"KF_PIPELINES_UI_ENDPOINT": "KF_PIPELINES_UI_ENDPOINT", "KF_PIPELINES_ENDPOINT": "KF_PIPELINES_ENDPOINT"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
RESOURCE_FIELDS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")
_MEMORY_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Ki": 2**10, "Mi": 2**20,
                 "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity(value: str, kind: str) -> float:
    """A Kubernetes CPU (``500m``, ``2``) or memory (``512Mi``, ``8Gi``, ``1G``) quantity as a number;
    ValueError when it is not one."""
    text = str(value).strip()
    if kind == "cpu":
        number, scale = (text[:-1], 1e-3) if text.endswith("m") else (text, 1.0)
    else:
        unit = next((u for u in sorted(_MEMORY_UNITS, key=len, reverse=True) if u and text.endswith(u)), "")
        number, scale = text[: len(text) - len(unit)], _MEMORY_UNITS[unit]
    amount = float(number)  # ValueError for anything else
    if not amount > 0 or number.strip() != number or number.lower() in ("nan", "inf"):
        raise ValueError(text)
    return amount * scale


@dataclass(frozen=True)
class CompileOptions:
    """Cluster settings fixed when the pipeline is compiled (not run parameters).

    Secrets: ``s3_secret`` holds ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` (required) and
    optionally ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, ``MLFLOW_S3_ENDPOINT_URL``;
    ``mlflow_secret`` optionally holds ``MLFLOW_TRACKING_URI`` (+ username / password), and
    ``KF_PIPELINES_UI_ENDPOINT`` / ``KF_PIPELINES_ENDPOINT`` (the KFP UI's address: the parent run's tag
    ``amnet.kfp_run_url``, read by start-parent-run only). Each key becomes the environment variable of
    the same name in every task that reads it. Only names reach the YAML.
    """

    use_gpu: bool = True
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: tuple[dict[str, Any], ...] = (GPU_TOLERATION,)
    s3_secret: str = "amnet-s3"
    mlflow_secret: str = "amnet-mlflow"
    retries: int = 3  # on pretrain / train / featurize / reevaluate (pre-emptible GPU nodes)
    parallelism: int = 0  # concurrent variants (0 = all at once)
    featurize_parallelism: int = 0  # concurrent featurization groups per model (0 = all at once)
    shm_size: str = "8Gi"  # /dev/shm for DataLoader workers on GPU tasks
    # where retried tasks find their resumable state ("" = next to the pipeline root of each task's output)
    checkpoint_root: str = ""
    # every CPU task (split, prototypes, evaluate, register, report, the MLflow parent run)
    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "2Gi"
    memory_limit: str = "8Gi"
    # the accelerated tasks (pretrain, train, featurize, reevaluate-champion), also with --no-gpu
    gpu_task_cpu_request: str = "4"
    gpu_task_cpu_limit: str = "8"
    gpu_task_memory_request: str = "16Gi"
    gpu_task_memory_limit: str = "32Gi"
    # GPUs of the pretraining and training pods: one torchrun rank per GPU inside the same component
    train_gpus: int = 1
    # > 1: AMNet training runs as a Kubeflow Trainer TrainJob on that many nodes (train_gpus GPUs each)
    train_nodes: int = 1

    def __post_init__(self) -> None:
        for name in ("train_gpus", "train_nodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise AmnetError(f"{name} must be a whole number >= 1 (got {value!r})")
        root = self.checkpoint_root
        if not isinstance(self.featurize_parallelism, int) or self.featurize_parallelism < 0:
            raise AmnetError(f"featurize_parallelism must be a whole number >= 0 (0 = every group at once); got "
                             f"{self.featurize_parallelism!r}")
        if root and not (root.startswith("s3://") and len(root) > len("s3://")) and not root.startswith("/"):
            raise AmnetError(f"checkpoint_root {root!r} must be an s3:// prefix (a local folder for kfp.local), "
                             "or empty for the pipeline root of each task's output")
        for prefix in ("", "gpu_task_"):
            for kind in ("cpu", "memory"):
                values = {}
                for end in ("request", "limit"):
                    name = f"{prefix}{kind}_{end}"
                    try:
                        values[end] = quantity(getattr(self, name), kind)
                    except ValueError:
                        example = "500m or 2" if kind == "cpu" else "512Mi or 8Gi"
                        raise AmnetError(f"{name} {getattr(self, name)!r} is not a Kubernetes {kind} quantity "
                                         f"(e.g. {example})") from None
                if values["request"] > values["limit"]:
                    raise AmnetError(f"{prefix}{kind}_request {getattr(self, f'{prefix}{kind}_request')!r} is above "
                                     f"{prefix}{kind}_limit {getattr(self, f'{prefix}{kind}_limit')!r}")

    def resources(self, gpu_task: bool) -> dict[str, str]:
        """``{cpu_request, cpu_limit, memory_request, memory_limit}`` of a CPU or an accelerated task."""
        prefix = "gpu_task_" if gpu_task else ""
        return {name: getattr(self, prefix + name) for name in RESOURCE_FIELDS}

    def trainjob_cluster(self) -> dict[str, Any]:
        """The TrainJob's nodes (``amnet.ops.cluster.trainjob.Cluster`` as a mapping): image, nodes, GPUs, the GPU
        tasks' CPU / memory limits per node, placement, and the same secrets by name and key."""
        secret_env = [{"env": env, "secret": secret, "key": key, "optional": optional}
                      for secret, keys, optional in ((self.s3_secret, S3_KEYS, False),
                                                     (self.s3_secret, S3_OPTIONAL_KEYS, True),
                                                     (self.mlflow_secret, MLFLOW_KEYS, True))
                      for key, env in keys.items()]
        return {"image": GPU_IMAGE if self.use_gpu else PROJECT_IMAGE, "num_nodes": self.train_nodes,
                "gpus_per_node": self.train_gpus if self.use_gpu else 0, "cpu": self.gpu_task_cpu_limit,
                "memory": self.gpu_task_memory_limit, "shm_size": self.shm_size, "secret_env": secret_env,
                "node_selector": dict(self.gpu_node_selector) if self.use_gpu else {},
                "tolerations": [dict(t) for t in self.gpu_tolerations] if self.use_gpu else []}


def with_infra(task: PipelineTask, options: CompileOptions, gpu_task: bool = False) -> PipelineTask:
    """Credentials and tracking endpoint as env, from Kubernetes secrets, and CPU / memory requests and
    limits: what every task of every amnet pipeline gets."""
    kubernetes.use_secret_as_env(task, options.s3_secret, S3_KEYS)
    kubernetes.use_secret_as_env(task, options.s3_secret, S3_OPTIONAL_KEYS, optional=True)
    kubernetes.use_secret_as_env(task, options.mlflow_secret, MLFLOW_KEYS, optional=True)
    res = options.resources(gpu_task)
    task.set_cpu_request(res["cpu_request"]).set_cpu_limit(res["cpu_limit"])
    task.set_memory_request(res["memory_request"]).set_memory_limit(res["memory_limit"])
    return task


def on_gpu_node(task: PipelineTask, options: CompileOptions, gpus: int = 1,
                image: str | None = None) -> PipelineTask:
    """With GPUs: ``gpus`` of them, the GPU node selector and tolerations (and ``image``, when the component's
    own is not the CUDA one); without: the CPU image."""
    if options.use_gpu:
        if image:
            task.set_container_image(image)
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)
        for key, value in sorted(options.gpu_node_selector.items()):
            kubernetes.add_node_selector(task, key, value)
        for toleration in options.gpu_tolerations:
            kubernetes.add_toleration(task, **toleration)
    else:
        task.set_container_image(PROJECT_IMAGE)
    return task


def build_pipeline(options: CompileOptions | None = None):
    """Return the ``@dsl.pipeline`` function with ``options`` applied to its tasks."""
    options = options or CompileOptions()
    train_processes = options.train_gpus if options.use_gpu else 1  # one rank per GPU (torchrun launcher)

    def infra(task: PipelineTask, gpu_task: bool = False) -> PipelineTask:
        return with_infra(task, options, gpu_task)

    def accelerated(task: PipelineTask, gpus: int = 1) -> PipelineTask:
        """GPU request, placement, shared memory and retries for the training / featurization tasks."""
        on_gpu_node(infra(task, gpu_task=True), options, gpus)
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                                   size_limit=options.shm_size)
        if options.retries:
            task.set_retry(num_retries=options.retries, backoff_duration="60s", backoff_factor=2.0,
                           backoff_max_duration="3600s")
        return task

    def evaluate_model(split, model, variant, configs, plan,
                       image_only=None) -> tuple[PipelineTask, PipelineTask, PipelineTask]:
        """featurize(model), fanned out over ``plan``'s shard groups -> build-index (merged features + the
        index, built once) -> evaluate(variant); returns (featurize, build-index, evaluate). Every task is
        cacheable: no parent run id, no run id (their MLflow runs are nested by link-upstream-runs).
        ``image_only`` (the trained variants' loop: the ``image_baseline`` parameter): the evaluate task also
        scores the image-only baseline when the model is the amnet variant's.

        Inside the group loop a featurize task gets the variant only as a constant: kfp.local (2.17)
        resolves an *outer* loop's item inside an inner loop to the inner item, so within the variants
        loop it passes "" and the task reads the variant from the model."""
        with dsl.ParallelFor(plan, parallelism=options.featurize_parallelism) as part:
            groups = accelerated(featurize_gallery(
                split=split, model=model, variant=variant if isinstance(variant, str) else "",
                config=configs["featurize"], parent_run_id=UPSTREAM, checkpoint_root=options.checkpoint_root,
                run_id=UPSTREAM, part=part))
        index = infra(build_search_index(features=dsl.Collected(groups.outputs["features"]), split=split, model=model,
                                         variant=variant, config=configs["evaluate"], parent_run_id=UPSTREAM))
        image = {} if image_only is None else {"image_only": image_only}
        evaluation = infra(evaluate_retrieval(split=split, model=model, features=index.outputs["index"],
                                              variant=variant, config=configs["evaluate"],
                                              parent_run_id=UPSTREAM, **image))
        return groups, index, evaluation

    def trained_variants(variants, split, attr_model, prototypes, configs, parent_run_id, plan, image_baseline):
        """ParallelFor over variants x seeds (``variants``: expand-variants' items): train -> featurize ->
        evaluate (+ image_only beside amnet when ``image_baseline``), all cacheable, then link-upstream-runs
        (uncached) nests the item's stage runs under ``parent_run_id``; then the registry gate.

        Returns the collected evaluations, the collected image-only outputs (one per item; the report skips
        the empty ones) and the register task (its decision goes into the report). The image-only outputs
        never reach the registry gate: only trained variants are candidates.
        """
        with dsl.ParallelFor(variants, parallelism=options.parallelism) as item:  # {"variant", "seed"} items
            variant = item.variant
            train_args = dict(split=split, attr_model=attr_model, prototypes=prototypes, variant=variant,
                              config=configs["train"], parent_run_id=UPSTREAM,
                              checkpoint_root=options.checkpoint_root, run_id=UPSTREAM, seed=item.seed)
            if options.train_nodes > 1:  # a Kubeflow Trainer TrainJob on many nodes, submitted from a CPU pod
                model = infra(train_amnet_trainjob(**train_args, cluster=options.trainjob_cluster()))
                if options.retries:  # a retry submits a new TrainJob, which resumes from the checkpoints
                    model.set_retry(num_retries=options.retries, backoff_duration="60s", backoff_factor=2.0,
                                    backoff_max_duration="3600s")
            else:
                model = accelerated(train_amnet(**train_args, processes=train_processes), gpus=options.train_gpus)
            groups, features, evaluation = evaluate_model(split, model.outputs["model"], variant, configs, plan,
                                                          image_only=image_baseline)
            # inside the loop: the item's own artifacts, the featurization groups collected from its inner loop
            infra(link_upstream_runs(parent_run_id=parent_run_id, model=model.outputs["model"],
                                     features=dsl.Collected(groups.outputs["features"]),
                                     index=features.outputs["index"], evaluation=evaluation.outputs["evaluation"],
                                     image_evaluation=evaluation.outputs["image_evaluation"]
                                     )).set_caching_options(False)
        evaluations = dsl.Collected(evaluation.outputs["evaluation"])  # one Collected per consumer (KFP 2.17)
        images = dsl.Collected(evaluation.outputs["image_evaluation"])
        # the champion's featurization (when it was scored on other data) is GPU work: its own task
        rescore = accelerated(reevaluate_champion(split=split, config=configs["register"],
                                                  featurize_config=configs["featurize"],
                                                  evaluate_config=configs["evaluate"])).set_caching_options(False)
        register = infra(register_model(
            models=dsl.Collected(model.outputs["model"]),
            evaluations=dsl.Collected(evaluation.outputs["evaluation"]),
            features=dsl.Collected(features.outputs["index"]), split=split, config=configs["register"],
            featurize_config=configs["featurize"], evaluate_config=configs["evaluate"],
            parent_run_id=parent_run_id, champion=rescore.outputs["champion"])).set_caching_options(False)
        return evaluations, images, register

    @dsl.pipeline(name="amnet-stages", description="The AMNet stages under one MLflow parent run.")
    def amnet_stages(
        parent_run_id: str,
        dataset_uri: str,
        variants: list,
        seeds: int,
        attribute_baseline: bool,
        image_baseline: bool,
        split_config: dict,
        pretrain_config: dict,
        prototypes_config: dict,
        train_config: dict,
        featurize_config: dict,
        evaluate_config: dict,
        register_config: dict,
    ):
        configs = {"train": train_config, "featurize": featurize_config, "evaluate": evaluate_config,
                   "register": register_config}
        finish = infra(finish_parent_run(parent_run_id=parent_run_id)).set_caching_options(False)
        with dsl.ExitHandler(finish):
            # The data's version: never cached, its digest is a parameter of the split (the cache key).
            fingerprint = infra(fingerprint_dataset(dataset_uri=dataset_uri)).set_caching_options(False)
            # Cacheable stages get no parent run id: it changes every run and would defeat KFP caching.
            # On a cache miss they log top-level MLflow runs (tagged amnet.stage); every pipeline run then
            # nests them, or a short link run per cached artifact, under its parent run (link-upstream-runs).
            split = infra(split_dataset(dataset_uri=dataset_uri, dataset_digest=fingerprint.outputs["digest"],
                                        dataset_rows=fingerprint.outputs["rows"], config=split_config,
                                        parent_run_id=UPSTREAM)).outputs["split"]
            attr_model = accelerated(pretrain_attribute_cnn(
                split=split, config=pretrain_config, parent_run_id=UPSTREAM,
                checkpoint_root=options.checkpoint_root, processes=train_processes),
                gpus=options.train_gpus).outputs["model"]
            prototypes = infra(compute_prototypes(split=split, attr_model=attr_model, config=prototypes_config,
                                                  parent_run_id=UPSTREAM)).outputs["prototypes"]
            infra(link_upstream_runs(parent_run_id=parent_run_id, split=split, attr_model=attr_model,
                                     prototypes=prototypes)).set_caching_options(False)
            # the featurization fan-out: ceil(gallery shards / featurize.shards_per_task) groups, planned once
            plan = infra(plan_featurization(split=split, config=featurize_config)).output
            # variants x training seeds: [{"variant": "amnet", "seed": 0}, ...] (seeds = 1: one per variant)
            items = infra(expand_variants(variants=variants, seeds=seeds, train_config=train_config)).output
            loop_args = (items, split, attr_model, prototypes, configs, parent_run_id, plan, image_baseline)
            with dsl.If(attribute_baseline == True):  # noqa: E712 (a KFP condition, not a Python test)
                baseline_groups, baseline_features, baseline = evaluate_model(split, attr_model, ATTRIBUTE_BASED,
                                                                              configs, plan)
                infra(link_upstream_runs(parent_run_id=parent_run_id,
                                         features=dsl.Collected(baseline_groups.outputs["features"]),
                                         index=baseline_features.outputs["index"],
                                         evaluation=baseline.outputs["evaluation"])).set_caching_options(False)
                evaluations, images, register = trained_variants(*loop_args)
                infra(build_report(evaluations=evaluations, parent_run_id=parent_run_id,
                                   baseline=baseline.outputs["evaluation"], decision=register.outputs["decision"],
                                   image_evaluations=images)).set_caching_options(False)
            with dsl.Else():
                evaluations, images, register = trained_variants(*loop_args)
                infra(build_report(evaluations=evaluations, parent_run_id=parent_run_id,
                                   decision=register.outputs["decision"],
                                   image_evaluations=images)).set_caching_options(False)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="AMNet fashion search with attribute manipulation (CVPR 2017): split, pretrain, "
        "prototypes, train variants, featurize, evaluate, register, report; tracked in MLflow.",
    )
    def amnet_pipeline(
        dataset_uri: str,
        variants: list = list(TRAINED_VARIANTS),  # noqa: B006, B008 (KFP reads the default; never mutated)
        seeds: int = 1,  # training seeds per variant (train.seed, train.seed + 1, ...): mean ± sd in the report
        attribute_baseline: bool = True,
        image_baseline: bool = True,  # also score plain visual search with the amnet model (no manipulation)
        experiment: str = "amnet",
        split_config: dict = {},  # noqa: B006 (each: that stage's config keys; {} = the dataclass defaults)
        pretrain_config: dict = {},  # noqa: B006
        prototypes_config: dict = {},  # noqa: B006
        train_config: dict = {},  # noqa: B006
        featurize_config: dict = {},  # noqa: B006
        evaluate_config: dict = {},  # noqa: B006
        register_config: dict = {},  # noqa: B006
    ):
        start = infra(start_parent_run(
            experiment=experiment, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            kfp_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER, pipeline_root=dsl.PIPELINE_ROOT_PLACEHOLDER,
            dataset_uri=dataset_uri, variants=variants,
            attribute_baseline=attribute_baseline, split_config=split_config, pretrain_config=pretrain_config,
            prototypes_config=prototypes_config, train_config=train_config, featurize_config=featurize_config,
            evaluate_config=evaluate_config, register_config=register_config, seeds=seeds,
            image_baseline=image_baseline))
        start.set_caching_options(False)
        # the KFP UI address for the parent run's link to this run (optional keys; kfp's own variable names)
        kubernetes.use_secret_as_env(start, options.mlflow_secret, KFP_UI_KEYS, optional=True)
        amnet_stages(
            parent_run_id=start.outputs["Output"], dataset_uri=dataset_uri, variants=variants, seeds=seeds,
            attribute_baseline=attribute_baseline, image_baseline=image_baseline, split_config=split_config,
            pretrain_config=pretrain_config, prototypes_config=prototypes_config, train_config=train_config,
            featurize_config=featurize_config, evaluate_config=evaluate_config, register_config=register_config)

    return amnet_pipeline


amnet_pipeline = build_pipeline()
