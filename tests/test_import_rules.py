"""The layout's import rules (docs/architecture.md), checked on the source: every import statement,
module level or inside a function, is read with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "amnet"
COMPONENTS = Path(__file__).resolve().parents[1] / "components"
FLAT_ALLOWED = {"__init__.py", "cli.py", "config.py", "storage.py", "errors.py", "model_store.py", "runtime.py",
                "names.py"}


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
           and not where(p).startswith(("amnet/steps/", "amnet/ops/")) and p.name != "cli.py"]
    assert not bad, bad
    # the CLI that may: the search CLI and the top-level dispatcher; neither does today beyond ops
    assert not [m for m in imports(SRC / "search" / "cli.py") if m.startswith("mlflow")]


@pytest.mark.parametrize("package", ["retrieval", "search"])
def test_inference_never_imports_training(package):
    bad = [(where(p), m) for p in modules(package) for m in imports(p) if m.startswith("amnet.train")]
    assert not bad, bad


@pytest.mark.parametrize("package,forbidden", [
    ("retrieval", ("amnet.search", "amnet.report", "amnet.ops", "amnet.steps")),
    ("train", ("amnet.retrieval", "amnet.search", "amnet.report", "amnet.ops", "amnet.steps")),
    ("data", ("amnet.train", "amnet.retrieval", "amnet.search", "amnet.report", "amnet.ops", "amnet.steps")),
    ("report", ("amnet.ops", "amnet.steps", "amnet.search")),
    ("ops", ("amnet.steps",)),
])
def test_imports_point_down(package, forbidden):
    bad = [(where(p), m) for p in modules(package) for m in imports(p) if m.startswith(forbidden)]
    assert not bad, bad


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
