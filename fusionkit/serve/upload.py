"""An uploaded audio file -> a mono signal at its own rate, read as ``fusionkit predict`` reads files, with the
server's limits; each refusal is an :class:`UploadError` carrying the HTTP status and a one-line reason."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# first bytes of the containers libsndfile decodes: a file that starts so but cannot be read is damaged (422),
# anything else is a format the server does not read (415)
MAGIC = (b"RIFF", b"RIFX", b"RF64", b"fLaC", b"OggS", b"FORM", b"ID3", b".snd", b"\xff\xfb", b"\xff\xf3",
         b"\xff\xf2", b"\xff\xfa")
NOT_AUDIO_TYPES = ("text/", "application/json", "application/xml", "image/", "video/")


class UploadError(Exception):
    """A request the server refuses: ``status`` (4xx) and a one-line ``message`` naming the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Limits:
    """What one request may carry: upload size in bytes and audio duration in seconds."""

    max_bytes: int = 20 * 2**20
    max_seconds: float = 120.0


def _suffix(filename: str | None) -> str:
    from fusionkit.windows import AUDIO_SUFFIXES

    suffix = Path(filename or "").suffix.lower()
    return suffix if suffix in AUDIO_SUFFIXES else ""


def check_type(content_type: str | None) -> None:
    """Refuse (415) a body whose declared type is plainly not audio."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind.startswith(NOT_AUDIO_TYPES):
        raise UploadError(415, f"unsupported media type {kind}: send audio (multipart field 'file' or a raw body)")


def decode(data: bytes, limits: Limits, filename: str | None = None) -> tuple[np.ndarray, int, Path]:
    """(mono float32 signal at its own rate, the rate, a temporary copy of the file) for an upload; the caller
    removes the copy. Refusals: empty (400), too long (413), unsupported format (415), unreadable audio (422)."""
    import soundfile as sf

    from fusionkit.audio import AudioError
    from fusionkit.pipeline.featurize import load_native

    if not data:
        raise UploadError(400, "empty upload: no audio bytes")
    fd, name = tempfile.mkstemp(prefix="fusionkit-serve-", suffix=_suffix(filename))
    path = Path(name)
    try:
        with open(fd, "wb") as fh:
            fh.write(data)
        try:
            info = sf.info(str(path))
        except Exception as exc:  # noqa: BLE001 - libsndfile's reason goes into the message
            reason = " ".join(str(exc).split()).split(": ", 1)[-1][:200]
            if data.startswith(MAGIC):
                raise UploadError(422, f"unreadable audio: {reason}") from None
            raise UploadError(415, "unsupported audio format: not WAV, FLAC, OGG/Opus, MP3, AIFF or AU") from None
        if info.samplerate > 0 and info.frames / info.samplerate > limits.max_seconds:
            raise UploadError(413, f"audio too long: {info.frames / info.samplerate:.1f} s; the limit is "
                                   f"{limits.max_seconds:g} s")
        try:
            x, sr = load_native(path)
        except AudioError as exc:
            status = 415 if "not supported" in str(exc).lower() or "unsupported" in str(exc).lower() else 422
            raise UploadError(status, f"unreadable audio: {exc}") from None
        if len(x) / sr > limits.max_seconds:
            raise UploadError(413, f"audio too long: {len(x) / sr:.1f} s; the limit is {limits.max_seconds:g} s")
        return x, sr, path
    except BaseException:
        path.unlink(missing_ok=True)
        raise
