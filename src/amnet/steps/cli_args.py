"""What every stage's command line shares: ``--config`` / ``--set`` / ``--parent-run-id`` / ``--quiet`` /
``--json``, ``--checkpoint-dir``, the config keys in ``--help``, and the printed result."""

from __future__ import annotations

import argparse
import json
import os
import textwrap
from typing import Any

from amnet import config as cfgmod


def config_keys_help(config: type) -> str:
    """'config keys (--set KEY=VALUE), with defaults: a=1, b.c=x, ...' for a stage's --help."""
    flat = cfgmod.flatten(config())
    return "config keys (--set KEY=VALUE or --config FILE), with defaults:\n  " + textwrap.fill(
        ", ".join(f"{k}={v}" for k, v in flat.items()), width=100, subsequent_indent="  ")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Argument defaults in the option list, and the epilog's line breaks kept."""


def base_parser(prog: str, description: str, config: type | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_HelpFormatter,
                                epilog=config_keys_help(config) if config is not None else None)
    if config is not None:
        section = cfgmod.SECTION_OF.get(config, "")
        p.add_argument("--config", help="YAML file with this stage's config keys, or a run file "
                       f"(configs/*.yaml) whose `{section}:` section is used")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config key (repeatable; dotted keys reach nested ones: "
                       "model.backbone=alexnet)")
    p.add_argument("--parent-run-id", default=os.environ.get("AMNET_PARENT_RUN_ID", ""),
                   help="MLflow parent run to nest this stage's run under "
                   "(tracking is on when MLFLOW_TRACKING_URI is set)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the result as one JSON document instead of a table")
    return p


def add_checkpoint_flag(p: argparse.ArgumentParser, what: str = "resumable training state") -> None:
    p.add_argument("--checkpoint-dir", default="", metavar="URI",
                   help=f"{what}: a folder or s3:// prefix outside OUT, so a rerun with a fresh --out resumes "
                   "(default: OUT/checkpoints)")


def cli_config(config: type, args: argparse.Namespace, extra: list[str] | None = None) -> dict[str, Any]:
    """The config mapping a stage's command line gives (``--config`` file <- ``--set`` items)."""
    return cfgmod.read_values(config, args.config, list(args.overrides) + list(extra or []))


def print_result(result: dict[str, Any], as_json: bool = False) -> None:
    """The stage's result: ``key  value`` lines, or (``--json``) one JSON document."""
    if as_json:
        print(json.dumps(result, default=str))
        return
    width = max((len(k) for k in result), default=0)
    for key, value in result.items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        print(f"  {key.ljust(width)}  {shown}")
