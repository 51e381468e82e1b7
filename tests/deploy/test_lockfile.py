"""Dependencies are pinned in ``requirements.lock`` and every install path uses it.

The Makefile (and so CI, which runs ``make test``) and both container images install with
``-c requirements.lock``; the lock satisfies every requirement pyproject.toml declares, and the
environment running these tests holds exactly the locked versions.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]


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


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]


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
    direct = {canonicalize_name(r.name) for r in declared()}
    missing = sorted(direct - set(installed))
    assert not missing, f"declared but not installed: {missing}"
    wrong = {name: (installed[name], pin) for name, pin in pins.items()
             if name in installed and Version(installed[name]).public != Version(pin).public}
    assert not wrong, f"installed != locked (installed, locked): {wrong}; reinstall with `make install`"


def test_every_install_path_uses_the_lock():
    makefile = (REPO / "Makefile").read_text()
    assert "pip install --quiet -c requirements.lock -e '.[dev]'" in makefile
    assert "requirements.lock" in makefile.split("$(STAMP):", 1)[1].splitlines()[0]  # editing it reinstalls
    assert "make test" in (REPO / ".ci" / "run").read_text()
    gpu = (REPO / "images/gpu/Dockerfile").read_text()
    assert "COPY pyproject.toml README.md requirements.lock ./" in gpu
    assert "pip install --no-cache-dir -c requirements.lock ." in gpu
    # The CPU image installs in layers (torch, the other dependencies, then the amnet wheel with --no-deps):
    # every layer that resolves dependencies is constrained by the lock.
    cpu = (REPO / "images/cpu/Dockerfile").read_text()
    assert "COPY requirements.lock ./" in cpu
    joined = cpu.replace("\\\n", " ")
    resolving = [line for line in joined.splitlines() if "pip install" in line and "--no-deps" not in line]
    assert len(resolving) >= 2 and all("-c requirements.lock" in line for line in resolving), resolving
    assert "--no-deps /tmp/wheels/amnet-" in joined
