"""``amnet pipeline compile|submit|schedule``: the pipeline as YAML, a run, a recurring run.

Compile options (GPU placement, secret names, retries) are fixed in the YAML; the run's settings come
from one nested run file (``--config configs/demo.yaml``: dataset, variants, one section per stage;
:mod:`amnet_pipeline.run_config`) and ``--set KEY=VALUE`` overrides, validated before anything is sent.
``submit`` and ``schedule`` talk to a Kubeflow Pipelines API server through ``kfp.Client`` (``--host``,
default ``$KF_PIPELINES_ENDPOINT``, kfp's own variable); a bearer token comes from ``$KF_PIPELINES_TOKEN``
(or kfp's own auth: kube config, in-cluster service account) and is never printed. Both upload the
compiled YAML as a named version of the pipeline ``amnet`` (``<amnet version>-<content hash>``; an
identical YAML reuses its version) and run that version; ``schedule`` replaces a recurring run of the
same name in the experiment instead of adding a second one (the KFP API has no update for recurring
runs: the new one is created, then the old removed).
``submit`` prints the run id and the run's page in the KFP UI; ``--wait`` polls the run until it ends and
exits 0 only when it SUCCEEDED. A server that does not answer exits 4 (:class:`ServiceUnreachable`).
``--json`` (submit, schedule): one JSON document on stdout instead of the lines (``run_id``, ``url``, ...;
with ``--wait``, printed once the waiting is over).
"""

import argparse
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from typing import Any

from amnet.errors import EXIT_FAILED, EXIT_USAGE, AmnetError, ServiceUnreachable, exit_code, is_connection_error

log = logging.getLogger(__name__)
TOKEN_ENV = "KF_PIPELINES_TOKEN"
ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"  # kfp.Client's own default host
UI_ENDPOINT_ENV = "KF_PIPELINES_UI_ENDPOINT"  # kfp.Client's own UI address, when it differs from the API's
# a run in one of these states changes no more (kfp's wait_for_run_completion misses CANCELED and would
# wait for ever on a cancelled run)
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "ERROR")
POLL_SECONDS = 5.0
TOLERATION_KEYS = ("key", "operator", "value", "effect", "toleration_seconds")
TOLERATION_OPERATORS = ("Equal", "Exists")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
CRON_FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
CRON_FIELD_RE = re.compile(r"^[0-9A-Za-z*?/,\-]+$")
CRON_RANGES = {"second": (0, 59), "minute": (0, 59), "hour": (0, 23), "day-of-month": (1, 31),
               "month": (1, 12), "day-of-week": (0, 7)}  # 0 and 7 = Sunday



# ------------------------------------------------------------------------------------------ options


def _compile_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("compile options (fixed in the YAML)")
    g.add_argument("--no-gpu", action="store_true",
                   help="no GPU request: training and featurization run on CPU nodes in the CPU image")
    g.add_argument("--gpu-node-selector", action="append", default=[], metavar="LABEL=VALUE",
                   help="node label GPU tasks must match (repeatable), "
                   "e.g. cloud.google.com/gke-accelerator=nvidia-h100-80gb")
    g.add_argument("--gpu-toleration", action="append", default=[],
                   metavar="key=K[,operator=Exists][,value=V][,effect=E]",
                   help="toleration for GPU tasks (repeatable; replaces the default "
                   "key=nvidia.com/gpu,operator=Exists,effect=NoSchedule)")
    g.add_argument("--s3-secret", default="amnet-s3",
                   help="Kubernetes secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (+ AWS_ENDPOINT_URL)")
    g.add_argument("--mlflow-secret", default="amnet-mlflow", help="Kubernetes secret with MLFLOW_TRACKING_URI")
    g.add_argument("--retries", type=int, default=3,
                   help="retries of pretrain / train / featurize / reevaluate-champion tasks")
    g.add_argument("--train-gpus", type=int, default=1, metavar="N",
                   help="GPUs of each pretraining / training pod; the step starts one torchrun rank per GPU")
    g.add_argument("--train-nodes", type=int, default=1, metavar="N",
                   help="> 1: AMNet training runs as a Kubeflow Trainer TrainJob on N nodes with --train-gpus GPUs "
                   "each (the cluster needs Kubeflow Trainer and its torch-distributed runtime)")
    g.add_argument("--featurize-parallelism", type=int, default=0, metavar="N",
                   help="at most N featurization tasks of one model at once (0 = every group at once; the run "
                   "config's featurize.shards_per_task sets how many groups there are)")
    g.add_argument("--checkpoint-root", default="", metavar="URI",
                   help="s3:// prefix for resumable training / featurization state, keyed by run and task, so a "
                   "retried task resumes (default: next to the pipeline root of each task's output)")
    r = p.add_argument_group("resources (every task requests and is limited; Kubernetes quantities)")
    for prefix, tasks in (("", "CPU tasks"), ("gpu-task-", "pretrain / train / featurize / reevaluate tasks")):
        for name in ("cpu-request", "cpu-limit", "memory-request", "memory-limit"):
            default = getattr(_default_options(), (prefix + name).replace("-", "_"))
            r.add_argument(f"--{prefix}{name}", default=default, metavar="Q",
                           help=f"{name.replace('-', ' ')} of {tasks} (default: {default})")


def _default_options():
    from amnet_pipeline.amnet_pipeline import CompileOptions

    return CompileOptions()


def _parse_key_values(items: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AmnetError(f"{flag} {item!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def parse_toleration(text: str) -> dict[str, Any]:
    """``key=nvidia.com/gpu,operator=Exists,effect=NoSchedule`` -> ``kfp.kubernetes.add_toleration`` kwargs."""
    fields = _parse_key_values([part for part in text.split(",") if part.strip()], "--gpu-toleration")
    unknown = sorted(set(fields) - set(TOLERATION_KEYS))
    if unknown:
        raise AmnetError(f"--gpu-toleration {text!r}: unknown field(s) {', '.join(unknown)}; "
                         f"use {', '.join(TOLERATION_KEYS)}")
    if fields.get("operator", "Equal") not in TOLERATION_OPERATORS:
        raise AmnetError(f"--gpu-toleration {text!r}: operator must be one of {', '.join(TOLERATION_OPERATORS)}")
    if "effect" in fields and fields["effect"] not in TOLERATION_EFFECTS:
        raise AmnetError(f"--gpu-toleration {text!r}: effect must be one of {', '.join(TOLERATION_EFFECTS)}")
    out: dict[str, Any] = dict(fields)
    if "toleration_seconds" in out:
        try:
            out["toleration_seconds"] = int(out["toleration_seconds"])
        except ValueError:
            raise AmnetError(f"--gpu-toleration {text!r}: toleration_seconds must be an integer") from None
    return out


def compile_options(args: argparse.Namespace):
    """The ``CompileOptions`` the compile flags describe."""
    from amnet_pipeline.amnet_pipeline import GPU_TOLERATION, RESOURCE_FIELDS, CompileOptions

    if args.retries < 0:
        raise AmnetError(f"--retries must be >= 0 (got {args.retries})")
    tolerations = tuple(parse_toleration(t) for t in args.gpu_toleration) or (GPU_TOLERATION,)
    return CompileOptions(
        use_gpu=not args.no_gpu,
        gpu_node_selector=_parse_key_values(args.gpu_node_selector, "--gpu-node-selector"),
        gpu_tolerations=tolerations,
        s3_secret=args.s3_secret,
        mlflow_secret=args.mlflow_secret,
        retries=args.retries,
        checkpoint_root=args.checkpoint_root,
        train_gpus=args.train_gpus,
        train_nodes=args.train_nodes,
        featurize_parallelism=args.featurize_parallelism,
        **{prefix + name: getattr(args, prefix + name) for prefix in ("", "gpu_task_") for name in RESOURCE_FIELDS},
    )


def compile_pipeline(options, out: str, refresh: bool = False) -> None:
    """Write the pipeline YAML to ``out`` (atomically; the same inputs give the same bytes); ``refresh``:
    the gallery refresh pipeline (:mod:`amnet_pipeline.refresh_pipeline`) instead of the training one."""
    from amnet_pipeline.amnet_pipeline import build_pipeline
    from amnet_pipeline.refresh_pipeline import build_refresh_pipeline
    from kfp import compiler

    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".amnet-pipeline-", suffix=".yaml", dir=folder)
    os.close(fd)
    try:
        compiler.Compiler().compile((build_refresh_pipeline if refresh else build_pipeline)(options), tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ------------------------------------------------------------------------------------- run params


def run_arguments(config: str | None, items: list[str], experiment: str | None = None,
                  base: dict[str, Any] | None = None, require_dataset: bool = True) -> dict[str, Any]:
    """Pipeline arguments from ``base`` <- the run file ``config`` <- ``--set`` items, validated."""
    from amnet_pipeline import run_config

    start = {**({"experiment": experiment} if experiment else {}), **(base or {})}
    rc = run_config.load(config, items, base=start)
    if require_dataset and not rc.dataset:
        raise AmnetError("no dataset: set `dataset:` in the run file or pass --set dataset=s3://bucket/prefix")
    return rc.pipeline_arguments()


def validate_cron(expr: str) -> str:
    """A Kubeflow (robfig/cron) expression: 6 fields, seconds first. Raises with a fix-it message."""
    fields = expr.split()
    example = "'0 0 3 * * 0' = Sundays at 03:00:00"
    if len(fields) != 6:
        hint = f"; prepend the seconds: '0 {expr.strip()}'" if len(fields) == 5 else ""
        raise AmnetError(f"--cron {expr!r} has {len(fields)} field(s); Kubeflow needs 6, seconds first "
                         f"({' '.join(CRON_FIELDS)}), e.g. {example}{hint}")
    for name, value in zip(CRON_FIELDS, fields, strict=True):
        if not CRON_FIELD_RE.match(value):
            raise AmnetError(f"--cron {expr!r}: {name} field {value!r} has characters cron does not accept")
        low, high = CRON_RANGES[name]
        for number in re.findall(r"\d+", value):
            if not low <= int(number) <= high:
                raise AmnetError(f"--cron {expr!r}: {name} value {number} is outside {low}-{high}")
    return " ".join(fields)


def _host(p: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """``--host``, else ``$KF_PIPELINES_ENDPOINT``; neither is a one-line usage error (exit 2)."""
    host = (args.host or os.environ.get(ENDPOINT_ENV, "")).strip()
    if not host:
        p.exit(EXIT_USAGE, f"{p.prog}: error: no Kubeflow Pipelines endpoint: pass --host URL or set "
               f"${ENDPOINT_ENV}\n")
    return host


def run_url(host: str, run_id: str) -> str:
    """The run's page in the Kubeflow Pipelines UI (kfp's pattern ``{host}/#/runs/details/{run_id}``;
    ``$KF_PIPELINES_UI_ENDPOINT`` when the UI is served elsewhere than the API)."""
    base = (os.environ.get(UI_ENDPOINT_ENV) or host).strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        base = "https://" + base  # as kfp.Client does for a host without a scheme
    return f"{base}/#/runs/details/{run_id}"


@contextlib.contextmanager
def kfp_errors(host: str):
    """Talking to the KFP API server: kfp's own prints ("Experiment details: ...") go to the debug log,
    not stdout (which holds only the command's result); failures become one line each: no answer ->
    ServiceUnreachable (exit 4), an HTTP error answer -> AmnetError naming the status (exit 3)."""
    kfp_says = io.StringIO()
    try:
        with contextlib.redirect_stdout(kfp_says):
            yield
    except AmnetError:
        raise
    except Exception as exc:
        from kfp_server_api import ApiException

        status = getattr(exc, "status", None) if isinstance(exc, ApiException) else None
        if is_connection_error(exc) or status in (502, 503, 504):
            why = str(getattr(exc, "reason", None) or exc).strip().rsplit(": ", 1)[-1] or type(exc).__name__
            raise ServiceUnreachable(f"Kubeflow Pipelines API at {host} is not reachable ({why}); check --host "
                                     f"or ${ENDPOINT_ENV} and that the server is up") from exc
        if isinstance(exc, ApiException):
            hint = f"; check ${TOKEN_ENV} or your kube config" if status in (401, 403) else ""
            reason = " ".join(str(exc.reason or "").split()) or "no reason given"
            raise AmnetError(f"Kubeflow Pipelines API at {host} refused the request (HTTP {status}: "
                             f"{reason[:200]}){hint}") from exc
        raise
    finally:
        for line in kfp_says.getvalue().splitlines():
            log.debug("kfp: %s", line)


def wait_for_run(client, run_id: str, timeout: float | None, poll: float | None = None) -> tuple[str, bool]:
    """Poll the run until it is in a final state: (state, True), or (last state, False) after ``timeout`` s."""
    poll = POLL_SECONDS if poll is None else poll
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = str(client.get_run(run_id).state or "RUNTIME_STATE_UNSPECIFIED").upper()
        if state in FINAL_STATES:
            return state, True
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return state, False
        time.sleep(poll if left is None else min(poll, left))


def _client(host: str, namespace: str | None):
    import kfp

    kwargs: dict[str, Any] = {"host": host, "existing_token": os.environ.get(TOKEN_ENV) or None}
    if namespace:
        kwargs["namespace"] = namespace
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This client only works", category=FutureWarning)
        return kfp.Client(**kwargs)


def _package(args: argparse.Namespace, folder: str) -> str:
    """The YAML to send: ``--package`` as given, or the pipeline compiled with the compile flags."""
    if args.package:
        if not os.path.isfile(args.package):
            raise AmnetError(f"--package {args.package}: no such file; create it with `amnet pipeline compile`")
        return args.package
    path = os.path.join(folder, "amnet_pipeline.yaml")
    compile_pipeline(compile_options(args), path, refresh=getattr(args, "refresh", False))
    return path


def pipeline_version_name(package: str) -> str:
    """``<amnet version>-<first 12 hex digits of the YAML's SHA-256>``: the same YAML, the same version."""
    import amnet

    with open(package, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()[:12]
    return f"{amnet.__version__}-{digest}"


def _named(name: str) -> str:
    """A KFP API filter: display_name == ``name``."""
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def upload_version(client, package: str, namespace: str | None = None,
                   pipeline_name: str = "") -> tuple[str, str, str]:
    """Upload ``package`` as a named version of the pipeline ``amnet`` (or ``pipeline_name``; created when
    missing); a version of that name already there is reused. Returns (pipeline id, version id, version name)."""
    from amnet_pipeline.amnet_pipeline import PIPELINE_NAME

    name = pipeline_name or PIPELINE_NAME
    version = pipeline_version_name(package)
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(package, pipeline_name=name, namespace=namespace,
                                             description="AMNet fashion search (amnet pipeline)").pipeline_id
    found = client.list_pipeline_versions(pipeline_id, page_size=1, filter=_named(version)).pipeline_versions or []
    if found:
        return pipeline_id, found[0].pipeline_version_id, version
    created = client.upload_pipeline_version(package, version, pipeline_id=pipeline_id)
    return pipeline_id, created.pipeline_version_id, version


def _server_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    from amnet_pipeline import run_config

    p = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog + "\n\n" + run_config.help_text(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=None, metavar="URL",
                   help="Kubeflow Pipelines API endpoint, e.g. http://localhost:8888 "
                   f"(default: ${ENDPOINT_ENV}; token: ${TOKEN_ENV} or kfp's kube-config / in-cluster auth)")
    p.add_argument("--experiment", default="amnet",
                   help="Kubeflow experiment (created if missing); also the MLflow experiment unless "
                   "the run file's `experiment:` says otherwise (default: %(default)s)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="run file: dataset, variants, one section per stage (configs/demo.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one run-file key (repeatable): dataset=s3://..., train.epochs=2")
    p.add_argument("--pipeline-root", default=None, help="where KFP stores artifacts, e.g. s3://bucket/pipeline-root "
                   "(default: the server's)")
    p.add_argument("--namespace", default=None, help="Kubernetes namespace (multi-user Kubeflow)")
    p.add_argument("--package", default=None, metavar="FILE",
                   help="submit this compiled YAML instead of compiling now with the compile options")
    _compile_flags(p)
    return p


# --------------------------------------------------------------------------------------- commands


def main_compile(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="amnet pipeline compile",
        description="Compile the AMNet Kubeflow pipeline to a YAML package. The same code and options "
        "always give byte-identical YAML; images come from $AMNET_IMAGE_REGISTRY (default "
        "ghcr.io/amnet-project) tagged by content (amnet:c-<digest of the image sources>; the version tag "
        "is an alias).",
        epilog="example:\n  amnet pipeline compile --out amnet_pipeline.yaml \\\n"
        "      --gpu-node-selector cloud.google.com/gke-accelerator=nvidia-h100-80gb",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the YAML")
    p.add_argument("--refresh", action="store_true", help="the gallery refresh pipeline (amnet-refresh: new and "
                   "changed catalogue images featurized with the champion, no retraining) instead of the training one")
    _compile_flags(p)
    args = p.parse_args(argv)
    compile_pipeline(compile_options(args), args.out, refresh=args.refresh)
    log.info("wrote %s", args.out)
    return 0


def main_submit(argv: list[str] | None = None) -> int:
    p = _server_parser(
        "amnet pipeline submit",
        "Submit one run of the AMNet pipeline to a Kubeflow Pipelines server.",
        "example:\n  amnet pipeline submit --host http://localhost:8888 \\\n"
        "      --config configs/demo.yaml --set dataset=s3://amnet/datasets/synth --set train.epochs=8")
    p.add_argument("--run-name", default=None, help="display name of the run (default: amnet <date time>)")
    p.add_argument("--wait", action="store_true",
                   help="wait for the run to end and print its final state; exit 0 only if it SUCCEEDED, else 1")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="S",
                   help="with --wait: stop waiting after S seconds (exit 1; the run goes on; default: no limit)")
    p.add_argument("--json", action="store_true", help="print one JSON document (run_id, url, pipeline_version, "
                   "experiment; with --wait also state and ended) instead of the lines")
    args = p.parse_args(argv)
    host = _host(p, args)
    if args.timeout is not None and not args.wait:
        p.exit(EXIT_USAGE, f"{p.prog}: error: --timeout needs --wait\n")
    params = run_arguments(args.config, args.overrides, experiment=args.experiment)
    with tempfile.TemporaryDirectory(prefix="amnet-submit-") as folder, kfp_errors(host):
        package = _package(args, folder)
        client = _client(host, args.namespace)
        experiment = client.create_experiment(name=args.experiment, namespace=args.namespace)
        pipeline_id, version_id, version = upload_version(client, package, args.namespace)
        result = client.run_pipeline(
            experiment.experiment_id, args.run_name or time.strftime("amnet %Y-%m-%d %H-%M-%S"), params=params,
            pipeline_id=pipeline_id, version_id=version_id, pipeline_root=args.pipeline_root)
    submitted = {"run_id": result.run_id, "url": run_url(host, result.run_id), "pipeline_version": version,
                 "experiment": args.experiment}
    if args.json and not args.wait:
        print(json.dumps(submitted, indent=2))
        return 0
    if not args.json:
        print(f"submitted run {result.run_id} of pipeline version {version} to experiment {args.experiment!r}")
        print(f"run details: {submitted['url']}", flush=True)
    if not args.wait:
        return 0
    log.info("waiting for run %s to end%s", result.run_id,
             f" (at most {args.timeout:g} s)" if args.timeout is not None else "")
    with kfp_errors(host):
        state, ended = wait_for_run(client, result.run_id, args.timeout)
    if args.json:
        print(json.dumps({**submitted, "state": state, "ended": ended}, indent=2))
        return 0 if ended and state == "SUCCEEDED" else EXIT_FAILED
    if not ended:
        print(f"run {result.run_id} is still {state} after {args.timeout:g} s; stopped waiting (the run goes on)")
        return EXIT_FAILED
    print(f"run {result.run_id} finished: {state}")
    return 0 if state == "SUCCEEDED" else EXIT_FAILED


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (got {text})")
    return value


def main_schedule(argv: list[str] | None = None) -> int:
    p = _server_parser(
        "amnet pipeline schedule",
        "Create an enabled recurring run (scheduled retraining) of the AMNet pipeline. Runs never overlap "
        "(max concurrency 1) and missed slots are not back-filled (no catch-up).",
        "cron format (Kubeflow / robfig cron): 6 fields, SECONDS FIRST:\n"
        "  second minute hour day-of-month month day-of-week\n"
        "  '0 0 3 * * 0'   Sundays at 03:00:00\n  '0 30 2 * * *'  every day at 02:30:00\n\n"
        "example:\n  amnet pipeline schedule --host http://localhost:8888 --cron '0 0 3 * * 0' \\\n"
        "      --config configs/demo.yaml --set dataset=s3://amnet/datasets/synth\n"
        "  amnet pipeline schedule --host http://localhost:8888 --from-file manifests/schedule/recurring-run.yaml")
    p.add_argument("--cron", default=None,
                   help="6-field cron expression, seconds first (see below); required unless --from-file gives it")
    p.add_argument("--name", default=None, help="recurring run name (default: amnet-retrain, or amnet-refresh "
                   "with --refresh)")
    p.add_argument("--refresh", action="store_true", help="schedule the gallery refresh pipeline (e.g. daily: "
                   "catalogue changes featurized with the champion, no retraining; --set catalogue_uri=s3://... "
                   "[--set model_uri=models:/amnet@champion]) instead of retraining")
    p.add_argument("--from-file", default=None, metavar="FILE",
                   help="declarative recurring run (manifests/schedule/recurring-run.yaml): cron, name, "
                   "the run file under `config:`, compile options; flags on the command line override it")
    p.add_argument("--json", action="store_true", help="print one JSON document (recurring_run_id, name, cron, "
                   "pipeline_version, experiment, replaced) instead of the line")
    spec = None
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--from-file", default=None)
    from_file = pre.parse_known_args(argv)[0].from_file
    if from_file:
        from amnet_pipeline.schedule_file import load_recurring_run

        spec = load_recurring_run(from_file)
        p.set_defaults(**spec.cli_defaults())
    args = p.parse_args(argv)
    host = _host(p, args)
    if args.cron is None:
        p.error("the following arguments are required: --cron (or --from-file FILE with a cron)")
    cron = validate_cron(args.cron)
    args.name = args.name or ("amnet-refresh" if args.refresh else "amnet-retrain")
    if args.refresh:
        from amnet_pipeline.refresh_pipeline import refresh_arguments

        params = refresh_arguments(args.overrides)
    else:
        params = run_arguments(args.config, args.overrides, experiment=args.experiment,
                               base=spec.config if spec else None)
    with tempfile.TemporaryDirectory(prefix="amnet-schedule-") as folder, kfp_errors(host):
        package = _package(args, folder)
        client = _client(host, args.namespace)
        experiment = client.create_experiment(name=args.experiment, namespace=args.namespace)
        pipeline_id, version_id, version = upload_version(
            client, package, args.namespace, "amnet-refresh" if args.refresh else "")
        listed = client.list_recurring_runs(experiment_id=experiment.experiment_id, page_size=100,
                                            filter=_named(args.name)).recurring_runs or []
        previous = [r.recurring_run_id for r in listed if r.display_name == args.name]
        recurring = client.create_recurring_run(
            experiment_id=experiment.experiment_id, job_name=args.name, cron_expression=cron,
            max_concurrency=1, no_catchup=True, params=params, pipeline_id=pipeline_id, version_id=version_id,
            enabled=spec.enabled if spec else True, pipeline_root=args.pipeline_root,
            description=spec.description if spec else None,
            service_account=spec.service_account if spec else None)
        for old in previous:  # replaced only once its successor exists: never left without a schedule
            client.delete_recurring_run(old)
    if args.json:
        print(json.dumps({"recurring_run_id": recurring.recurring_run_id, "name": args.name, "cron": cron,
                          "pipeline_version": version, "experiment": args.experiment, "replaced": previous}, indent=2))
        return 0
    verb = f"updated {args.name!r} (replaces {', '.join(previous)})" if previous else f"scheduled {args.name!r}"
    print(f"{verb}: {recurring.recurring_run_id} at cron {cron!r}, pipeline version {version}, "
          f"in experiment {args.experiment!r}")
    return 0


if __name__ == "__main__":  # python -m amnet_pipeline.cli compile --out FILE
    from amnet.logs import setup

    setup()
    commands = {"compile": main_compile, "submit": main_submit, "schedule": main_schedule}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python -m amnet_pipeline.cli {{{','.join(commands)}}} [--help]", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    try:
        sys.exit(commands[sys.argv[1]](sys.argv[2:]))
    except AmnetError as exc:  # exit statuses as `amnet`'s (amnet.errors): 3 bad input, 4 unreachable
        print(f"amnet pipeline {sys.argv[1]}: error: {exc}", file=sys.stderr)
        sys.exit(exit_code(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
