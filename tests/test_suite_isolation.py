"""The suite never reads or writes the user's own cache, also from fixtures wider than one test."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def module_cache_dir():
    """The cache a module-scoped fixture (one that runs a recipe for several tests) would use."""
    from fusionkit.fileio import default_cache_dir

    return default_cache_dir()


def test_module_fixtures_use_the_session_cache(module_cache_dir, tmp_path_factory):
    assert module_cache_dir == tmp_path_factory.getbasetemp() / "fk-cache"


def test_tests_use_the_session_cache(tmp_path_factory):
    from fusionkit.fileio import default_cache_dir

    assert default_cache_dir() == tmp_path_factory.getbasetemp() / "fk-cache"
