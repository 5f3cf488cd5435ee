"""Embedding cache: one safetensors file per (encoder identity, clip content), written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

CACHE_ENV = "FUSIONKIT_CACHE_DIR"


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("fusionkit"))


class EmbeddingCache:
    """``root/<encoder key>/<digest[:2]>/<digest>.safetensors``; ``identity.json`` describes the key."""

    def __init__(self, root: Path, encoder_key: str, identity: dict | None = None):
        self.dir = Path(root) / encoder_key
        self.dir.mkdir(parents=True, exist_ok=True)
        if identity is not None:
            ident = self.dir / "identity.json"
            if not ident.exists():
                atomic_write_bytes(ident, json.dumps(identity, indent=2, sort_keys=True).encode())

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
        if not required.issubset(arrays):
            return None
        return arrays

    def put(self, digest: str, arrays: dict[str, np.ndarray]) -> None:
        from safetensors.numpy import save

        old = self.get(digest) or {}
        merged = {**old, **{k: np.ascontiguousarray(v) for k, v in arrays.items()}}
        path = self.path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, save(merged))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


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


def remove_stray_tmp(root: Path, min_age_s: float = 3600.0) -> int:
    """Delete temporary files left by killed writers, if older than ``min_age_s``; return how many.

    The age guard keeps the in-flight files of a run that is still going.
    """
    import time

    cutoff = time.time() - min_age_s
    removed = 0
    for path in Path(root).rglob(".*.tmp"):
        try:
            if path.is_file() and path.stat().st_mtime <= cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed
