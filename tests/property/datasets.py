"""A dataset folder for the manifest tests: good, broken and escaping image files, and a secret image
outside the root that no manifest may reach."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from amnet.data.schema import Attribute, Vocabulary
from tests.helpers import jpeg
from tests.property.inputs import mostly, text

VOCAB = Vocabulary((Attribute("color", ("red", "blue")), Attribute("shape", ("round", "square"))))
CELLS = ["red", "blue", "round", "square", " red ", "RED", "", " ", "green", "red\x00", "é"]


ROOT, SECRET = "<ROOT>", "<SECRET>"  # placeholders for the folders, filled in by Layout.real
# Image entries a manifest may hold: inside, missing, broken, and every way out of the root.
PATHS = ["a.jpg", "sub/b.jpg", "./a.jpg", "sub/../a.jpg", "sub//b.jpg", "broken.jpg", "empty.jpg", "folder.jpg",
         "missing.jpg", "link-out.jpg", "link-in.jpg", "sub", ".", "..", "", " ", "../secret.jpg",
         "../../secret.jpg", "sub/../../secret.jpg", SECRET, f"{ROOT}/a.jpg", f"{ROOT}/../secret.jpg",
         f"file://{SECRET}", "s3://bucket/a.jpg", "~/a.jpg", "..\\secret.jpg", "a.jpg\x00", "%2e%2e/secret.jpg",
         "//a.jpg", "/", "\\\\server\\share\\a.jpg"]


@dataclass(frozen=True)
class Layout:
    """``root`` (the dataset) and ``secret`` (an image beside it, outside, with bytes of its own)."""

    root: Path
    secret: Path

    @property
    def secret_bytes(self) -> bytes:
        return self.secret.read_bytes()

    def real(self, value: object) -> object:
        """``value`` with the folder placeholders of :data:`PATHS` filled in."""
        if not isinstance(value, str):
            return value
        return value.replace(ROOT, str(self.root)).replace(SECRET, str(self.secret))


def make_layout(base: Path) -> Layout:
    root = base / "root"
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "folder.jpg").mkdir(exist_ok=True)
    (root / "a.jpg").write_bytes(jpeg())
    (root / "sub" / "b.jpg").write_bytes(jpeg(color=(10, 200, 10)))
    (root / "broken.jpg").write_bytes(jpeg()[:40])
    (root / "empty.jpg").write_bytes(b"")
    secret = base / "secret.jpg"
    secret.write_bytes(jpeg(width=9, height=7, color=(1, 2, 250)))
    for name, target in (("link-out.jpg", secret), ("link-in.jpg", root / "a.jpg")):
        if not (root / name).is_symlink():
            os.symlink(target, root / name)
    return Layout(root, secret)


GOOD_PATHS = ["a.jpg", "sub/b.jpg", "./a.jpg", "link-in.jpg", "sub/../a.jpg", f"{ROOT}/a.jpg"]


def image_paths() -> st.SearchStrategy[str]:
    """Any entry of :data:`PATHS` (two times in three) or any text."""
    return mostly(st.sampled_from(PATHS), text(), 2)


def good_image_paths() -> st.SearchStrategy[str]:
    """Mostly an image inside the root, else any entry of :func:`image_paths`."""
    return mostly(st.sampled_from(GOOD_PATHS), image_paths(), 3)


def inside(root: Path, image: str) -> bool:
    """``image`` (a manifest entry) names a file under ``root``, symlinks followed: checked here
    independently of the validator's own resolution."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, image))
    return real.startswith(real_root + os.sep) and os.path.isfile(real)
