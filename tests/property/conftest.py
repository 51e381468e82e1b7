"""Hypothesis settings of the property tests (the same inputs on every run: ``derandomize``; no example
database on disk; ``AMNET_HYPOTHESIS_PROFILE=explore`` draws new inputs each run) and the searcher the
search-request tests query."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("amnet", derandomize=True, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.filter_too_much])
settings.register_profile("explore", parent=settings.get_profile("amnet"), derandomize=False)
settings.load_profile(os.environ.get("AMNET_HYPOTHESIS_PROFILE", "amnet"))


@pytest.fixture(scope="session")
def searcher(tmp_path_factory):
    """A tiny AMNet model's searcher over its featurized gallery (the one tests/search builds, once per
    session)."""
    from amnet.search.searcher import Searcher
    from tests.search.test_searcher import build_tiny_search_model

    tiny = build_tiny_search_model(tmp_path_factory.getbasetemp())
    return Searcher.load(str(tiny / "model"), features=str(tiny / "feats"), gallery=str(tiny / "split"))
