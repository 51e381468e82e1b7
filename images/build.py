#!/usr/bin/env python3
"""Build the amnet images here or anywhere: pick a base and a torch source that work, then report.

``make images`` calls this. What it decides, in order, and prints:

* **base image** (``--base``): the public ``python:3.11.13-slim-bookworm`` when it is present or can be
  pulled; otherwise the Debian base ``images/base/build-base.sh`` makes with mmdebstrap (made once,
  then reused: ``make base-image``).
* **torch source** (``--torch-source``): ``cpu-index`` (download.pytorch.org, CPU-only wheels, no CUDA
  libraries) when that index answers; else ``local`` when a PEP 503 wheel mirror is on this disk
  (``--wheel-mirror``; served read-only on a loopback port for the build's duration); else ``pypi``
  (PyPI's torch, which brings the CUDA libraries).
* ``docker build --network host`` (so pip reaches PyPI and the loopback mirror), then the build time,
  the image size and what dominates it (the largest folders of the image's venv).
* **tags**: every ``--tag``; a content tag (``NAME:c-<12 hex>[-cuda]``, ``components/images.py``) must be
  the one of the sources being built (else the build stops), and the image also gets the version alias
  ``NAME:VERSION[-cuda]``. The image's ``AMNET_IMAGE_TAG`` is set to its content tag, so a pipeline
  compiled inside it pins it.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_BASE = "python:3.11.13-slim-bookworm"  # the Dockerfile's default BASE_IMAGE
LOCAL_BASE = "amnet-base:bookworm-py3.11"  # what images/base/build-base.sh makes
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DEFAULT_MIRRORS = ("/opt/pypi-more",)  # a PEP 503 tree: simple/<project>/index.html + files/
# The mirror's loopback port is part of the TORCH_INDEX_URL build argument, hence of Docker's layer cache
# key: a fixed port keeps the torch and dependency layers cached between builds.
MIRROR_PORT = 38765


def image_names():
    """``components/images.py`` loaded on its own (standard library only): the one place tags are made."""
    spec = importlib.util.spec_from_file_location("amnet_image_names", ROOT / "components" / "images.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plan_tags(requested: list[str], kind: str) -> tuple[list[str], str]:
    """``(every tag to apply, the content tag for AMNET_IMAGE_TAG or '')``. A content tag that is not the
    sources' own stops the build: it would publish this code under another content's name."""
    names = image_names()
    current = names.content_tag(ROOT)
    tags: list[str] = []
    own = ""
    for tag in requested:
        alias = names.version_alias(tag)
        if alias is not None:
            tag_part = tag.rsplit(":", 1)[1].removesuffix(names.GPU_SUFFIX)
            if tag_part != current:
                raise SystemExit(f"images/build.py: {tag} is not the content tag of these sources ({current}); "
                                 "take the tag from components/images.py (make images)")
            if kind == "gpu" and not tag.endswith(names.GPU_SUFFIX):
                raise SystemExit(f"images/build.py: the CUDA image's content tag ends with {names.GPU_SUFFIX}: {tag}")
            own = current
        tags += [t for t in (tag, alias) if t and t not in tags]
    return tags, own


def say(text: str) -> None:
    print(f"[images] {text}", flush=True)


def docker(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True, timeout=timeout)


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def pick_base(requested: str) -> str:
    """``auto``: the public base if present or pullable, else the local Debian base (made if missing)."""
    if requested != "auto":
        return requested
    if image_exists(PUBLIC_BASE):
        return PUBLIC_BASE
    try:
        if docker("pull", "--quiet", PUBLIC_BASE, check=False, timeout=120).returncode == 0:
            return PUBLIC_BASE
    except subprocess.TimeoutExpired:
        pass
    say(f"{PUBLIC_BASE} cannot be pulled here; using the Debian base {LOCAL_BASE}")
    if not image_exists(LOCAL_BASE):
        say(f"making {LOCAL_BASE} with mmdebstrap (images/base/build-base.sh, about a minute)")
        subprocess.run([str(ROOT / "images" / "base" / "build-base.sh"), LOCAL_BASE], check=True)
    return LOCAL_BASE


def reachable(url: str, timeout: float = 8.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (a fixed https URL)
            return response.status < 400
    except OSError:
        return False


def find_mirror(candidates: list[str]) -> Path | None:
    for folder in candidates:
        path = Path(folder)
        if (path / "simple" / "torch" / "index.html").is_file():
            return path
    return None


@contextmanager
def serve_folder(folder: Path):
    """Serve ``folder`` read-only on 127.0.0.1 (a free port) while the build runs; yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # the build log shows pip's own lines
            pass

        def do_PUT(self) -> None:  # read-only
            self.send_error(405)

    handler = functools.partial(Quiet, directory=str(folder))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", MIRROR_PORT), handler)
    except OSError:
        say(f"port {MIRROR_PORT} is busy: serving on a free port (the torch layer will not come from the cache)")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def torch_index(source: str, mirrors: list[str]):
    """Yields ``(source, TORCH_INDEX_URL)`` for the chosen torch source ('' = PyPI)."""
    if source == "auto":
        if reachable(CPU_INDEX + "/torch/"):
            source = "cpu-index"
        elif find_mirror(mirrors):
            source = "local"
        else:
            source = "pypi"
        say(f"torch source: {source} (auto)")
    if source == "cpu-index":
        yield source, CPU_INDEX
    elif source == "pypi":
        yield source, ""
    elif source == "local":
        mirror = find_mirror(mirrors)
        if mirror is None:
            raise SystemExit(f"images/build.py: no wheel mirror with torch in {mirrors}; "
                             "pass --wheel-mirror DIR or --torch-source pypi")
        with serve_folder(mirror) as url:
            say(f"serving the wheel mirror {mirror} on {url} for the build")
            yield source, f"{url}/simple"
    else:
        yield "custom", source  # an index URL


def venv_breakdown(tag: str, top: int = 6) -> list[tuple[str, int]]:
    """The largest entries of the image's site-packages (bytes), to say what dominates its size."""
    script = (
        "import os, sys, json, sysconfig\n"
        "root = sysconfig.get_paths()['purelib']\n"
        "def size(p):\n"
        "    if os.path.isfile(p): return os.path.getsize(p)\n"
        "    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(p) for f in fs\n"
        "               if not os.path.islink(os.path.join(d, f)))\n"
        "print(json.dumps(sorted(((e, size(os.path.join(root, e))) for e in os.listdir(root)),\n"
        "                        key=lambda x: -x[1])))\n")
    out = docker("run", "--rm", "--entrypoint", "python3", tag, "-c", script).stdout
    return [(name, int(size)) for name, size in json.loads(out)[:top]]


def build(kind: str, tags: list[str], own_tag: str, base: str, torch_url: str, torch_source: str) -> None:
    dockerfile = ROOT / "images" / kind / "Dockerfile"
    cmd = ["docker", "build", "--network", "host", "-f", str(dockerfile)]
    for tag in tags:
        cmd += ["-t", tag]
    if own_tag:
        cmd += ["--build-arg", f"AMNET_IMAGE_TAG={own_tag}"]
    if kind == "cpu":
        cmd += ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"TORCH_INDEX_URL={torch_url}",
                "--label", f"org.amnet.torch-source={torch_source}"]
    cmd.append(str(ROOT))
    say("$ " + shlex.join(cmd))
    start = time.monotonic()
    subprocess.run(cmd, check=True)
    took = time.monotonic() - start
    tag = tags[0]
    size = int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout.strip())
    say(f"built {', '.join(tags)} in {took:.0f} s: {size / 1e9:.2f} GB (base {base}, torch source {torch_source})")
    biggest = ", ".join(f"{name} {bytes_ / 1e6:,.0f} MB" for name, bytes_ in venv_breakdown(tag))
    say(f"largest in its venv: {biggest}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="images/build.py", description=__doc__.split("\n\n")[0],
        epilog="examples (make images and make images-gpu take the tags from components/images.py):\n"
        "  python3 images/build.py --tag ghcr.io/amnet-project/amnet:c-0123456789ab\n"
        "  python3 images/build.py --kind gpu --tag ghcr.io/amnet-project/amnet:c-0123456789ab-cuda   "
        "# where the CUDA base can be pulled",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=("cpu", "gpu"), default="cpu", help="which image (default: %(default)s)")
    p.add_argument("--tag", required=True, action="append",
                   help="image tag, as components/images.py names it (repeatable); a content tag also gets "
                   "the version alias")
    p.add_argument("--base", default=os.environ.get("BASE_IMAGE", "auto"),
                   help=f"CPU base image, or 'auto' ({PUBLIC_BASE} if pullable, else {LOCAL_BASE}); "
                   "default: $BASE_IMAGE or auto")
    p.add_argument("--torch-source", default=os.environ.get("TORCH_SOURCE", "auto"),
                   help="auto | cpu-index | local | pypi | an index URL (default: $TORCH_SOURCE or auto)")
    p.add_argument("--wheel-mirror", action="append", default=None, metavar="DIR",
                   help=f"PEP 503 wheel mirror for --torch-source local (default: {', '.join(DEFAULT_MIRRORS)})")
    args = p.parse_args(argv)
    tags, own_tag = plan_tags(args.tag, args.kind)
    if docker("info", check=False).returncode != 0:
        print("images/build.py: no Docker engine answers `docker info`; start dockerd "
              "(Debian: apt-get install -y docker.io && dockerd &)", file=sys.stderr)
        return 2
    if args.kind == "gpu":
        build("gpu", tags, own_tag, "", "", "the CUDA base's own torch")
        return 0
    base = pick_base(args.base)
    with torch_index(args.torch_source, args.wheel_mirror or list(DEFAULT_MIRRORS)) as (source, url):
        build("cpu", tags, own_tag, base, url, source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
