"""``amnet run --local``: the same pipeline, run on this machine by ``kfp.local``.

Every task runs as a subprocess of this Python (``SubprocessRunner(use_venv=False)``), so the
installed ``amnet`` is the code under test; with ``--containers`` every task runs in the project's CPU
image instead (``DockerRunner``, as uid 10001, host networking so tasks reach the local stack on
loopback), which is what a Kubeflow cluster runs. Artifacts land in ``<workdir>/kfp-root``; the run is
tracked in the local stack's MLflow server (SeaweedFS S3 + MLflow, started when not running).
Without ``--dataset`` the built-in synthetic dataset is rendered once into ``<workdir>/datasets``.

The terminal stays calm: one ``[amnet] stage ...`` line per task start and end (logged, on stderr),
then the results table and where to look (printed, on stdout). Each task's full log (kfp.local's
executor lines and the task's own output) goes to ``<run folder>/logs/<task>.log``; a failing task's
last 30 lines are logged with its path.
"""

import argparse
import builtins
import io
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, TextIO

from amnet_pipeline import run_config

from amnet import logs as amnet_logs
from amnet.errors import AmnetError, RunFailed
from amnet.names import IMAGE_ONLY

log = logging.getLogger(__name__)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
TAIL_LINES = 30  # of a failing task's log, printed on the terminal


def synthetic_dataset(workdir: Path, num_images: int, seed: int, image_size: int, variants: int = 0) -> str:
    """The built-in synthetic dataset in ``workdir/datasets``: rendered on first use, then reused.
    ``variants`` > 0: garments in variant groups (``amnet data synth --variants``), which give the split
    exact-target queries."""
    from amnet.data import synth

    grouped = f"-variants{variants}" if variants else ""
    path = workdir / "datasets" / f"synth-{num_images}-{image_size}px-seed{seed}{grouped}"
    if (path / "manifest.parquet").exists() and (path / "attributes.json").exists():
        log.info("[amnet] dataset: %s (cached)", path)
        return str(path)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    log.info("[amnet] rendering the synthetic dataset: %s images at %s px%s -> %s", num_images, image_size,
             f", variant groups of up to {variants + 1}" if variants else "", path)
    synth.generate(str(tmp), num_images, seed, image_size, workers=max(1, os.cpu_count() or 1), variants=variants)
    os.replace(tmp, path)
    return str(path)


def local_stack_env(state_dir: str | None) -> dict[str, str]:
    """The local stack's client environment; the stack is started first when not healthy."""
    from amnet.stack import services
    from amnet.stack.state import default_state_dir

    folder = Path(state_dir).resolve() if state_dir else default_state_dir()
    statuses = services.stack_status(folder) if (folder / "stack.json").exists() else {}
    if not all(name in statuses and statuses[name].healthy for name in ("seaweed", "mlflow")):
        log.info("[amnet] starting the local stack (SeaweedFS S3 + MLflow) in %s", folder)
        services.start_stack(folder)
    return services.stack_env(folder)


class TaskLogs(io.TextIOBase):
    """What kfp.local prints (its executor lines and each task's streamed output), one file per task.

    kfp.local runs tasks one at a time; :func:`stage_lines` switches the file when a task starts.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "pipeline.log"
        self._fh: TextIO = self.path.open("a")

    def switch(self, task: str) -> Path:
        self._fh.close()
        self.path = self.folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", task) + ".log")
        self._fh = self.path.open("a")
        return self.path

    def write(self, text: str) -> int:
        self._fh.write(_ANSI.sub("", text))
        return len(text)

    def flush(self) -> None:
        if not self._fh.closed:
            self._fh.flush()

    def close(self) -> None:
        self._fh.close()
        super().close()

    def tail(self, path: Path, lines: int = TAIL_LINES) -> str:
        self.flush()
        return "\n".join(path.read_text(errors="replace").rstrip().splitlines()[-lines:])


@contextmanager
def stage_lines(times: dict[str, str] | None = None, logs: TaskLogs | None = None):
    """One ``[amnet]`` line per stage start / end, logged (see :func:`lines_on_terminal`); ``times``
    collects ``task -> "12.3 s"`` or ``"cached"`` for the breakdown logged at the end. With ``logs``,
    each task's output goes to its own file and a failed task's tail is logged."""
    started: dict[str, list[tuple[str, float]]] = {}  # task -> running iterations, oldest first
    times = {} if times is None else times
    failed: list[Path] = []

    def say(text: str) -> None:
        log.info("%s", text)

    def label(task: str) -> str:
        """ParallelFor iterations share a task name: the 2nd and later get ' #2', ' #3'..."""
        n, name = 1, task
        while name in times or any(name == shown for running in started.values() for shown, _ in running):
            n += 1
            name = f"{task} #{n}"
        return name

    class StageFilter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            msg = _ANSI.sub("", str(record.getMessage()))
            if m := re.match(r"Executing task '([^']+)'", msg):
                shown = label(m[1])
                started.setdefault(m[1], []).append((shown, time.monotonic()))
                if logs is not None:
                    logs.switch(shown)
                say(f"[amnet] stage {shown}: running")
            elif m := re.match(r"Task '([^']+)' finished with status (\w+)", msg):
                running = started.get(m[1]) or [(label(m[1]), time.monotonic())]
                name, since = running.pop(0)
                if not running:
                    started.pop(m[1], None)
                took = time.monotonic() - since
                status = m[2].lower()
                times[name] = f"{took:.1f} s" + ("" if status == "success" else f" ({status})")
                say(f"[amnet] stage {name}: {status} ({took:.1f} s)")
                if status != "success" and logs is not None:
                    failed.append(logs.path)
            elif m := re.match(r"Task (\S+) cache hit", msg):
                name = label(m[1])
                times[name] = "cached"
                say(f"[amnet] stage {name}: cached")
            return True

    stage_filter = StageFilter()
    root = logging.getLogger()
    level = root.level
    root.addFilter(stage_filter)
    root.setLevel(min(level, logging.INFO))  # kfp logs cache hits at INFO outside its own log context
    try:
        yield times
    finally:
        root.removeFilter(stage_filter)
        root.setLevel(level)
        for path in failed:  # after the filter is gone: the log file is complete
            log.error("[amnet] last %d lines of %s:\n%s", TAIL_LINES, path, logs.tail(path))


@contextmanager
def lines_on_terminal():
    """amnet_pipeline's lines (the stage lines) stay with the handler amnet's logging set up (stderr,
    set up here when nothing has) while kfp.local swaps the root logger's handlers for its task logs:
    not passed on to the root logger meanwhile, so they are neither lost nor copied into a task's log."""
    amnet_logs.ensure()
    ours = logging.getLogger("amnet_pipeline")
    propagate, ours.propagate = ours.propagate, False
    try:
        yield
    finally:
        ours.propagate = propagate


@contextmanager
def root_log_to(stream: TextIO | None):
    """Route the root logger's records to ``stream`` (the task logs) instead of its own handlers, so the
    lines kfp.local logs outside a task (workspace clean-up) stay off the terminal too; None: unchanged."""
    root = logging.getLogger()
    saved = root.handlers[:]
    if stream is not None:
        root.handlers = [logging.StreamHandler(stream)]
    try:
        yield
    finally:
        root.handlers = saved


def stage_breakdown(times: dict[str, str], total: float) -> str:
    """The per-stage wall times of a run, slowest first, cached stages last, and the total."""
    def seconds(value: str) -> float:
        return float(value.split()[0]) if value != "cached" else -1.0

    ordered = sorted(times.items(), key=lambda kv: -seconds(kv[1]))
    width = max([len(name) for name in times] + [5])
    lines = [f"  {name:<{width}}  {value:>10}" for name, value in ordered]
    return "\n".join(["stage times (wall, slowest first):", *lines, f"  {'total':<{width}}  {total:>8.1f} s"])


# What a containerized task receives from this process's environment: the stack's endpoints and
# credentials, MLflow's experiment, amnet's own settings. Passed at run time, never baked into the image.
CONTAINER_ENV_PREFIXES = ("AWS_", "MLFLOW_", "AMNET_")


def container_env(image: str) -> dict[str, str]:
    """The environment a task container gets: this process's AWS_*, MLFLOW_*, AMNET_* variables."""
    env = {k: v for k, v in os.environ.items() if k.startswith(CONTAINER_ENV_PREFIXES)}
    env["AMNET_IMAGE"] = image
    return env


def docker_runner(image: str, read_only: list[str]):
    """``kfp.local.DockerRunner`` for the project image: host network (the stack is on loopback), the
    environment of :func:`container_env`, and ``read_only`` host folders (a local dataset) bound read-only
    at the same path. kfp.local itself binds the pipeline root read-write. Fails with one line when no
    engine answers or the image is missing."""
    from kfp import local

    try:
        import docker
        from docker.types import Mount
    except ImportError as exc:  # pragma: no cover - docker is an mlflow dependency
        raise AmnetError("--containers needs the docker Python package: pip install docker") from exc
    try:
        client = docker.from_env()
        client.ping()
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise AmnetError(f"image {image} is not built here; build it with `make images`") from None
    except docker.errors.DockerException as exc:
        raise AmnetError(f"--containers needs a Docker engine ({type(exc).__name__}); start dockerd "
                         "(Debian: apt-get install -y docker.io && dockerd &) or drop --containers") from None
    mounts = [Mount(target=p, source=p, type="bind", read_only=True) for p in read_only]
    return local.DockerRunner(network_mode="host", environment=container_env(image), mounts=mounts)


def local_folders(params: dict[str, Any]) -> list[str]:
    """Host folders a containerized run must see: the dataset when it is a local path."""
    dataset = str(params.get("dataset_uri") or "")
    return [str(Path(dataset).resolve())] if dataset and "://" not in dataset else []


def run_pipeline(params: dict[str, Any], workdir: Path, cache: bool = True,
                 times: dict[str, str] | None = None, quiet: bool = True, image: str | None = None,
                 refresh: bool = False) -> Path:
    """Run the pipeline with ``kfp.local``; returns its run folder. Raises AmnetError when a task fails.
    ``times`` (when given) receives each task's wall time or "cached". ``quiet``: kfp.local's output
    goes to ``<run folder>/logs/<task>.log`` instead of the terminal. ``image``: run every task in that
    container image (``DockerRunner``) instead of as a subprocess of this Python. ``refresh``: the gallery
    refresh pipeline (``params``: :func:`amnet_pipeline.refresh_pipeline.refresh_arguments`)."""
    from amnet_pipeline.amnet_pipeline import PIPELINE_NAME, CompileOptions, build_pipeline
    from amnet_pipeline.refresh_pipeline import build_refresh_pipeline
    from kfp import local

    root = workdir / "kfp-root"
    root.mkdir(parents=True, exist_ok=True)
    if image:
        # The image's user (uid 10001) writes every task's outputs here, as on a cluster's volume.
        root.chmod(0o777)
        runner = docker_runner(image, local_folders(params))
    else:
        runner = local.SubprocessRunner(use_venv=False)
    local.init(runner=runner, pipeline_root=str(root), raise_on_error=True,
               enable_caching=cache, cache_root=str(workdir / "kfp-cache"))
    # Locally: no GPU request, no retries (a bug would only repeat), one variant and one featurization group
    # at a time (CPU; and kfp.local runs concurrent iterations in threads that each swap builtins.print for
    # an indenting one, so overlapping tasks can leave print indented after the run).
    # Resumable training / featurization state outside the artifacts: kfp-root/checkpoints/<run>/<task>-<key>.
    pipeline = (build_refresh_pipeline if refresh else build_pipeline)(CompileOptions(
        use_gpu=False, retries=0, parallelism=1, featurize_parallelism=1, checkpoint_root=str(root)))
    # Cacheable upstream stages have no parent run; their standalone runs join the same experiment.
    os.environ["MLFLOW_EXPERIMENT_NAME"] = str(params.get("experiment", "amnet"))
    before = set(root.iterdir())
    terminal = sys.stdout
    logs = TaskLogs(workdir / "logs" / time.strftime("run-%Y%m%d-%H%M%S")) if quiet else None
    error: str | None = None
    with warnings.catch_warnings(), lines_on_terminal(), stage_lines(times, logs), \
            redirect_stdout(logs if logs is not None else terminal), root_log_to(logs):
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        warnings.filterwarnings("ignore", message=".*no effect.*local.*")
        original_print = builtins.print
        try:
            pipeline(**params)
        except RuntimeError as exc:
            error = _ANSI.sub("", str(exc))
        finally:
            builtins.print = original_print  # whatever kfp.local's indented_print left behind
    runs = [d for d in root.iterdir() if d not in before and d.name.startswith(f"{PIPELINE_NAME}-")]
    run_dir = max(runs, key=lambda d: d.stat().st_mtime) if runs else root
    where = "above"
    if logs is not None:
        logs.close()
        target = run_dir / "logs" if run_dir != root else logs.folder
        if target != logs.folder:
            shutil.move(str(logs.folder), str(target))
        where = f"in {target}"
    if error:
        raise RunFailed(f"{error} Task logs are {where}; artifacts are under {run_dir}")
    return run_dir


def _executor_outputs(run_dir: Path, task_prefix: str) -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(run_dir.glob(f"**/{task_prefix}*/executor_output.json"))]


def _artifact_metadata(output: dict, name: str) -> dict:
    artifacts = output.get("artifacts", {}).get(name, {}).get("artifacts") or [{}]
    return artifacts[0].get("metadata") or {}


def _artifact_uri(output: dict, name: str) -> str:
    return (output.get("artifacts", {}).get(name, {}).get("artifacts") or [{}])[0].get("uri", "")


def _evaluation_folders(run_dir: Path) -> list[str]:
    """The evaluate tasks' evaluation folders (with the image-only baseline's, where a task scored it), or []
    when some is not on this machine."""
    from amnet.steps.report import is_evaluation

    outputs = _executor_outputs(run_dir, "evaluate-retrieval")
    folders = [_artifact_uri(o, "evaluation") for o in outputs]
    images = [uri for uri in (_artifact_uri(o, "image_evaluation") for o in outputs)
              if uri and Path(uri).is_dir() and is_evaluation(uri)]
    folders += images
    return folders if all(uri and (Path(uri) / "metrics.json").is_file() for uri in folders) else []


def results_table(run_dir: Path) -> str:
    """Variants x headline metrics (means over seeds when a variant trained several), from the evaluate
    tasks' evaluation folders; from their Metrics outputs when the folders are not on this machine."""
    from amnet.report.intervals import EXACT_TITLE, present_columns, run_tables
    from amnet.report.tables import metric_rows, text_table

    folders = _evaluation_folders(run_dir)
    if folders:
        return run_tables(folders, resamples=0)[0]  # values only
    rows: dict[str, dict] = {}
    for output in _executor_outputs(run_dir, "evaluate-retrieval"):
        variant = _artifact_metadata(output, "evaluation").get("variant", "?")
        scores = _artifact_metadata(output, "metrics")
        rows[variant] = {k: v for k, v in scores.items() if not k.startswith(f"{IMAGE_ONLY}_")}
        if _artifact_metadata(output, "image_evaluation").get("variant") == IMAGE_ONLY:  # scored beside amnet
            rows[IMAGE_ONLY] = {k.removeprefix(f"{IMAGE_ONLY}_"): v for k, v in scores.items()
                                if k.startswith(f"{IMAGE_ONLY}_")}
    table = text_table(metric_rows(rows)).rstrip("\n")
    exact = present_columns(rows)  # the exact-target table, only when the queries carried target ids
    return table + (f"\n\n{EXACT_TITLE}\n" + text_table(metric_rows(rows, exact)).rstrip("\n") if exact else "")


def uncertainty_table(run_dir: Path) -> str:
    """The headline metrics' 95% bootstrap intervals over queries, sd across seeds and the paired
    differences AMNet − x (``amnet.report.intervals``); "" without the evaluation folders."""
    from amnet.report.intervals import run_tables

    folders = _evaluation_folders(run_dir)
    return run_tables(folders)[1] if folders else ""


def parent_run_link(run_dir: Path) -> str:
    """The MLflow UI page of the run's parent run, from the start task's Markdown output ("" without one)."""
    for path in sorted(run_dir.glob("start-parent-run/mlflow_run")):
        if m := re.search(r"\]\((https?://[^)\s]+)\)", path.read_text(errors="replace")):
            return m[1]
    return ""


def _summary(run_dir: Path, env: dict[str, str], experiment: str) -> None:
    logs = run_dir / "logs"
    table = results_table(run_dir)
    print("\n" + table if table.count("\n") > 1 else "\n(no evaluation ran in this run: all were cached; "
          "rerun with --no-cache for the table)")
    spread = uncertainty_table(run_dir) if table.count("\n") > 1 else ""
    if spread:
        print("\n" + spread)
    starts = _executor_outputs(run_dir, "start-parent-run")
    parent = starts[0].get("parameterValues", {}).get("Output", "") if starts else ""
    reports = sorted(run_dir.glob("**/build-report*/report"))
    print(f"\nMLflow UI:   {env.get('MLFLOW_TRACKING_URI', '(tracking off)')}  "
          f"(experiment {experiment!r}{', parent run ' + parent if parent else ''})")
    link = parent_run_link(run_dir)
    if link:
        print(f"parent run:  {link}")
    for report in reports:
        print(f"report:      {report / 'report.html'}\n             {report / 'report.md'}")
    print(f"artifacts:   {run_dir}")
    if logs.is_dir():
        print(f"task logs:   {logs}")


def summary_data(run_dir: Path, env: dict[str, str], experiment: str, seconds: float,
                 times: dict[str, str]) -> dict[str, Any]:
    """``--json``: where to look and what came out, as data: the MLflow parent run, the reports, each task's
    time and, per evaluation, its variant, training seed and metrics (the report's ``results.json`` names
    the intervals and paired differences)."""
    starts = _executor_outputs(run_dir, "start-parent-run")
    reports = sorted(run_dir.glob("**/build-report*/report"))
    evaluations = []
    for folder in _evaluation_folders(run_dir):
        payload = json.loads((Path(folder) / "metrics.json").read_text())
        evaluations.append({"variant": payload.get("variant"), "seed": payload.get("seed"), "folder": folder,
                            "metrics": payload.get("metrics", {})})
    return {"run_dir": str(run_dir), "seconds": round(seconds, 1), "tasks": times,
            "mlflow": {"tracking_uri": env.get("MLFLOW_TRACKING_URI", ""), "experiment": experiment,
                       "parent_run_id": starts[0].get("parameterValues", {}).get("Output", "") if starts else "",
                       "parent_run_url": parent_run_link(run_dir)},
            "reports": [str(r / "report.html") for r in reports],
            "results": [str(r / "results.json") for r in reports if (r / "results.json").is_file()],
            "evaluations": evaluations}


def _refresh(args: argparse.Namespace, workdir: Path, image: str | None) -> int:
    """``amnet run --local --refresh``: the refresh pipeline on this machine; prints its counts."""
    from amnet_pipeline.refresh_pipeline import refresh_arguments

    catalogue = args.dataset or run_config.load(args.config, args.overrides).dataset
    if not catalogue:
        raise AmnetError("--refresh needs the catalogue: --dataset DIR (a dataset folder, s3:// prefix or a split)")
    params = refresh_arguments([f"catalogue_uri={catalogue}", f"model_uri={args.model}"])
    env = local_stack_env(args.stack_dir)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(key, None)
    os.environ.update(env)
    times: dict[str, str] = {}
    run_dir = run_pipeline(params, workdir, cache=False, times=times, quiet=not args.verbose, image=image,
                           refresh=True)
    found = sorted(run_dir.glob("**/refresh-gallery/refreshed/refresh_result.json"))
    result = json.loads(found[-1].read_text()) if found else {}
    print(json.dumps(result, indent=2) if args.json else
          "  ".join(f"{k} {result.get(k)}" for k in ("added", "removed", "changed", "unchanged", "registered",
                                                       "promoted")))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="amnet run",
        description="Run the whole AMNet pipeline on this machine with kfp.local: the same pipeline and "
        "components as on Kubeflow, each task a subprocess of the installed amnet, tracked in the local "
        "MLflow (the stack is started if needed).",
        epilog="examples:\n  amnet run --local\n  amnet run --local --config configs/demo.yaml --set train.epochs=2 "
        "--set variants='[amnet]'\n"
        "  amnet run --local --dataset s3://amnet/datasets/mine --config configs/demo.yaml\n\n"
        + run_config.help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--local", action="store_true", help="run locally with kfp.local (required)")
    p.add_argument("--config", metavar="FILE", help="run file: dataset, variants, one section per stage "
                   "(configs/demo.yaml; the same file `amnet pipeline submit --config` takes)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one run-file key (repeatable; dotted: train.epochs=2, "
                   "pretrain.model.backbone=alexnet)")
    p.add_argument("--dataset", help="dataset folder or s3:// prefix (default: the run file's, else the built-in "
                   "synthetic dataset)")
    p.add_argument("--containers", action="store_true", help="run every task in the project's CPU image "
                   "(kfp.local.DockerRunner, as on a cluster; build it first with `make images`)")
    p.add_argument("--image", default=None, help="image for --containers (default: components/images.py's "
                   "PROJECT_IMAGE, i.e. $AMNET_IMAGE_REGISTRY/amnet:VERSION)")
    p.add_argument("--workdir", default=None, help="datasets, artifacts and cache (default: .amnet/run, "
                   "or .amnet/run-containers with --containers: the two runs never share a cache)")
    p.add_argument("--stack-dir", default=None, help="local stack state folder (default: $AMNET_STACK_DIR or "
                   ".amnet/stack)")
    p.add_argument("--num-images", type=int, default=8000, help="synthetic dataset size (default: %(default)s)")
    p.add_argument("--variants", type=int, default=3, help="synthetic dataset: each garment re-rendered as 1 to "
                   "V+1 variants with 1-2 attributes changed, the exact targets of the exact-target queries "
                   "(0 = every garment unique; default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the summary (parent run, reports, each evaluation's "
                   "metrics, task times) as one JSON document instead of tables; progress stays on stderr")
    p.add_argument("--no-cache", action="store_true", help="re-run every task (kfp.local caching off)")
    p.add_argument("--refresh", action="store_true", help="run the gallery refresh pipeline instead: the --dataset "
                   "catalogue's new and changed images featurized with --model, registered as a new version, "
                   "no retraining")
    p.add_argument("--model", default="models:/amnet@champion",
                   help="with --refresh: the registered model whose gallery is refreshed (default: %(default)s)")
    p.add_argument("--verbose", action="store_true", help="kfp.local's full output on the terminal instead of "
                   "the per-task log files")
    args = p.parse_args(argv)
    if not args.local:
        print("amnet run: only local runs for now: add --local. To run on Kubeflow, compile and submit:\n"
              "  amnet pipeline submit --host URL --config FILE --set dataset=s3://... (see --help)", file=sys.stderr)
        return 2

    image = None
    if args.containers:
        from amnet_components.images import PROJECT_IMAGE

        image = args.image or PROJECT_IMAGE
    elif args.image:
        p.error("--image needs --containers")
    workdir = Path(args.workdir or (".amnet/run-containers" if image else ".amnet/run")).resolve()
    if args.refresh:
        return _refresh(args, workdir, image)
    rc = run_config.load(args.config, args.overrides + ([f"dataset={args.dataset}"] if args.dataset else []))
    params = rc.pipeline_arguments()
    if not params.get("dataset_uri"):
        if args.variants < 0:
            p.error(f"--variants must be >= 0 (got {args.variants})")
        params["dataset_uri"] = synthetic_dataset(workdir, args.num_images, rc.stage("split").seed,
                                                  rc.stage("pretrain").model.image_size, args.variants)
    env = local_stack_env(args.stack_dir)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):  # the stack's key pair, not another identity
        os.environ.pop(key, None)
    os.environ.update(env)
    log.info("[amnet] dataset %s; tracking %s; artifacts %s%s", params["dataset_uri"], env.get("MLFLOW_TRACKING_URI"),
             workdir / "kfp-root", f"; every task in {image}" if image else "")
    start = time.monotonic()
    times: dict[str, str] = {}
    run_dir = run_pipeline(params, workdir, cache=not args.no_cache, times=times, quiet=not args.verbose,
                           image=image)
    total = time.monotonic() - start
    log.info("[amnet] pipeline finished in %.0f s\n%s", total, stage_breakdown(times, total))
    experiment = str(params.get("experiment", "amnet"))
    if args.json:
        print(json.dumps(summary_data(run_dir, env, experiment, total, times), indent=2, default=str))
    else:
        _summary(run_dir, env, experiment)
    return 0
