"""The ``amnet`` command: a table of sub-commands, each a ``main(argv)`` in its own module.

Modules are imported only when their command runs, so ``amnet --help`` is instant and the model,
data and training commands work without kfp or mlflow installed (e.g. on a bare GPU node).
The ``pipeline``, ``run`` and ``config schema`` commands live in the ``amnet_pipeline`` package (the
top-level ``pipeline/`` folder): ``amnet`` only dispatches to it, it never imports kfp itself.
Diagnostics go through ``logging`` to stderr (``amnet.logs``; ``-v`` / ``-q`` before the command words,
or ``$AMNET_LOG_LEVEL``); stdout holds only a command's result.

Exit statuses (:mod:`amnet.errors`): 0 success, 1 the run or command failed, 2 usage (an unknown command
or option), 3 bad input or settings, 4 an outside service unreachable (MLflow, S3, Kubeflow Pipelines),
130 interrupted. Every ``--help`` ends with them (:data:`EXIT_STATUSES`). Commands that print a table take
``--json`` for one JSON document on stdout instead.
"""

from __future__ import annotations

import importlib
import logging
import sys

from amnet import __version__, logs
from amnet.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    AmnetError,
    exit_code,
)

# (command words) -> ("module:function", one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("data", "synth"): ("amnet.data.synth:main", "render the built-in synthetic fashion dataset"),
    ("data", "validate"): ("amnet.data.validate:main", "check every row of a dataset; quarantine bad ones"),
    ("data", "preview"): ("amnet.data.preview:main", "contact sheet of images with their labels (PNG)"),
    ("data", "split"): ("amnet.steps.split:main", "paper-protocol splits (§5.1) as Parquet shards"),
    ("data", "import", "deepfashion"): (
        "amnet.data.importers:main_deepfashion",
        "convert a DeepFashion Category & Attribute benchmark tree",
    ),
    ("data", "import", "csv"): ("amnet.data.importers:main_csv", "convert a labelled CSV + image folder"),
    ("step", "fingerprint"): ("amnet.steps.fingerprint:main", "content digest of a dataset (the split's cache key)"),
    ("step", "pretrain"): ("amnet.steps.pretrain:main", "train the attribute CNN (§3.4, §4)"),
    ("step", "prototypes"): ("amnet.steps.prototypes:main", "average features per attribute value -> memory"),
    ("step", "train"): ("amnet.steps.train:main", "train AMNet or a baseline on triplets (Eq. 1-6)"),
    ("step", "featurize"): ("amnet.steps.featurize:main", "gallery images -> fp16 feature shards"),
    ("step", "index"): ("amnet.steps.index:main", "merge feature shards, build the search index once"),
    ("step", "evaluate"): ("amnet.steps.evaluate:main", "manipulated queries -> top-k accuracy, NDCG@k"),
    ("step", "reevaluate"): ("amnet.steps.reevaluate:main", "score the current champion on this split's data"),
    ("step", "register"): ("amnet.steps.register:main", "MLflow registry: challenger, champion only if it is better"),
    ("step", "refresh"): ("amnet.steps.refresh:main", "refresh the champion's gallery from a changed catalogue"),
    ("step", "report"): ("amnet.steps.report:main", "the §5 report of the variants' evaluations (HTML + Markdown)"),
    ("pipeline", "compile"): ("amnet_pipeline.cli:main_compile", "compile the KFP pipeline to YAML"),
    ("pipeline", "submit"): ("amnet_pipeline.cli:main_submit", "submit a run to a Kubeflow Pipelines host"),
    ("pipeline", "schedule"): ("amnet_pipeline.cli:main_schedule", "create a recurring retraining run"),
    ("stack", "up"): ("amnet.stack.cli:main_up", "start the local SeaweedFS S3 + MLflow server"),
    ("stack", "down"): ("amnet.stack.cli:main_down", "stop what `stack up` started"),
    ("stack", "status"): ("amnet.stack.cli:main_status", "show the local stack's endpoints and health"),
    ("run",): ("amnet_pipeline.local_run:main", "run the whole pipeline locally (kfp.local)"),
    ("config", "schema"): ("amnet_pipeline.run_schema:main", "the run file's JSON Schema (configs/*.yaml)"),
    ("runs", "compare"): ("amnet.ops.tracking.compare:main", "headline metrics of pipeline runs side by side"),
    ("search",): (
        "amnet.ops.registry.commands:main_search",
        "this image, but with these attributes: ranked gallery results",
    ),
    ("serve",): (
        "amnet.ops.registry.commands:main_serve",
        "a small web page for interactive search with a trained model",
    ),
}


# before the command words: the level of the diagnostics on stderr (stdout keeps the command's result)
VERBOSITY = {"-v": logging.DEBUG, "--verbose": logging.DEBUG, "-q": logging.WARNING, "--quiet": logging.WARNING}
GLOBAL_FLAGS = ("\noptions (before COMMAND):\n"
                "  -v, --verbose  debug messages too\n"
                "  -q, --quiet    warnings and errors only\n"
                f"  (default: ${logs.LEVEL_ENV} if set, else INFO; diagnostics go to stderr, with time, level and\n"
                "  logger unless stderr is a terminal)\n")
# the end of every --help (amnet.errors.exit_code): scripts branch on these
EXIT_STATUSES = ("\nexit status:\n"
                 f"  {EXIT_OK:<3}  success\n"
                 f"  {EXIT_FAILED:<3}  the run or command failed (a pipeline run that ended FAILED, a failed stage)\n"
                 f"  {EXIT_USAGE:<3}  usage: an unknown command or option, a missing argument\n"
                 f"  {EXIT_BAD_INPUT:<3}  bad input or settings\n"
                 f"  {EXIT_UNREACHABLE:<3}  an outside service is unreachable (MLflow, S3, Kubeflow Pipelines)\n"
                 f"  {EXIT_INTERRUPTED:<3}  interrupted (Ctrl-C)\n")


def _usage(prefix: tuple[str, ...]) -> str:
    rows = [(" ".join(words), help_) for words, (_, help_) in COMMANDS.items() if words[: len(prefix)] == prefix]
    width = max(len(r[0]) for r in rows)
    head = f"amnet {__version__}: fashion search with attribute manipulation (AMNet, CVPR 2017)\n\n"
    head += f"usage: amnet [-v | -q] {' '.join(prefix) + ' ' if prefix else ''}COMMAND [--help]\n\ncommands:\n"
    body = "\n".join(f"  {name.ljust(width)}  {help_}" for name, help_ in rows) + "\n"
    return head + body + ("" if prefix else GLOBAL_FLAGS) + EXIT_STATUSES


def wants_help(argv: list[str]) -> bool:
    """``-h`` / ``--help`` among the arguments, before any ``--`` (argparse prints the help and exits 0)."""
    words = argv[: argv.index("--")] if "--" in argv else argv
    return any(a in ("-h", "--help") for a in words)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    level = None
    while argv[:1] and argv[0] in VERBOSITY:
        level = VERBOSITY[argv.pop(0)]
    logs.setup(level)
    if argv[:1] == ["--version"]:
        print(__version__)
        return 0
    for n in range(min(len(argv), 3), 0, -1):
        words = tuple(argv[:n])
        if words in COMMANDS:
            target, _ = COMMANDS[words]
            module_name, func_name = target.split(":")
            func = getattr(importlib.import_module(module_name), func_name)
            try:
                return int(func(argv[n:]) or 0)
            except SystemExit as done:  # argparse's --help: the exit statuses close every command's help
                if done.code in (None, 0) and wants_help(argv[n:]):
                    print(EXIT_STATUSES, end="", flush=True)
                raise
            except AmnetError as exc:
                print(f"amnet {' '.join(words)}: error: {exc}", file=sys.stderr)
                return exit_code(exc)
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
    prefix = tuple(w for w in argv if not w.startswith("-"))
    while prefix and not any(k[: len(prefix)] == prefix for k in COMMANDS):
        prefix = prefix[:-1]
    helped = not argv or wants_help(argv)
    print(_usage(prefix), file=sys.stdout if helped else sys.stderr)
    if not helped:
        print(f"amnet: unknown command {' '.join(argv)!r}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
