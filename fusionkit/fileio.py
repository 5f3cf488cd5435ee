"""Small file helpers: atomic writes (temporary file, fsync, rename) and where fusionkit keeps its cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CACHE_ENV = "FUSIONKIT_CACHE_DIR"


def default_cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("fusionkit"))


class WriteError(OSError):
    """A file that could not be written (read-only folder, full disk, ...); its message names the file."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    Any OS error is raised as :class:`WriteError` naming ``path`` and the reason (e.g. no space left).
    """
    path = Path(path)
    try:
        _atomic_write(path, data)
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(exc.errno or 0, exc.strerror or str(exc), str(path)) from exc


def _atomic_write(path: Path, data: bytes) -> None:
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
