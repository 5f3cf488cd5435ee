"""fusionkit.resources: thread shares and the allocator setting every command starts with."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fusionkit import resources

GLIBC = (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc") if hasattr(os, "confstr") else False
MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES", resources.MALLOC_ENV)


@pytest.fixture
def clean_env(monkeypatch):
    for var in MALLOC_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_freed_memory_is_kept_here_and_in_the_processes_started_after(clean_env):
    assert resources.keep_freed_memory() is True
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == str(256 << 20)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['MALLOC_MMAP_THRESHOLD_'])"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == str(32 << 20)


@pytest.mark.parametrize("var, value", [(resources.MALLOC_ENV, "default"), ("MALLOC_MMAP_THRESHOLD_", "65536"),
                                        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1")])
def test_the_allocator_is_left_alone_when_asked_or_set_by_hand(clean_env, var, value):
    clean_env.setenv(var, value)
    assert resources.keep_freed_memory() is False
    assert os.environ.get("MALLOC_TRIM_THRESHOLD_") is None
    assert os.environ[var] == value


def test_threads_reads_the_share_a_grid_gives(monkeypatch):
    monkeypatch.setenv(resources.THREADS_ENV, "3")
    assert resources.threads() == 3
    monkeypatch.setenv(resources.THREADS_ENV, "zero")
    assert resources.threads() == len(os.sched_getaffinity(0))


def test_the_cli_registers_one_quick_shutdown(monkeypatch):
    """``gc.freeze`` runs at exit (interpreter shutdown then skips walking every object), registered once however
    often the command group runs in one process."""
    import atexit
    import gc

    from click.testing import CliRunner

    from fusionkit import resources
    from fusionkit.cli import main

    registered = []
    monkeypatch.setattr(atexit, "register", lambda f, *a, **k: registered.append(f) or f)
    monkeypatch.setattr(resources, "_shutdown_registered", False)
    for _ in range(3):
        assert CliRunner().invoke(main, ["plugins", "list"]).exit_code == 0
    assert registered.count(gc.freeze) == 1
