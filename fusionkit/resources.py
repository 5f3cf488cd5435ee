"""How many threads a head or encoder may use (``FUSIONKIT_THREADS``, else every CPU).

``fusionkit bench`` runs several cells at once and gives each a share of the CPUs: an OpenMP
library (XGBoost, CatBoost, torch) with more threads than its share of cores spins at its
barriers and can run ten times slower.
"""

from __future__ import annotations

import os

THREADS_ENV = "FUSIONKIT_THREADS"


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
