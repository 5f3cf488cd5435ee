"""Reading audio: any file libsndfile reads, mixed to mono, resampled; one clear reason when it cannot."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


class AudioError(Exception):
    """An unreadable clip; the message is the reason, fit for one line."""


def to_mono_resampled(signal: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    x = np.asarray(signal, dtype=np.float32)
    if x.ndim == 2:
        # soundfile gives (frames, channels); accept (channels, frames) for short channel counts too
        x = x.mean(axis=1) if x.shape[1] <= x.shape[0] else x.mean(axis=0)
    if x.size == 0:
        raise AudioError("no audio samples")
    if sr != target_sr:
        import soxr

        x = soxr.resample(x, sr, target_sr, quality="HQ").astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise AudioError("samples are not finite numbers")
    return x


def load_audio(path: str | Path, target_sr: int = 16000) -> np.ndarray:
    """Mono float32 at ``target_sr``; raise :class:`AudioError` with the reason otherwise."""
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError("file not found")
    if path.stat().st_size == 0:
        raise AudioError("empty file (0 bytes)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors carry the reason
        raise AudioError(f"not readable as audio ({_short(exc)})") from None
    if data.shape[0] == 0:
        raise AudioError("no audio samples (truncated or empty)")
    return to_mono_resampled(data, sr, target_sr)


def duration(path: str | Path) -> float:
    """Seconds, from the header only; 0.0 if the header is unreadable."""
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # noqa: BLE001
        return 0.0


def file_digest(path: str | Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def text_digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _short(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg.split(": ", 1)[-1] if msg.startswith("Error opening") else msg
