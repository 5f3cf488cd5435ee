"""``logmel``: log-mel filterbank frames (numpy/librosa), a (T, n_mels) sequence per clip for the sequence
heads (``cnn``, ``lstm``), or pooled over time."""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Encoder, Options


class LogMelOptions(Options):
    n_mels: int = Field(64, ge=4, le=256, description="mel bands")
    window_ms: float = Field(25.0, gt=0, le=200, description="analysis window (ms); the FFT size is the next "
                                                            "power of two")
    hop_ms: float = Field(10.0, gt=0, le=100, description="frame hop (ms)")
    fmin: float = Field(0.0, ge=0, description="lowest band edge (Hz)")
    fmax: float | None = Field(None, gt=0, description="highest band edge (Hz); null: half the sample rate")
    log_offset: float = Field(1e-6, gt=0, description="added to the mel power before the log")
    pooling: Literal["none", "mean", "mean+std"] = Field(
        "none", description="none: the (T, n_mels) frames; mean or mean+std over time: a vector")
    batch_size: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _band(self):
        top = LogMelEncoder.sample_rate / 2
        if self.fmax is not None and self.fmax > top:
            raise ValueError(f"fmax {self.fmax:g} Hz is above half the sample rate ({top:g} Hz)")
        if self.fmin >= (self.fmax if self.fmax is not None else top):
            raise ValueError(f"fmin {self.fmin:g} Hz must be below fmax")
        return self


@lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    import librosa

    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    basis.setflags(write=False)
    return basis


class LogMelEncoder(Encoder):
    """Log mel-band power per frame: ``log(mel @ |STFT|^2 + log_offset)``, cached as float16 (T, n_mels);
    ``pooling`` only changes :meth:`select`, so every pooling shares one cache."""

    name = "logmel"
    modality = "audio"
    description = "log-mel filterbank frames (T, n_mels) or their mean / mean+std over time"
    Options = LogMelOptions
    requires: ClassVar[tuple[str, ...]] = ("librosa",)
    view_options = frozenset({"pooling"})
    version = "1"

    def load(self) -> None:
        import librosa  # noqa: F401  (import cost paid once, before the first batch)

    def encode_batch(self, inputs):
        return [{"logmel": self.logmel(x).astype(np.float16)} for x in inputs]

    def logmel(self, y: np.ndarray) -> np.ndarray:
        """(T, n_mels) log-mel frames of a signal at :attr:`sample_rate`."""
        import librosa

        o, sr = self.options, self.sample_rate
        win = max(2, int(round(o.window_ms * sr / 1000)))
        n_fft = int(2 ** np.ceil(np.log2(win)))
        hop = max(1, int(round(o.hop_ms * sr / 1000)))
        y = np.asarray(y, dtype=np.float32)
        if len(y) < n_fft:
            y = np.pad(y, (0, n_fft - len(y)))
        power = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win)) ** 2
        mel = _mel_basis(sr, n_fft, o.n_mels, o.fmin, o.fmax) @ power
        return np.log(mel + o.log_offset).T

    def required_keys(self) -> set[str]:
        return {"logmel"}

    def is_sequence(self) -> bool:
        return self.options.pooling == "none"

    def select(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """(T, n_mels) frames, or (n_mels,) / (2 n_mels,) pooled over time."""
        frames = np.asarray(arrays["logmel"], dtype=np.float32)
        if self.options.pooling == "none":
            return frames
        if self.options.pooling == "mean":
            return frames.mean(axis=0)
        return np.concatenate([frames.mean(axis=0), frames.std(axis=0)])


@hookimpl
def register_encoders(register):
    register(LogMelEncoder)
