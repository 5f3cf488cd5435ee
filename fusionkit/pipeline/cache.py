"""Embedding cache: one safetensors file per (encoder identity, clip content), written atomically."""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fusionkit.fileio import CACHE_ENV, atomic_write_bytes, atomic_write_text, default_cache_dir

__all__ = ["CACHE_ENV", "EmbeddingCache", "atomic_write_bytes", "atomic_write_text", "cache_report",
           "default_cache_dir", "remove_stray_tmp", "writing_behind"]

log = logging.getLogger("fusionkit")


_WARNED: set[str] = set()  # cache roots already warned about as not writable (one line per root and process)


def _warn_unwritable(root: Path, path: Path, exc: OSError) -> None:
    """One warning line per cache root: entries are computed and used, not saved."""
    if str(root) in _WARNED:
        return
    _WARNED.add(str(root))
    reason = exc.strerror or type(exc).__name__
    log.warning("cache %s: cannot write %s (%s); embeddings computed in this run are used but not cached",
                root, path, reason)


class EmbeddingCache:
    """``root/<encoder key>/<digest[:2]>/<digest>.safetensors``; ``identity.json`` describes the key.

    A cache that cannot be written (read-only, full disk) is still read: entries it lacks are computed and
    used without being saved, after one warning line naming the file and the reason. An entry that cannot be
    read, lacks required arrays or holds NaN or inf is a miss (recomputed, and rewritten where possible).
    """

    def __init__(self, root: Path, encoder_key: str, identity: dict | None = None):
        self.root = Path(root)
        self.dir = self.root / encoder_key
        self.writable = True
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            ident = self.dir / "identity.json"
            if identity is not None and not ident.exists():
                atomic_write_bytes(ident, json.dumps(identity, indent=2, sort_keys=True).encode())
        except OSError as exc:
            self._unwritable(getattr(exc, "filename", None) or self.dir, exc)

    def _unwritable(self, path: Path | str, exc: OSError) -> None:
        self.writable = False
        _warn_unwritable(self.root, Path(path), exc)

    def path(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.safetensors"

    def get(self, digest: str, required: set[str] = frozenset()) -> dict[str, np.ndarray] | None:
        path = self.path(digest)
        if not path.exists():
            return None
        from safetensors.numpy import load_file

        try:
            arrays = load_file(str(path))
        except Exception:  # noqa: BLE001 - a damaged entry is a miss, rewritten later
            return None
        if not required.issubset(arrays) or not all_finite(arrays):
            return None
        return arrays

    def put(self, digest: str, arrays: dict[str, np.ndarray]) -> bool:
        """Save an entry (merged with the arrays already cached for it); False when the cache cannot be written."""
        from safetensors.numpy import save

        if not self.writable:
            return False
        old = self.get(digest) or {}
        merged = {**old, **{k: np.ascontiguousarray(v) for k, v in arrays.items()}}
        path = self.path(digest)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, save(merged))
        except OSError as exc:
            self._unwritable(path, exc)
            return False
        return True


@contextmanager
def writing_behind(cache: EmbeddingCache, depth: int = 64) -> Iterator[Callable[[str, dict], None]]:
    """A ``put(digest, arrays)`` that writes on a thread of its own, so each entry's write and fsync overlap the
    encoding of the next ones (on slow or network storage an fsync can take longer than a clip's encoding).

    At most ``depth`` entries wait (memory). Every entry handed over is written before the block ends, also when it
    ends by an exception or an interrupt; an error other than the cache's own (it warns once when it cannot write)
    is raised as the synchronous ``put`` would have raised it."""
    from concurrent.futures import ThreadPoolExecutor

    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusionkit-cache") as pool:
        def put(digest: str, arrays: dict) -> None:
            if len(pending) >= depth:
                pending.popleft().result()
            pending.append(pool.submit(cache.put, digest, arrays))

        yield put
        while pending:
            pending.popleft().result()


def all_finite(arrays: dict[str, np.ndarray]) -> bool:
    """True when no floating array holds NaN or inf (a damaged or poisoned entry is recomputed)."""
    return all(a.dtype.kind not in "fc" or bool(np.all(np.isfinite(a))) for a in arrays.values())


# ---------------------------------------------------------------- inspection and cleaning


def _is_stray_tmp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def cache_report(root: Path) -> list[dict]:
    """One row per folder directly under the cache root: what made it, entries, bytes, stray temp files."""
    root = Path(root)
    if not root.is_dir():
        return []
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = [p for p in folder.rglob("*") if p.is_file()]
        try:
            identity = json.loads((folder / "identity.json").read_text())
        except (OSError, ValueError):
            identity = {}
        rows.append({
            "folder": folder.name,
            "plugin": identity.get("plugin", "") if isinstance(identity, dict) else "",
            "entries": sum(p.suffix == ".safetensors" and not _is_stray_tmp(p) for p in files),
            "bytes": sum(p.stat().st_size for p in files),
            "stray_tmp": sum(_is_stray_tmp(p) for p in files),
        })
    return rows


def remove_stray_tmp(root: Path, min_age_s: float = 3600.0) -> tuple[int, int]:
    """Delete temporary files left by killed writers, if older than ``min_age_s``; return how many were removed
    and how many were kept as younger (the age guard keeps the in-flight files of a run that is still going)."""
    import time

    cutoff = time.time() - min_age_s
    removed = kept = 0
    for path in Path(root).rglob(".*.tmp"):
        try:
            if not path.is_file():
                continue
            if path.stat().st_mtime <= cutoff:
                path.unlink()
                removed += 1
            else:
                kept += 1
        except OSError:
            continue
    return removed, kept
