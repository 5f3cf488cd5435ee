"""Reading audio: any file libsndfile reads, mixed to mono, resampled; one clear reason when it cannot."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# containers whose header frame count may be an estimate (VBR MP3 without a Xing header, Ogg):
# only a large shortfall counts as truncation there
ESTIMATED_LENGTH_FORMATS = frozenset({"MP3", "MPEG", "OGG"})
ESTIMATE_TOLERANCE = 0.9


class AudioError(Exception):
    """An unreadable clip; the message is the reason, fit for one line."""


def as_float_signal(signal) -> np.ndarray:
    """Samples as float32 in [-1, 1]: floats as they are, integer PCM scaled by its type's range
    (int16 by 32768, int32 by 2**31, uint8 centred on 128); anything else raises :class:`AudioError`."""
    x = np.asarray(signal)
    if x.dtype.kind == "f":
        return x.astype(np.float32, copy=False)
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        half = (int(info.max) + 1) / 2 if x.dtype.kind == "u" else 0.0
        scale = (int(info.max) + 1) / 2 if x.dtype.kind == "u" else -float(info.min)
        return ((x.astype(np.float64) - half) / scale).astype(np.float32)
    raise AudioError(f"expected audio samples as floats or integer PCM, got an array of {x.dtype}")


def signal_rate(sampling_rate) -> int:
    """The rate of a signal array, checked: a positive whole number of Hz (there is no default)."""
    if sampling_rate is None:
        raise ValueError("sampling_rate: required with a signal array (the rate it was recorded at, in Hz)")
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"sampling_rate: expected a positive whole number of Hz, got {sampling_rate!r}")
    return int(sampling_rate)


SHORTEST_SPEECH_S = 0.2
"""Recordings shorter than this (about one syllable) get a warning: too little to judge an emotion from."""
SILENCE_DBFS = -60.0
"""Recordings whose loudest sample is below this level (dB relative to full scale) get a warning: no speech."""


@dataclass(frozen=True)
class SignalWarning:
    """Why a readable signal is unlikely to hold speech to judge; ``silent`` also when near-silent."""

    text: str
    silent: bool

    def __str__(self) -> str:
        return self.text


def signal_warning(signal: np.ndarray, sr: int) -> SignalWarning | None:
    """What makes a readable mono signal unlikely to hold speech to judge (silent, near-silent, very short);
    None when nothing is odd. A label (or regression values) predicted for such a recording means little."""
    peak = float(np.max(np.abs(signal))) if signal.size else 0.0
    seconds = signal.size / sr
    reasons = []
    if peak == 0.0:
        reasons.append("silent (every sample is 0)")
    elif 20 * np.log10(peak) < SILENCE_DBFS:
        reasons.append(f"near-silent (loudest sample {20 * np.log10(peak):.0f} dBFS)")
    silent = bool(reasons)
    if seconds < SHORTEST_SPEECH_S:
        reasons.append(f"very short ({seconds:.3f} s)")
    return SignalWarning("; ".join(reasons), silent) if reasons else None


def to_mono_resampled(signal: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Mono float32 at ``target_sr`` (integer PCM scaled to [-1, 1]); :class:`AudioError` with the reason otherwise."""
    x = as_float_signal(signal)
    if x.ndim == 2:
        # soundfile gives (frames, channels); accept (channels, frames) for short channel counts too
        x = x.mean(axis=1) if x.shape[1] <= x.shape[0] else x.mean(axis=0)
    elif x.ndim != 1:
        raise AudioError(f"expected a 1-D or 2-D signal, got shape {x.shape}")
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

    path = check_file(path)
    try:
        info = sf.info(str(path))
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors carry the reason
        raise AudioError(f"not readable as audio ({decoder_reason(exc)})") from None
    if data.shape[0] == 0:
        raise AudioError("no audio samples (truncated or empty)")
    promised = info.frames * (ESTIMATE_TOLERANCE if info.format in ESTIMATED_LENGTH_FORMATS else 1)
    if 0 < data.shape[0] < promised:
        raise AudioError(f"truncated: header promises {info.frames} frames, {data.shape[0]} could be decoded")
    # (frames, channels) -> mono here, where the layout is known, before resampling
    return to_mono_resampled(data.mean(axis=1), sr, target_sr)


def check_file(path: str | Path) -> Path:
    """``path`` as a Path if it exists, is not empty and is not a WAV/AIFF cut short; else :class:`AudioError`."""
    path = Path(path)
    if not path.exists():
        raise AudioError("file not found")
    if path.stat().st_size == 0:
        raise AudioError("empty file (0 bytes)")
    truncated = container_truncation(path)
    if truncated:
        raise AudioError(truncated)
    return path


def container_truncation(path: str | Path) -> str | None:
    """Why a WAV or AIFF file is cut short (see :func:`riff_truncation`), or None."""
    try:
        return riff_truncation(path) or aiff_truncation(path)
    except OSError:
        return None  # unreadable: the decoder will say so


def aiff_truncation(path: str | Path) -> str | None:
    """Like :func:`riff_truncation`, for AIFF/AIFF-C: the ``SSND`` chunk against the bytes present."""
    import struct

    size = Path(path).stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
            return None
        frames = frame_bytes = 0
        offset = 12
        while offset + 8 <= size:
            fh.seek(offset)
            chunk_id, chunk_size = struct.unpack(">4sI", fh.read(8))
            body = offset + 8
            if chunk_id == b"COMM":
                comm = fh.read(8)
                if len(comm) == 8:
                    channels, frames, bits = struct.unpack(">HIH", comm)
                    frame_bytes = channels * ((bits + 7) // 8)
            elif chunk_id == b"SSND":
                promised, present = chunk_size - 8, size - body - 8
                if promised <= present or chunk_size < 8:
                    return None
                if frames and frame_bytes and promised == frames * frame_bytes:
                    return (f"truncated: the AIFF header promises {frames} frames, "
                            f"the file holds {max(present, 0) // frame_bytes}")
                return f"truncated: the AIFF header promises {promised} data bytes, the file holds {max(present, 0)}"
            offset = body + chunk_size + (chunk_size & 1)
    return None


def riff_truncation(path: str | Path) -> str | None:
    """Why a WAV (RIFF/RIFX/RF64) file is cut short, or None when it is whole or not a WAV.

    libsndfile quietly decodes what is there when a WAV's ``data`` chunk promises more
    bytes than the file holds (and reports the shortened length as the frame count),
    so a copy interrupted half-way would pass as a shorter clip. This reads the chunk
    headers and compares the promised size with the bytes present.
    """
    import struct

    size = Path(path).stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX", b"RF64"):
            return None
        endian = ">" if head[:4] == b"RIFX" else "<"
        block_align, ds64_data = 0, None
        offset = 12
        while offset + 8 <= size:
            fh.seek(offset)
            chunk_id, chunk_size = struct.unpack(f"{endian}4sI", fh.read(8))
            body = offset + 8
            if chunk_id == b"ds64":
                ds64 = fh.read(16)
                if len(ds64) == 16:
                    ds64_data = struct.unpack("<Q", ds64[8:16])[0]
            elif chunk_id == b"fmt ":
                fmt = fh.read(16)
                if len(fmt) == 16:
                    block_align = struct.unpack(f"{endian}HHIIH", fmt[:14])[4]
            elif chunk_id == b"data":
                promised = ds64_data if (chunk_size == 0xFFFFFFFF and ds64_data is not None) else chunk_size
                present = size - body
                if promised in (0, 0xFFFFFFFF) or promised <= present:
                    return None  # whole, or a streaming writer's placeholder size
                if block_align:
                    return (f"truncated: the WAV header promises {promised // block_align} frames, "
                            f"the file holds {present // block_align}")
                return f"truncated: the WAV header promises {promised} data bytes, the file holds {present}"
            offset = body + chunk_size + (chunk_size & 1)
    return None


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


def decoder_reason(exc: Exception) -> str:
    """The first line of a decoder error, without libsndfile's "Error opening <path>: " prefix."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg.split(": ", 1)[-1] if msg.startswith("Error opening") else msg
