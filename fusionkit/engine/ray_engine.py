"""The ray engine: encoding in Ray actors, grid cells as Ray tasks (the ``ray`` extra).

Only Ray's own machinery is used: ``ray.init`` to start or join a cluster, actors with ``max_restarts`` /
``max_task_retries`` and :class:`ray.util.ActorPool` for encoding, ``ray.remote`` tasks with ``max_retries``,
``ray.wait`` and ``ray.cancel`` for cells. A worker process killed mid-call is retried by Ray; a call's result
reaches the cache or a cell file only once it is complete, and every write is atomic.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from fusionkit.engine import EngineError, worker_env
from fusionkit.pipeline.featurize import Featurized

try:
    import ray
    from ray.exceptions import RayError, RayTaskError
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise EngineError("engine.kind ray: needs the ray extra: pip install 'fusionkit[ray]'") from exc

log = logging.getLogger("fusionkit")

RETRIES = 3  # a worker process (or node) lost mid-call: Ray reruns the call this many times
CHUNKS_PER_ACTOR = 4  # calls per actor over a stage: enough for progress and balance, few round trips


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


def _cluster(resource: str) -> float:
    return float(ray.cluster_resources().get(resource, 0.0))


def _cause(exc: RayError) -> BaseException:
    """The exception a task raised (not Ray's wrapper), or Ray's error for a lost worker."""
    cause = getattr(exc, "cause", None) if isinstance(exc, RayTaskError) else None
    return cause if isinstance(cause, BaseException) else exc


# ---------------------------------------------------------------- encoding


@ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)
class EncoderActor:
    """One encoder, loaded once (on the first call), encoding chunks of inputs with :func:`featurize`."""

    def __init__(self, encoder: Any, label: str, threads: int, env: dict[str, str],
                 cache: tuple[str, str, dict] | None, load: Callable[[Any, str], None]):
        from fusionkit.resources import limit_threads

        os.environ.update(env)
        os.environ["FUSIONKIT_PROGRESS"] = "0"
        limit_threads(threads)
        self.encoder, self.label, self.load, self.loaded = encoder, label, load, False
        self.cache = None
        if cache is not None:  # workers write entries themselves: the cache is on a path every node shares
            from fusionkit.pipeline.cache import EmbeddingCache

            self.cache = EmbeddingCache(Path(cache[0]), cache[1], cache[2])

    def encode(self, start: int, inputs: list, keys: list[str]) -> list[tuple]:
        """(index, arrays or None when written here, features, reason) of each input, ``start`` + position."""
        if not self.loaded:
            self.load(self.encoder, self.label)
            self.loaded = True
        from fusionkit.pipeline.featurize import featurize

        out = []
        for f in featurize(self.encoder, inputs):
            arrays = f.arrays
            if f.ok and self.cache is not None and self.cache.put(keys[f.index], arrays):
                arrays = None
            out.append((start + f.index, arrays, f.features, f.reason))
        return out


def _chunk_size(n: int, batch: int, actors: int) -> int:
    """Inputs per call: whole batches of the encoder (so every batch is the local engine's batch)."""
    batches = math.ceil(n / batch)
    return batch * max(1, math.ceil(batches / (actors * CHUNKS_PER_ACTOR)))


def featurize_on_ray(encoder: Any, inputs: Sequence[Any], keys: Sequence[str], label: str, spec: Any,
                     load: Callable[[Any, str], None], cache: tuple[str, str, dict] | None = None
                     ) -> Iterator[Featurized]:
    """:func:`~fusionkit.pipeline.featurize.featurize` on the cluster: one :class:`Featurized` per input, in input
    order. ``cache`` (root, encoder key, identity) makes the actors write entries (``arrays`` is then None).

    The inputs are cut into whole batches of ``encoder.batch_size()`` in the order given, so each batch is the
    one the local engine forms. The actors are killed when the call ends, also on Ctrl-C."""
    from ray.util import ActorPool

    connect(spec)
    inputs, keys = list(inputs), list(keys)
    if not inputs:
        return
    cpus = max(1, spec.cpus_per_task)
    gpus = int(_cluster("GPU"))
    batch = max(1, int(encoder.batch_size()))
    n_actors = max(1, min(int(_cluster("CPU") // cpus) or 1, math.ceil(len(inputs) / batch)))
    if gpus:
        n_actors = min(n_actors, gpus)
    size = _chunk_size(len(inputs), batch, n_actors)
    options = {"num_cpus": cpus, "num_gpus": 1 if gpus else 0}
    actors = [EncoderActor.options(**options).remote(encoder, label, cpus, worker_env(), cache, load)
              for _ in range(n_actors)]
    pending: dict[int, list[tuple]] = {}
    nxt = 0
    try:
        pool = ActorPool(actors)
        chunks = [(s, inputs[s:s + size], keys[s:s + size]) for s in range(0, len(inputs), size)]
        results = pool.map_unordered(lambda a, c: a.encode.remote(*c), chunks)
        while nxt < len(inputs):
            try:
                rows = next(results)
            except RayError as exc:
                cause = _cause(exc)
                if cause is exc:
                    raise EngineError(f"{label}: an encoder actor was lost {RETRIES + 1} times ({exc})") from exc
                raise cause from None
            pending[rows[0][0]] = rows
            while nxt in pending:  # in input order, as the local engine yields them
                for index, arrays, features, reason in pending.pop(nxt):
                    yield Featurized(index=index, arrays=arrays, features=features, reason=reason)
                    nxt = index + 1
    finally:
        for actor in actors:
            ray.kill(actor)


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
                cause = _cause(exc)
                row = {"status": "failed", "error": f"{type(cause).__name__}: {cause}".splitlines()[0]}
            yield key, row
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
