"""Encoding on Ray Data: the clips the cache lacks become a dataset, encoded by an actor pool (the ``ray`` extra).

The dataset holds clip paths (or transcripts) and cache keys, never audio: each row is one batch of the local
engine (``encoder.batch_size()`` inputs in the order given), so every batch, and so every embedding, is the one
the local engine computes. ``map_batches`` runs :class:`EncodeBatches` in a fixed pool of actors, each loading
the encoder once, with its CPUs, threads and (when the encoder asks for cuda and the cluster has GPUs) a GPU.
Entries come back as safetensors bytes and the driver writes them into the cache as they stream in; with a
shared cache the actors write them and the driver reads each one back. Ray retries a lost actor's batches.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusionkit.engine import EngineError, worker_env
from fusionkit.engine.ray_engine import RETRIES, cause_of, cluster_resource, connect
from fusionkit.pipeline.featurize import Featurized

try:
    import ray
    import ray.data
    from ray.exceptions import RayError
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise EngineError("engine.kind ray: needs the ray extra: pip install 'fusionkit[ray]'") from exc

log = logging.getLogger("fusionkit")

Cache = tuple[str, str, dict]  # (cache root, encoder key, identity): the actors write entries there


class EncoderFailed(Exception):
    """An encoder's own error (its model does not load, ...), carried from an actor to the driver unchanged:
    Ray Data annotates the message of the exception it sees, not this one's ``error``."""

    def __init__(self, error: BaseException, *notes: object):
        super().__init__(error, *notes)
        self.error = error


class EncodeBatches:
    """The ``map_batches`` callable: one encoder per actor, loaded in ``__init__``; each row of a batch is one
    group of inputs, encoded with :func:`~fusionkit.pipeline.featurize.featurize`.

    Out: one row per input: ``index``, ``entry`` (the arrays as safetensors bytes; empty when failed or written
    to the shared cache here) and ``reason`` (empty when encoded)."""

    def __init__(self, encoder: Any, label: str, threads: int, env: dict[str, str], cache: Cache | None,
                 load: Callable[[Any, str], None]):
        from fusionkit.resources import limit_threads

        os.environ.update(env)
        os.environ["FUSIONKIT_PROGRESS"] = "0"
        limit_threads(threads)
        self.encoder = encoder
        self.failure: BaseException | None = None
        try:
            load(encoder, label)
        except Exception as exc:  # noqa: BLE001 - raised by the first call, so the driver gets the error itself
            self.failure = exc
        _torch_threads(threads)
        self.cache = None
        if cache is not None:  # the cache folder is on a path every node shares
            from fusionkit.pipeline.cache import EmbeddingCache

            self.cache = EmbeddingCache(Path(cache[0]), cache[1], cache[2])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.failure is not None:
            raise EncoderFailed(self.failure)
        try:
            return self._encode(batch)
        except Exception as exc:  # noqa: BLE001 - failures of single inputs are rows; this ends the command
            raise EncoderFailed(exc) from None

    def _encode(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from safetensors.numpy import save

        from fusionkit.pipeline.featurize import featurize

        index, entry, reason = [], [], []
        for start, inputs, keys in zip(batch["start"], batch["inputs"], batch["keys"]):
            inputs, keys = json.loads(inputs), json.loads(keys)
            for f in featurize(self.encoder, inputs):
                data = b""
                if f.ok:
                    arrays = {k: np.ascontiguousarray(v) for k, v in f.arrays.items()}
                    if self.cache is None or not self.cache.put(keys[f.index], arrays):
                        data = save(arrays)
                index.append(int(start) + f.index)
                entry.append(data)
                reason.append(f.reason or "")
        return {"index": np.array(index, dtype=np.int64), "entry": np.array(entry, dtype=object),
                "reason": np.array(reason, dtype=object)}


def _torch_threads(n: int) -> None:
    """torch's intra-op threads in this actor, when the encoder uses torch (the thread variables come too late
    for a torch imported before them, e.g. when the encoder was unpickled)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


def wants_gpu(encoder: Any) -> bool:
    """True when the encoder's options ask for a cuda device."""
    device = getattr(getattr(encoder, "options", None), "device", None)
    return isinstance(device, str) and device.startswith("cuda")


def groups_of(inputs: Sequence[Any], keys: Sequence[str], batch: int) -> list[dict[str, Any]]:
    """The dataset's rows: the local engine's batches, as (first index, inputs, keys) with JSON lists."""
    return [{"start": s, "inputs": json.dumps([str(x) for x in inputs[s:s + batch]]),
             "keys": json.dumps(list(keys[s:s + batch]))} for s in range(0, len(inputs), batch)]


def featurize_on_ray(encoder: Any, inputs: Sequence[Any], keys: Sequence[str], label: str, spec: Any,
                     load: Callable[[Any, str], None], cache: Cache | None = None) -> Iterator[Featurized]:
    """:func:`~fusionkit.pipeline.featurize.featurize` on Ray Data: one :class:`Featurized` per input, in the order
    batches finish. Without ``cache`` each result carries its arrays (the driver writes them); with ``cache``
    the actors write the entries and each result's features are read back from it (``arrays`` is None).

    Leaving early (Ctrl-C, ``close()``) stops the dataset's execution and its actors."""
    connect(spec)
    inputs, keys = list(inputs), list(keys)
    if not inputs:
        return
    batch = max(1, int(encoder.batch_size()))
    rows = groups_of(inputs, keys, batch)
    cpus = max(1, spec.cpus_per_task)
    gpus = 1 if wants_gpu(encoder) and cluster_resource("GPU") >= 1 else 0
    actors = max(1, min(int(cluster_resource("CPU") // cpus) or 1, len(rows)))
    if gpus:
        actors = min(actors, int(cluster_resource("GPU")))
    _quiet()
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))  # one batch per block: balanced, retried alone
    with warnings.catch_warnings():  # Ray 2.60 deprecates extra remote args; no named bound on retries exists yet
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        encoded = ds.map_batches(
            EncodeBatches, fn_constructor_args=(encoder, label, cpus, worker_env(), cache, load), batch_size=1,
            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus, num_gpus=gpus,
            max_restarts=RETRIES, max_task_retries=RETRIES)  # Ray Data's default: retry forever
    reader = _ReadBack(cache, encoder) if cache is not None else None
    stream = encoded.iter_batches(batch_size=None, batch_format="numpy")
    try:
        for out in _unwrapped(stream, label):
            for index, data, reason in zip(out["index"], out["entry"], out["reason"]):
                yield _result(int(index), data, reason, keys, encoder, reader)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _result(index: int, data: bytes, reason: str, keys: list[str], encoder: Any, reader: _ReadBack | None
            ) -> Featurized:
    """A result row as :class:`Featurized`: failed, arrays that came back (``select`` needs no loaded model), or
    an entry an actor wrote to the shared cache, read back."""
    from safetensors.numpy import load

    if reason:
        return Featurized(index=index, reason=str(reason))
    if data or reader is None:
        arrays = load(bytes(data))
        return Featurized(index=index, arrays=arrays, features=encoder.select(arrays))
    return Featurized(index=index, arrays=None, features=reader.features(keys[index]))


class _ReadBack:
    """The driver's check of entries the actors wrote to the shared cache."""

    def __init__(self, cache: Cache, encoder: Any):
        from fusionkit.pipeline.cache import EmbeddingCache

        self.cache = EmbeddingCache(Path(cache[0]), cache[1])
        self.encoder = encoder
        self.required = encoder.required_keys() if hasattr(encoder, "required_keys") else set()

    def features(self, key: str) -> np.ndarray:
        arrays = self.cache.get(key, self.required)
        if arrays is None:
            raise EngineError(f"engine.shared_cache: an entry a worker wrote is not readable here "
                              f"({self.cache.path(key)}); is the cache folder shared by every node?")
        return self.encoder.select(arrays)


def _unwrapped(stream: Iterator[dict[str, np.ndarray]], label: str) -> Iterator[dict[str, np.ndarray]]:
    """The stream's batches; an encoder's own error (its model does not load, ...) is raised as itself, a lost
    actor (after Ray's retries) as one :class:`EngineError` line."""
    try:
        yield from stream
    except RayError as exc:
        cause = user_error(exc)
        if cause is exc:
            raise EngineError(f"{label}: Ray Data encoding failed after {RETRIES} retries "
                              f"({str(exc).splitlines()[0]})") from exc
        raise cause from None


def user_error(exc: RayError) -> BaseException:
    """The encoder's own error under Ray's wrappers (a task's ``RayTaskError``), found through their causes;
    ``exc`` itself for a lost worker."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, EncoderFailed):
            return current.error
        todo += [c for c in (cause_of(current), current.__cause__, current.__context__)
                 if isinstance(c, BaseException)]
    return exc


def _quiet() -> None:
    """No Ray Data progress bars or log lines (fusionkit shows one progress bar of its own), and user errors
    raised as they are."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.raise_original_map_exception = True  # an encoder's own error, not Ray Data's UserCodeException
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # a failure reaches fusionkit as an exception
