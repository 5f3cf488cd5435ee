"""How many threads a head or encoder may use (``FUSIONKIT_THREADS``, else every CPU), how the C allocator
keeps freed memory (:func:`keep_freed_memory`), and a shutdown that skips needless work (:func:`quick_shutdown`).

``fusionkit bench`` runs several cells at once and gives each a share of the CPUs: an OpenMP
library (XGBoost, CatBoost, torch) with more threads than its share of cores spins at its
barriers and can run ten times slower.
"""

from __future__ import annotations

import os

THREADS_ENV = "FUSIONKIT_THREADS"
MALLOC_ENV = "FUSIONKIT_MALLOC"
MMAP_THRESHOLD = 32 << 20
"""Blocks below this come from the heap, not from a fresh mapping (glibc's largest allowed value on 64 bits)."""
TRIM_THRESHOLD = 256 << 20
"""Free memory kept at the top of the heap before it is given back to the system."""


def threads() -> int:
    raw = os.environ.get(THREADS_ENV, "")
    if raw.strip().isdigit() and int(raw) > 0:
        return int(raw)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def limit_threads(n: int) -> None:
    """Cap this process (and libraries imported after this call) to ``n`` threads."""
    os.environ[THREADS_ENV] = str(n)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    On Linux it reads ``VmHWM``, which starts afresh at exec: ``ru_maxrss`` would also count the
    pages of the parent it was forked from (a grid worker would report the grid process's peak).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource
    import sys

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024, 1)


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse freed blocks of up to 32 MiB instead of mapping and unmapping each one.

    A torch forward pass allocates and frees activations of a few MiB per layer; with glibc's defaults many
    of them are fresh mappings whose pages the kernel zeroes on every touch (on 2 cores: 12 of 110 CPU
    seconds of a RAVDESS encode were spent in the kernel). Applied to this process (``mallopt``) and, through
    the ``MALLOC_*`` variables, to the processes it starts. Nothing is done where malloc is not glibc's, where
    the person running fusionkit set those variables, or with ``FUSIONKIT_MALLOC=default``. True when applied.
    """
    if os.environ.get(MALLOC_ENV, "").strip().lower() == "default":
        return False
    if any(v in os.environ for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
        import ctypes

        libc = ctypes.CDLL(None)
        done = libc.mallopt(-3, MMAP_THRESHOLD) == 1 and libc.mallopt(-1, TRIM_THRESHOLD) == 1  # M_MMAP_, M_TRIM_
    except (AttributeError, OSError, ValueError):  # not Linux, or no mallopt
        return False
    if done:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
        os.environ["MALLOC_TRIM_THRESHOLD_"] = str(TRIM_THRESHOLD)
    return done


_shutdown_registered = False


def quick_shutdown() -> None:
    """At exit, keep the cyclic garbage collector off every object the process still holds (``gc.freeze``).

    With torch, transformers and a model loaded, the collections of interpreter shutdown walked their objects for
    about 0.9 s (2-core Zen 4; 0.15 s frozen), only to free memory the system takes back anyway. Reference
    counting still releases objects and runs their finalizers as before; objects in reference cycles are left to
    the system (every file fusionkit writes is closed where it is written). Registered once per process.
    """
    global _shutdown_registered
    if not _shutdown_registered:
        import atexit
        import gc

        atexit.register(gc.freeze)
        _shutdown_registered = True
