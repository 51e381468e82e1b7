"""A declarative recurring run (``manifests/schedule/recurring-run.yaml``) for ``amnet pipeline schedule``.

The file names the recurring run, its 6-field cron, the run file (under ``config:``, exactly what
``--config FILE`` holds: dataset, variants, one section per stage) and the compile options; the
command ``amnet pipeline schedule --from-file FILE`` turns its values into the command's defaults, so any
flag given on the command line still wins. Runs never overlap and missed slots are never back-filled:
the file may say so (``max_concurrency: 1``, ``no_catchup: true``) but cannot say otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from amnet.config import parse_yaml
from amnet.errors import AmnetError

TOP_KEYS = ("name", "description", "experiment", "cron", "no_catchup", "max_concurrency", "enabled",
            "namespace", "service_account", "pipeline_root", "compile", "config")
RESOURCE_KEYS = tuple(f"{prefix}{kind}_{end}" for prefix in ("", "gpu_task_") for kind in ("cpu", "memory")
                      for end in ("request", "limit"))
COMPILE_KEYS = ("no_gpu", "gpu_node_selector", "gpu_tolerations", "retries", "s3_secret", "mlflow_secret",
                "checkpoint_root", "train_gpus", "train_nodes", "featurize_parallelism", *RESOURCE_KEYS)


@dataclass(frozen=True)
class RecurringRunFile:
    """The validated content of a recurring-run file."""

    path: str
    cron: str
    name: str | None = None
    description: str | None = None
    experiment: str | None = None
    enabled: bool = True
    namespace: str | None = None
    service_account: str | None = None
    pipeline_root: str | None = None
    compile: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the nested run file (amnet_pipeline.run_config)
    no_catchup: bool = True
    max_concurrency: int = 1

    def cli_defaults(self) -> dict[str, Any]:
        """Defaults for ``amnet pipeline schedule``'s parser (argparse ``set_defaults``), by dest."""
        out: dict[str, Any] = {"cron": self.cron}
        for key in ("name", "experiment", "namespace", "pipeline_root"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        options = self.compile
        if "no_gpu" in options:
            out["no_gpu"] = options["no_gpu"]
        if "retries" in options:
            out["retries"] = options["retries"]
        for key in ("train_gpus", "train_nodes", "featurize_parallelism"):
            if key in options:
                out[key] = options[key]
        for key in ("s3_secret", "mlflow_secret", "checkpoint_root", *RESOURCE_KEYS):
            if key in options:
                out[key] = str(options[key])
        if options.get("gpu_node_selector"):
            out["gpu_node_selector"] = [f"{k}={v}" for k, v in options["gpu_node_selector"].items()]
        if options.get("gpu_tolerations"):
            out["gpu_toleration"] = [_toleration_text(t) for t in options["gpu_tolerations"]]
        return out


def _toleration_text(toleration: dict[str, Any]) -> str:
    """``{key: K, operator: Exists}`` -> ``key=K,operator=Exists`` (the --gpu-toleration form)."""
    return ",".join(f"{k}={v}" for k, v in toleration.items())


def _expect(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise AmnetError(f"{path}: {message}")


def load_recurring_run(path: str | Path) -> RecurringRunFile:
    """Read and check a recurring-run file; raises :class:`AmnetError` naming the file and the key."""
    from amnet_pipeline.cli import parse_toleration, validate_cron

    where = str(path)
    try:
        data = parse_yaml(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AmnetError(f"{where}: no such file (see manifests/schedule/recurring-run.yaml)") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise AmnetError(f"{where}: not a readable text file ({exc.__class__.__name__})") from None
    except yaml.YAMLError as exc:
        raise AmnetError(f"{where}: not valid YAML ({exc.__class__.__name__})") from None
    _expect(isinstance(data, dict), where, "expected a mapping of keys (name, cron, params, ...)")
    unknown = sorted(set(data) - set(TOP_KEYS))
    _expect(not unknown, where, f"unknown key(s) {', '.join(map(str, unknown))}; valid: {', '.join(TOP_KEYS)}")

    _expect("cron" in data and isinstance(data["cron"], str), where,
            "cron: a quoted 6-field cron expression is required, e.g. \"0 0 3 * * 0\"")
    try:
        cron = validate_cron(data["cron"])
    except AmnetError as exc:
        raise AmnetError(f"{where}: {exc}") from None
    _expect(data.get("no_catchup", True) is True, where,
            "no_catchup must be true: amnet never back-fills missed retraining slots")
    _expect(data.get("max_concurrency", 1) == 1 and not isinstance(data.get("max_concurrency", 1), bool), where,
            "max_concurrency must be 1: retraining runs never overlap")
    _expect(isinstance(data.get("enabled", True), bool), where, "enabled must be true or false")
    for key in ("name", "description", "experiment", "namespace", "service_account", "pipeline_root"):
        value = data.get(key)
        _expect(value is None or (isinstance(value, str) and value.strip() != ""), where,
                f"{key} must be a non-empty string or null")

    config = data.get("config") or {}
    from amnet_pipeline import run_config

    run_config.parse(config, f"{where}: config")  # same keys and checks as `--config FILE`

    options = data.get("compile") or {}
    _expect(isinstance(options, dict), where, "compile must be a mapping")
    unknown = sorted(set(options) - set(COMPILE_KEYS))
    _expect(not unknown, where,
            f"compile: unknown key(s) {', '.join(map(str, unknown))}; valid: {', '.join(COMPILE_KEYS)}")
    _expect(isinstance(options.get("no_gpu", False), bool), where, "compile.no_gpu must be true or false")
    retries = options.get("retries", 0)
    _expect(isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0, where,
            "compile.retries must be an integer >= 0")
    for key in ("train_gpus", "train_nodes"):
        count = options.get(key, 1)
        _expect(isinstance(count, int) and not isinstance(count, bool) and count >= 1, where,
                f"compile.{key} must be an integer >= 1")
    parallel = options.get("featurize_parallelism", 0)
    _expect(isinstance(parallel, int) and not isinstance(parallel, bool) and parallel >= 0, where,
            "compile.featurize_parallelism must be an integer >= 0")
    selector = options.get("gpu_node_selector") or {}
    _expect(isinstance(selector, dict), where, "compile.gpu_node_selector must map node labels to values")
    tolerations = options.get("gpu_tolerations") or []
    _expect(isinstance(tolerations, list) and all(isinstance(t, dict) for t in tolerations), where,
            "compile.gpu_tolerations must be a list of {key, operator, value, effect} mappings")
    for toleration in tolerations:
        try:
            parse_toleration(_toleration_text(toleration))
        except AmnetError as exc:
            raise AmnetError(f"{where}: compile.gpu_tolerations: {exc}") from None
    resources = {key: str(options[key]) for key in RESOURCE_KEYS if key in options}
    try:  # the same checks as the compile flags: quantities, request <= limit
        from amnet_pipeline.amnet_pipeline import CompileOptions

        CompileOptions(**resources)
    except AmnetError as exc:
        raise AmnetError(f"{where}: compile.{exc}") from None

    return RecurringRunFile(
        path=where, cron=cron, name=data.get("name"), description=data.get("description"),
        experiment=data.get("experiment"), enabled=data.get("enabled", True), namespace=data.get("namespace"),
        service_account=data.get("service_account"), pipeline_root=data.get("pipeline_root"),
        compile=dict(options), config=dict(config))
