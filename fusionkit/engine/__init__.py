"""Where the heavy stages run: ``local`` (this process tree, the default) or ``ray`` (a Ray cluster).

The ray engine (the ``ray`` extra) is imported only when chosen. It runs the encode stage on Ray Data
(:mod:`fusionkit.engine.ray_data`: an actor pool, one model load per actor) and a grid's cells as Ray tasks
(:mod:`fusionkit.engine.ray_engine`); the results are the local engine's, bit for bit: same batches, same cache
entries, same cell files.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fusionkit.recipe import EngineSpec

ENV_PREFIXES = ("FUSIONKIT_", "HF_", "TRANSFORMERS_", "TORCH_HOME", "XDG_CACHE_HOME")


class EngineError(RuntimeError):
    """The engine cannot be used (the extra is missing, the cluster cannot be reached); one line."""


def is_ray(spec: EngineSpec | None) -> bool:
    """True when ``spec`` asks for the ray engine."""
    return spec is not None and spec.kind == "ray"


def worker_env() -> dict[str, str]:
    """The driver's fusionkit, model-hub and cache variables, handed to every task (a joined cluster's workers
    do not inherit the driver's environment)."""
    return {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
