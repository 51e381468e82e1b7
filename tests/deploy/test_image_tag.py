"""Images are tagged by their content (``components/images.py``), and the compiled pipeline pins that tag.

The tag is a digest of what the images are built from, so it must move with every file the Dockerfiles
copy and with the Dockerfiles, stay put for anything else, be the same wherever the same sources are
(a checkout, a wheel built from it, an sdist), and be what ``images/build.py`` builds and what the
compiled YAML pulls.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_images import DOCKERFILES, copy_sources, instructions

ROOT = Path(__file__).resolve().parents[2]
CONTENT_TAG = re.compile(r"c-[0-9a-f]{12}")


def load(path: Path, name: str = "image_names_under_test"):
    """``components/images.py`` (or a copy of it) loaded on its own, as images/build.py and the package
    build load it."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def names(monkeypatch):
    monkeypatch.delenv("AMNET_IMAGE_TAG", raising=False)
    monkeypatch.setenv("AMNET_IMAGE_REGISTRY", "registry.test/ci")
    return load(ROOT / "components" / "images.py")


@pytest.fixture()
def tree(tmp_path: Path, names) -> Path:
    """A copy of the image inputs (and of ``.dockerignore``) in a temporary folder."""
    root = tmp_path / "src-tree"
    for relpath in [*names.input_files(ROOT), ".dockerignore"]:
        target = root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relpath, target)
    return root


def test_the_inputs_are_every_copy_source_of_both_dockerfiles(names):
    copied = {"images/cpu/Dockerfile", "images/gpu/Dockerfile"}
    for dockerfile in DOCKERFILES.values():
        for word, rest in instructions(dockerfile):
            if word in ("COPY", "ADD"):
                copied |= {s.rstrip("/") for s in copy_sources(rest) or []}
    assert set(names.INPUTS) == copied


def test_the_tag_is_short_hex_and_names_both_images(names):
    tag = names.content_tag(ROOT)
    assert CONTENT_TAG.fullmatch(tag)
    cpu, gpu, alias = names.PROJECT_IMAGE, names.GPU_IMAGE, names.PROJECT_IMAGE_ALIAS
    assert cpu == f"registry.test/ci/amnet:{tag}"
    assert gpu == f"registry.test/ci/amnet:{tag}-cuda"
    assert alias == f"registry.test/ci/amnet:{names.VERSION}"
    assert names.version_alias(names.GPU_IMAGE) == names.GPU_IMAGE_ALIAS
    assert names.version_alias(names.PROJECT_IMAGE_ALIAS) is None  # not a content tag


@pytest.mark.parametrize("changed", ["src/amnet/__init__.py", "components/images.py", "pipeline/cli.py",
                                     "requirements.lock", "pyproject.toml", "README.md", "images/gpu/Dockerfile"])
def test_the_tag_changes_with_every_input(names, tree: Path, changed: str):
    before = names.content_tag(tree)
    with (tree / changed).open("a") as f:
        f.write("\n# changed\n")
    assert names.content_tag(tree) != before


def test_a_new_source_file_changes_the_tag(names, tree: Path):
    before = names.content_tag(tree)
    (tree / "src" / "amnet" / "extra.py").write_text("X = 1\n")
    assert names.content_tag(tree) != before


@pytest.mark.parametrize("unrelated", ["docs/deploy.md", "tests/test_x.py", "images/README.md", "images/build.py",
                                       "src/amnet/__pycache__/cli.cpython-311.pyc", "src/amnet/local.env",
                                       "components/image_tag.txt"])
def test_the_tag_stays_for_what_the_build_context_leaves_out(names, tree: Path, unrelated: str):
    before = names.content_tag(tree)
    (tree / unrelated).parent.mkdir(parents=True, exist_ok=True)
    (tree / unrelated).write_text("not in the image\n")
    assert names.content_tag(tree) == before


def test_the_same_sources_give_the_same_tag_anywhere(names, tree: Path, tmp_path: Path):
    other = tmp_path / "elsewhere"
    shutil.copytree(tree, other)
    os.utime(other / "README.md", (0, 0))  # times and the folder are not content
    assert names.content_tag(other) == names.content_tag(tree)


def test_where_the_tag_comes_from(monkeypatch, tmp_path: Path):
    """An explicit AMNET_IMAGE_TAG, else the checkout, else the tag stored in an installed package, else the
    version with a warning."""
    monkeypatch.delenv("AMNET_IMAGE_TAG", raising=False)
    checkout = load(ROOT / "components" / "images.py")
    assert checkout.image_tag() == checkout.content_tag(ROOT)
    monkeypatch.setenv("AMNET_IMAGE_TAG", "c-0123456789ab")
    assert load(ROOT / "components" / "images.py").PROJECT_IMAGE.endswith("/amnet:c-0123456789ab")
    monkeypatch.delenv("AMNET_IMAGE_TAG")

    installed = tmp_path / "site-packages" / "amnet_components"
    installed.mkdir(parents=True)
    shutil.copy2(ROOT / "components" / "images.py", installed / "images.py")
    (installed / "image_tag.txt").write_text("c-ba9876543210\n")
    assert load(installed / "images.py").GPU_IMAGE.endswith("/amnet:c-ba9876543210-cuda")
    (installed / "image_tag.txt").unlink()
    bare = load(installed / "images.py")  # loading computes nothing (a package build loads it so)
    with pytest.warns(UserWarning, match="no image content tag"):
        image = bare.PROJECT_IMAGE
    assert image.endswith(f"/amnet:{bare.VERSION}")


@pytest.mark.slow
def test_a_wheel_and_an_sdist_carry_the_checkouts_tag(names, tree: Path, tmp_path: Path):
    """Built from a checkout, the wheel stores the tag; an sdist stores it too (it lacks the Dockerfiles),
    and a wheel built from that sdist keeps it."""
    expected = names.content_tag(tree)
    build = ("import sys; from setuptools import build_meta as b; "
             "print(getattr(b, sys.argv[1])(sys.argv[2]))")

    def run(kind: str, cwd: Path, out: Path) -> Path:
        done = subprocess.run([sys.executable, "-c", build, kind, str(out)], cwd=cwd, check=True,
                              capture_output=True, text=True)
        return out / done.stdout.strip().splitlines()[-1]

    wheel = run("build_wheel", tree, tmp_path / "wheel")
    assert zipfile.ZipFile(wheel).read("amnet_components/image_tag.txt").decode().strip() == expected
    sdist = run("build_sdist", tree, tmp_path / "sdist")
    shutil.unpack_archive(sdist, tmp_path / "unpacked")
    unpacked = next((tmp_path / "unpacked").iterdir())
    assert (unpacked / "components" / "image_tag.txt").read_text().strip() == expected
    again = run("build_wheel", unpacked, tmp_path / "wheel-from-sdist")
    assert zipfile.ZipFile(again).read("amnet_components/image_tag.txt").decode().strip() == expected
    assert not (tree / "components" / "image_tag.txt").exists()  # the checkout is left as it was


def test_build_py_tags_the_content_tag_and_its_version_alias(names):
    build = load(ROOT / "images" / "build.py", "images_build_under_test")
    tag = names.content_tag(ROOT)
    cpu, own = build.plan_tags([f"registry.test/ci/amnet:{tag}"], "cpu")
    assert cpu == [f"registry.test/ci/amnet:{tag}", f"registry.test/ci/amnet:{names.VERSION}"] and own == tag
    gpu, own = build.plan_tags([f"registry.test/ci/amnet:{tag}-cuda"], "gpu")
    assert gpu == [f"registry.test/ci/amnet:{tag}-cuda", f"registry.test/ci/amnet:{names.VERSION}-cuda"]
    assert own == tag  # the image's AMNET_IMAGE_TAG: the CPU tag, which GPU_IMAGE extends with -cuda
    assert build.plan_tags(["my/amnet:dev"], "cpu") == (["my/amnet:dev"], "")
    with pytest.raises(SystemExit, match="not the content tag of these sources"):
        build.plan_tags(["registry.test/ci/amnet:c-000000000000"], "cpu")


def test_the_compiled_pipeline_pins_the_content_tag(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "AMNET_IMAGE_TAG"}
    env["AMNET_IMAGE_REGISTRY"] = "registry.test/ci"
    names = load(ROOT / "components" / "images.py")
    before = names.content_tag(ROOT)
    out = tmp_path / "pipeline.yaml"
    subprocess.run([sys.executable, "-m", "amnet_pipeline.cli", "compile", "--out", str(out)], check=True, env=env,
                   capture_output=True, text=True)
    after = names.content_tag(ROOT)  # the sources may be edited meanwhile: either is this checkout's
    spec, _ = yaml.safe_load_all(out.read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    tags = {image.removeprefix("registry.test/ci/amnet:").removesuffix("-cuda") for image in images}
    assert len(tags) == 1 and tags <= {before, after}, images
    assert any(image.endswith("-cuda") for image in images)
