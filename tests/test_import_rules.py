"""The layout's import rules (docs/architecture.md), checked on the source: every import statement,
module level or inside a function, is read with ``ast``. One rule per package, and no import circle
between amnet's modules (lazy imports included)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "amnet"
COMPONENTS = Path(__file__).resolve().parents[1] / "components"
FLAT_ALLOWED = {"__init__.py", "cli.py", "config.py", "storage.py", "errors.py", "model_store.py", "runtime.py",
                "names.py",
                "logs.py",  # the logging set-up every entry point calls (standard library only)
                "cpu_kernels.py"}  # portable CPU kernels, pinned when amnet is imported (standard library only)


def imports(path: Path) -> list[str]:
    """Every module name an ``import`` / ``from ... import`` in ``path`` names (absolute form)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            if node.module == "amnet":  # from amnet import tracking -> amnet.tracking
                names += [f"amnet.{alias.name}" for alias in node.names]
    return names


def modules(folder: str = "") -> list[Path]:
    return sorted((SRC / folder).rglob("*.py"))


def where(path: Path) -> str:
    return str(path.relative_to(SRC.parent))


def test_no_module_sits_flat_beside_the_packages_but_the_allowed_ones():
    assert {p.name for p in SRC.glob("*.py")} <= FLAT_ALLOWED, sorted(p.name for p in SRC.glob("*.py"))


def test_nothing_under_src_imports_kfp():
    bad = [(where(p), m) for p in modules() for m in imports(p) if m.split(".")[0] == "kfp"]
    assert not bad, bad


def test_models_import_only_torch_and_the_leaf_modules():
    allowed = ("torch", "torchvision", "amnet.errors", "amnet.names", "amnet.models", "__future__")
    stdlib = ("dataclasses", "typing", "collections", "math", "warnings", "io", "os")
    bad = [(where(p), m) for p in modules("models") for m in imports(p)
           if not m.startswith(allowed) and m.split(".")[0] not in stdlib]
    assert not bad, bad


def test_names_is_standard_library_only():
    assert all(m.split(".")[0] in ("__future__",) for m in imports(SRC / "names.py")), imports(SRC / "names.py")


def test_only_steps_ops_and_the_cli_import_mlflow():
    bad = [(where(p), m) for p in modules() for m in imports(p) if m.split(".")[0] == "mlflow"
           and not where(p).startswith(("amnet/steps/", "amnet/ops/")) and where(p) != "amnet/cli.py"]
    assert not bad, bad


def test_only_storage_and_the_stack_import_boto3():
    bad = [(where(p), m) for p in modules() for m in imports(p) if m.split(".")[0] in ("boto3", "botocore")
           and where(p) != "amnet/storage.py" and not where(p).startswith("amnet/stack/")]
    assert not bad, bad


@pytest.mark.parametrize("package", ["retrieval", "search"])
def test_inference_never_imports_training(package):
    bad = [(where(p), m) for p in modules(package) for m in imports(p) if m.startswith("amnet.train")]
    assert not bad, bad


@pytest.mark.parametrize("package,forbidden", [
    ("data", ("amnet.train", "amnet.retrieval", "amnet.search", "amnet.report", "amnet.ops", "amnet.steps",
              "amnet.stack")),
    ("train", ("amnet.retrieval", "amnet.search", "amnet.report", "amnet.ops", "amnet.steps", "amnet.stack")),
    ("retrieval", ("amnet.train", "amnet.search", "amnet.report", "amnet.ops", "amnet.steps", "amnet.stack")),
    # search takes model files only: MLflow URIs are resolved above it (ops.registry.model_uri)
    ("search", ("amnet.train", "amnet.report", "amnet.ops", "amnet.steps", "amnet.stack", "mlflow")),
    ("report", ("amnet.train", "amnet.search", "amnet.ops", "amnet.steps", "amnet.stack", "mlflow")),
    ("ops", ("amnet.steps", "amnet.stack")),
    # tracking is the bottom of ops: runs, lineage and compare know nothing of the registry or clusters
    ("ops/tracking", ("amnet.ops.registry", "amnet.ops.cluster", "amnet.search", "amnet.retrieval", "amnet.train",
                      "amnet.models")),
    # the registry stands on tracking; it never reaches clusters or training code
    ("ops/registry", ("amnet.ops.cluster", "amnet.train")),
    # a TrainJob is plain Kubernetes: no MLflow, no training code in the submitting process
    ("ops/cluster", ("amnet.ops.tracking", "amnet.ops.registry", "amnet.search", "amnet.retrieval", "amnet.train",
                     "amnet.report", "mlflow")),
    ("steps", ("amnet.stack",)),
])
def test_imports_point_down(package, forbidden):
    bad = [(where(p), m) for p in modules(package) for m in imports(p) if m.startswith(forbidden)]
    assert not bad, bad


def test_the_champion_does_not_import_the_gate():
    """One direction only: the gate (``ops.registry.gate``) uses the champion's public functions."""
    assert not [m for m in imports(SRC / "ops" / "registry" / "champion.py") if m.startswith("amnet.ops.registry")]


def test_the_stack_is_a_standalone_dev_tool():
    """``amnet.stack`` needs the standard library, boto3 (lazily), amnet.errors and amnet.logs (standard
    library only: its ``python -m`` entry's logging set-up); it starts MLflow as a command (``python -m
    mlflow server``), never imports it; nothing in amnet imports the stack (the CLI dispatches to
    ``amnet.stack.cli`` by name)."""
    allowed = ("amnet.errors", "amnet.logs", "amnet.stack", "boto3", "botocore")
    bad = [(where(p), m) for p in modules("stack") for m in imports(p)
           if not m.startswith(allowed) and m.split(".")[0] not in sys.stdlib_module_names]
    assert not bad, bad
    users = [(where(p), m) for p in modules() for m in imports(p)
             if m.startswith("amnet.stack") and not where(p).startswith("amnet/stack/")]
    assert not users, users


def test_components_import_nothing_from_amnet_but_steps():
    bad = [(p.name, m) for p in sorted(COMPONENTS.glob("*.py")) for m in imports(p)
           if m.split(".")[0] == "amnet" and not m.startswith("amnet.steps")]
    assert not bad, bad


def test_data_stages_and_the_fanout_plan_do_not_load_torch():
    """Split, fingerprint and plan-featurization never need torch: importing it costs ~780 MB of RSS and
    seconds per kfp.local task (the DeepFashion-sized split's peak was mostly torch)."""
    import subprocess
    import sys

    code = ("import sys; import amnet.steps.split, amnet.steps.fingerprint, amnet.steps.index, amnet.steps.variants; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ------------------------------------------------------------------------------- no import circles


def module_name(path: Path) -> str:
    """``src/amnet/ops/tracking/runs.py`` -> ``amnet.ops.tracking.runs``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """amnet module -> the amnet modules it imports: every import statement (module level, inside a
    function, under ``TYPE_CHECKING``), ``from amnet.ops.tracking import runs`` read as the submodule
    ``amnet.ops.tracking.runs``, ``from amnet.ops.tracking.runs import X`` as ``amnet.ops.tracking.runs``."""
    known = {module_name(p): p for p in modules()}

    def nearest(name: str) -> str | None:  # the module itself, or the package a name lives in
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..y import z
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in known else base)
        graph[name] = {t for t in (nearest(t) for t in targets if t.split(".")[0] == "amnet") if t and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of ``graph`` as ``[a, b, ..., a]``, or [] when there is none (iterative DFS)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph.get(root, ())))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return []


def test_the_cycle_finder_reports_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_reads_submodules_and_lazy_imports():
    graph = import_graph()
    assert "amnet.ops.tracking.runs" in graph["amnet.ops.registry.model_uri"]  # from amnet.ops.tracking import runs
    assert "amnet.retrieval.evaluate" in graph["amnet.ops.registry.champion"]  # imported inside rescore()
    assert "amnet.storage" in graph["amnet.config"] or "amnet.storage" in graph["amnet.model_store"]


def test_no_import_circle_between_amnet_modules():
    cycle = find_cycle(import_graph())
    assert not cycle, "import circle: " + " -> ".join(cycle)


def unit(module: str) -> str:
    """The package a module belongs to (``amnet.ops.tracking.runs`` -> ``amnet.ops.tracking``, ``amnet.data.split`` ->
    ``amnet.data``); a flat module (``amnet.storage``) is its own."""
    parts = module.split(".")
    depth = 3 if parts[1:2] == ["ops"] else 2
    return ".".join(parts[:depth]) if len(parts) > depth else module


def test_no_import_circle_between_packages():
    """Coarser too: the packages (ops' tracking / registry / cluster each one) form layers, not circles."""
    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        packages.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    cycle = find_cycle(packages)
    assert not cycle, "package circle: " + " -> ".join(cycle)
