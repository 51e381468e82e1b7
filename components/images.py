"""The container images every component runs in, tagged by their content.

A tag names what went into the image: ``REGISTRY/amnet:c-<12 hex>`` (CPU) and ``...-cuda`` (CUDA), where
the hex is a SHA-256 over every file the images are built from (:data:`INPUTS`: the Dockerfiles, the
package sources and metadata, the lock), as the Docker build context holds them. A code or dependency
change is a new tag, so a node that cached an older image never runs it under the new pipeline; the
same sources give the same tag on any machine, without git or Docker.

Where the tag comes from when the pipeline is compiled, first match wins:

1. ``AMNET_IMAGE_TAG``: an explicit tag (e.g. the version alias ``0.1.0``, or the content tag of an
   image that was built elsewhere; the images themselves set it to their own tag);
2. the source checkout this module lives in (an editable install, ``make``): computed from the files;
3. the tag stored in the installed package when its wheel was built from a checkout (``image_tag.txt``,
   written by :class:`BuildPy` and kept in an sdist by :class:`SDist`);
4. otherwise the version alias, with a warning (a package built without the image sources).

``images/build.py`` tags each built image with its content tag and with the version alias
(``REGISTRY/amnet:VERSION``, a moving name for people, never what a compiled pipeline pulls). The
registry is read from ``AMNET_IMAGE_REGISTRY`` (default ``ghcr.io/amnet-project``).

Standard library only: ``images/build.py`` and the package build load this file on its own.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from functools import cache
from importlib import metadata
from pathlib import Path

DEFAULT_REGISTRY = "ghcr.io/amnet-project"
TAG_ENV = "AMNET_IMAGE_TAG"
TAG_FILE = "image_tag.txt"  # in the installed amnet_components package, written at wheel build time
TAG_PREFIX = "c-"
TAG_HEX = 12
GPU_SUFFIX = "-cuda"
# What the images are built from: both Dockerfiles and every COPY source of their build context.
INPUTS = ("images/cpu/Dockerfile", "images/gpu/Dockerfile", "pyproject.toml", "README.md", "requirements.lock",
          "requirements-image.lock",
          "src", "pipeline", "components")
HERE = Path(__file__).resolve()


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A ``.dockerignore`` pattern (Go's filepath.Match plus ``**``) as a regex over slash paths."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _ignore_rules(root: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """``root/.dockerignore`` as ``[(negated, regex)]``, in file order."""
    path = root / ".dockerignore"
    lines = path.read_text().splitlines() if path.is_file() else []
    rules = []
    for line in (raw.strip() for raw in lines):
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), pattern_regex(line.lstrip("!").strip("/"))))
    return rules


def _in_context(relpath: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker's build context holds ``relpath``: the last matching rule decides, and a rule that
    matches a folder matches everything inside it."""
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, regex in rules:
        if any(regex.match(p) for p in prefixes):
            excluded = not negated
    return not excluded


def input_files(root: Path) -> list[str]:
    """The files of :data:`INPUTS` under ``root`` (slash paths, sorted): the Dockerfiles, and what the
    build context holds of the rest (``.dockerignore`` drops caches and local files)."""
    rules = _ignore_rules(root)
    found: list[str] = []
    for entry in INPUTS:
        path = root / entry
        if path.is_file():
            found.append(entry)
        elif path.is_dir():
            found += [f.relative_to(root).as_posix() for f in path.rglob("*") if f.is_file()]
    found = [f for f in found if f != f"components/{TAG_FILE}"]  # a stored tag is an output, not an input
    return sorted(f for f in found if f.startswith("images/") or _in_context(f, rules))


def is_source_tree(root: Path) -> bool:
    """Whether ``root`` holds every input (a checkout, not an installed package or a Docker context)."""
    return all((root / entry).exists() for entry in INPUTS)


def content_digest(root: Path) -> str:
    """SHA-256 (hex) over the path and bytes of every input file under ``root``."""
    total = hashlib.sha256()
    for relpath in input_files(root):
        data = (root / relpath).read_bytes()
        total.update(f"{relpath}\0{len(data)}\0".encode())
        total.update(hashlib.sha256(data).digest())
    return total.hexdigest()


def content_tag(root: Path) -> str:
    """``c-<12 hex>``: the short content tag of the sources under ``root``."""
    return TAG_PREFIX + content_digest(root)[:TAG_HEX]


def source_root() -> Path | None:
    """The checkout this module lives in (``components/`` under it), when it holds every input."""
    root = HERE.parents[1]
    return root if HERE.parent.name == "components" and is_source_tree(root) else None


def stored_tag() -> str | None:
    """The tag written into the installed package at wheel build time, if any."""
    path = HERE.parent / TAG_FILE
    tag = path.read_text().strip() if path.is_file() else ""
    return tag or None


def version() -> str:
    """The package version: the installed metadata, else ``pyproject.toml`` of the checkout."""
    try:
        return metadata.version("amnet")
    except metadata.PackageNotFoundError:
        pyproject = HERE.parents[1] / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text() if pyproject.is_file() else "", re.M)
        return found.group(1) if found else "0+unknown"


@cache
def image_tag() -> str:
    """The tag the compiled pipeline pins (see the module docstring for the order)."""
    if tag := os.environ.get(TAG_ENV, "").strip():
        return tag
    if (root := source_root()) is not None:
        return content_tag(root)
    if tag := stored_tag():
        return tag
    warnings.warn(f"no image content tag: this amnet was installed without its image sources and "
                  f"{TAG_ENV} is unset; the pipeline pins the version tag {version()!r}", stacklevel=3)
    return version()


def registry() -> str:
    return os.environ.get("AMNET_IMAGE_REGISTRY", DEFAULT_REGISTRY).rstrip("/")


def names() -> dict[str, str]:
    """The image names, made when first asked for (``from amnet_components.images import PROJECT_IMAGE``),
    so loading this module for a package build or ``images/build.py`` computes no tag."""
    cpu = f"{registry()}/amnet:{image_tag()}"
    alias = f"{registry()}/amnet:{version()}"
    return {
        "REGISTRY": registry(),
        "VERSION": version(),
        "PROJECT_IMAGE": cpu,  # CPU image: data, evaluation, report, tracking, the TrainJob submitter
        "GPU_IMAGE": cpu + GPU_SUFFIX,  # CUDA image: training and featurization
        "PROJECT_IMAGE_ALIAS": alias,  # the same CPU image under the package version
        "GPU_IMAGE_ALIAS": alias + GPU_SUFFIX,
    }


def version_alias(reference: str, version_: str | None = None) -> str | None:
    """``NAME:c-<hex>[-cuda]`` -> ``NAME:VERSION[-cuda]``; ``None`` for a reference that is no content tag."""
    found = re.fullmatch(rf"(.+):{TAG_PREFIX}[0-9a-f]{{{TAG_HEX}}}({GPU_SUFFIX})?", reference)
    return f"{found.group(1)}:{version_ or version()}{found.group(2) or ''}" if found else None


def __getattr__(name: str):
    """The image names (:func:`names`), and ``BuildPy`` and ``SDist`` (``[tool.setuptools.cmdclass]``),
    made on demand: importing this module computes nothing and never needs setuptools."""
    if name in ("BuildPy", "SDist"):
        return _setuptools_commands()[name]
    if name in ("REGISTRY", "VERSION", "PROJECT_IMAGE", "GPU_IMAGE", "PROJECT_IMAGE_ALIAS", "GPU_IMAGE_ALIAS"):
        return names()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _setuptools_commands() -> dict[str, type]:
    """Package build hooks that store the content tag in the package, so a pipeline compiled where amnet
    is installed from a wheel pins the image built from the same sources."""
    from setuptools.command.build_py import build_py
    from setuptools.command.sdist import sdist

    class BuildPy(build_py):
        """Writes ``amnet_components/image_tag.txt`` into the wheel when built from a checkout (a wheel
        built from an sdist keeps the file the sdist holds)."""

        def run(self) -> None:
            super().run()
            root = Path.cwd()
            if self.editable_mode or not is_source_tree(root):
                return
            target = Path(self.build_lib) / "amnet_components" / TAG_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content_tag(root) + "\n")

    class SDist(sdist):
        """Writes ``components/image_tag.txt`` into the sdist, which lacks the Dockerfiles to compute it."""

        def make_release_tree(self, base_dir: str, files: list[str]) -> None:
            super().make_release_tree(base_dir, files)
            if is_source_tree(Path.cwd()):
                target = Path(base_dir) / "components" / TAG_FILE
                target.unlink(missing_ok=True)  # a hard link to the checkout's, if one exists
                target.write_text(content_tag(Path.cwd()) + "\n")

    return {"BuildPy": BuildPy, "SDist": SDist}
