"""The ray engine: joining or starting a cluster, and grid cells as Ray tasks (the ``ray`` extra).

Only Ray's own machinery is used: ``ray.init`` to start or join a cluster, ``ray.remote`` tasks with
``max_retries``, ``ray.wait`` and ``ray.cancel`` for cells (encoding runs on Ray Data:
:mod:`fusionkit.engine.ray_data`). A worker process killed mid-call is retried by Ray; a call's result reaches a
cell file only once it is complete, and every write is atomic.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fusionkit.engine import EngineError, worker_env

try:
    import ray
    from ray.exceptions import RayError, RayTaskError
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise EngineError("engine.kind ray: needs the ray extra: pip install 'fusionkit[ray]'") from exc

log = logging.getLogger("fusionkit")

RETRIES = 3  # a worker process (or node) lost mid-call: Ray reruns the call this many times


def connect(spec: Any) -> None:
    """Join ``spec.address`` (``auto``: the running cluster) or, without one, start a local instance;
    nothing when this process is already connected."""
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                              "runtime_env": {"env_vars": worker_env()}}
    if spec.address and spec.address != "auto":
        _reachable(spec.address)
    try:
        if spec.address:
            ray.init(address=spec.address, **kwargs)
        else:
            ray.init(address="local", include_dashboard=False, **kwargs)  # a new instance, never a found one
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = spec.address or "a local instance"
        raise EngineError(f"engine.address: cannot start or join Ray at {where} ({exc})") from exc


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes (Ray retries a dead head for long), when HOST:PORT takes no connection."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"engine.address: {address!r} is not HOST:PORT (or 'auto')")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise EngineError(f"engine.address: no Ray cluster answers at {address} ({exc.strerror or exc})") from exc


def cluster_resource(resource: str) -> float:
    """How much of ``resource`` (CPU, GPU) the cluster has in all."""
    return float(ray.cluster_resources().get(resource, 0.0))


def cause_of(exc: RayError) -> BaseException:
    """The exception a task raised (not Ray's wrapper), or Ray's error for a lost worker."""
    cause = getattr(exc, "cause", None) if isinstance(exc, RayTaskError) else None
    return cause if isinstance(cause, BaseException) else exc


# ---------------------------------------------------------------- grid cells


def _cell_task(fn: Callable[[dict, str, int], dict], raw: dict, cell_dir: str, threads: int,
               env: dict[str, str]) -> dict:
    os.environ.update(env)
    return fn(raw, cell_dir, threads)


def run_tasks(fn: Callable[[dict, str, int], dict], jobs: Iterable[tuple[Any, dict, str]], spec: Any
              ) -> Iterator[tuple[Any, dict]]:
    """``fn(raw, cell_dir, threads)`` of every job (key, raw recipe, cell folder) as a Ray task; yield (key, row)
    as each finishes. Each task runs in a fresh worker process (``max_calls=1``) with ``spec.cpus_per_task``
    CPUs; a lost worker is retried; a task lost for good is a failed row. Leaving early (Ctrl-C, ``close()``)
    cancels the tasks not finished."""
    connect(spec)
    cpus = max(1, spec.cpus_per_task)
    task = ray.remote(num_cpus=cpus, max_calls=1, max_retries=RETRIES)(_cell_task)
    env = worker_env()
    refs = {task.remote(fn, raw, cell_dir, cpus, env): key for key, raw, cell_dir in jobs}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            key = refs.pop(done[0])
            try:
                row = ray.get(done[0])
            except RayError as exc:
                cause = cause_of(exc)
                row = {"status": "failed", "error": f"{type(cause).__name__}: {cause}".splitlines()[0]}
            yield key, row
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
