"""Shared fixtures: the session's own cache folder (never the user's), no progress bars, a fresh plugin registry
for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# precision: auto stays fp32 whichever CPU runs the suite (its tolerances are fp32's), set before any fixture of any
# scope loads a model and inherited by the commands the tests start
os.environ["FUSIONKIT_CPU_BF16"] = "0"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """The session's cache folder, set before any fixture of narrower scope runs a recipe (a module's fixture
    runs before a test's own fixtures): no test reads or writes the user's own cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUSIONKIT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "fk-cache"))
        mp.setenv("FUSIONKIT_PROGRESS", "0")
        yield


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Plugins registered by one test (fake distributions, blocked plugins) are gone for the next; the cache folder
    and progress setting come from :func:`_session_cache` (a test's own monkeypatch is undone after it)."""
    from fusionkit import registry as plugins

    plugins.reset()
    yield
    plugins.reset()


def corpus(name: str) -> Path:
    """Path of a real corpus under ../shared/data, or skip the test."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"corpus {name} not available at {path}")
    return path
