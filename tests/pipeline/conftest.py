"""The pipeline tests compile with the images' version tag (``AMNET_IMAGE_TAG``), not their content tag.

The content tag moves with every source edit; the golden YAML and the image assertions must not.
``tests/deploy/test_image_tag.py`` checks that a compile without the override pins the content tag.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import amnet


@pytest.fixture(scope="package", autouse=True)
def version_image_tag() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMNET_IMAGE_TAG", amnet.__version__)
        yield
