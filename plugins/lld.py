"""``lld``: handcrafted low-level descriptors (librosa) summarised by functionals over time, or kept as
a frame sequence (``pooling: none``) for the sequence heads (``cnn``, ``lstm``)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Encoder, Options

Descriptor = Literal[
    "mfcc", "mfcc_delta", "mfcc_delta2", "chroma", "mel", "zcr", "rms",
    "contrast", "flatness", "centroid", "bandwidth", "rolloff", "pitch",
]
Functional = Literal["mean", "std", "min", "max", "median", "q10", "q90", "skew", "kurtosis"]
ALL_DESCRIPTORS: tuple[str, ...] = Descriptor.__args__  # type: ignore[attr-defined]


class LLDOptions(Options):
    descriptors: list[Descriptor] = Field(default_factory=lambda: list(ALL_DESCRIPTORS))
    functionals: list[Functional] = Field(default_factory=lambda: ["mean", "std", "min", "max"])
    n_mfcc: int = Field(20, ge=1, le=128)
    n_mels: int = Field(40, ge=4, le=256)
    frame_ms: float = Field(32.0, gt=0, description="analysis window (ms)")
    hop_ms: float = Field(10.0, gt=0, description="frame hop (ms)")
    fmin_pitch: float = Field(60.0, gt=0)
    fmax_pitch: float = Field(500.0, gt=0)
    trim_db: float | None = Field(
        40.0, description="trim leading/trailing silence quieter than this (dB below peak); null keeps it"
    )
    batch_size: int = Field(32, ge=1)
    workers: int = Field(2, ge=1, description="threads computing clips of a batch in parallel")
    pooling: Literal["functionals", "none"] = Field(
        "functionals", description="functionals over time (a vector), or none: the descriptors as a (T, D) "
                                   "frame sequence (cached as float16; `functionals` is then unused)"
    )


def _functionals(frames: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """frames: (n_descriptors, T) -> (n_descriptors * len(names),)"""
    out = []
    for name in names:
        if name == "mean":
            out.append(frames.mean(axis=1))
        elif name == "std":
            out.append(frames.std(axis=1))
        elif name == "min":
            out.append(frames.min(axis=1))
        elif name == "max":
            out.append(frames.max(axis=1))
        elif name == "median":
            out.append(np.median(frames, axis=1))
        elif name == "q10":
            out.append(np.quantile(frames, 0.1, axis=1))
        elif name == "q90":
            out.append(np.quantile(frames, 0.9, axis=1))
        elif name in ("skew", "kurtosis"):
            import warnings

            from scipy import stats

            fn = stats.skew if name == "skew" else stats.kurtosis
            # Constant rows (e.g. fully voiced): undefined, reported as 0. The encoder computes clips in threads,
            # and catch_warnings is not thread-safe, so the one warning scipy gives for them is silenced by its
            # message for good rather than inside a context.
            warnings.filterwarnings("ignore", message="Precision loss occurred in moment calculation",
                                    category=RuntimeWarning)
            with np.errstate(divide="ignore", invalid="ignore"):
                out.append(np.nan_to_num(fn(frames, axis=1)))
    return np.concatenate(out)


@lru_cache(maxsize=16)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)
    basis.setflags(write=False)
    return basis


class LLDEncoder(Encoder):
    """MFCC and deltas, chroma, log-mel bands, ZCR, RMS, spectral contrast/flatness/centroid/
    bandwidth/roll-off and pitch (YIN), each summarised by mean/std/min/max (configurable)."""

    name = "lld"
    modality = "audio"
    description = "librosa low-level descriptors + functionals (MFCC, chroma, mel, spectral, pitch)"
    Options = LLDOptions
    requires: ClassVar[tuple[str, ...]] = ("librosa",)
    version = "1"

    def load(self) -> None:
        import librosa  # noqa: F401  (import cost paid once, before the first batch)

    def encode_batch(self, inputs):
        from threadpoolctl import threadpool_limits

        o = self.options
        # One BLAS thread: the matrices here are tiny, and BLAS threads on top of our own
        # workers oversubscribe the cores; under load that made a (40x257)@(257xT) product 1000x slower.
        with threadpool_limits(limits=1, user_api="blas"):
            if o.workers > 1 and len(inputs) > 1:
                with ThreadPoolExecutor(o.workers) as pool:
                    return list(pool.map(self.features, inputs))
            return [self.features(x) for x in inputs]

    def identity(self) -> dict[str, Any]:
        """The base identity; ``pooling: functionals`` (the default) is left out so that recipes written
        before the option keep their cache key, and ``pooling: none`` leaves out the unused functionals."""
        ident = super().identity()
        opts = ident["options"]
        if opts.get("pooling") == "functionals":
            del opts["pooling"]
        else:
            opts.pop("functionals", None)
        return ident

    def features(self, y: np.ndarray) -> dict[str, np.ndarray]:
        if self.options.pooling == "none":
            return {"frames": self.frames(y).T.astype(np.float16)}
        return {"features": self.describe(y)}

    def required_keys(self) -> set[str]:
        return {"frames"} if self.options.pooling == "none" else {"features"}

    def is_sequence(self) -> bool:
        return self.options.pooling == "none"

    def select(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """(D,) functionals, or the (T, D) frame descriptors with ``pooling: none``."""
        key = "frames" if self.options.pooling == "none" else "features"
        return np.asarray(arrays[key], dtype=np.float32)

    def frames(self, y: np.ndarray) -> np.ndarray:
        """Frame-level descriptors (D, T)."""
        import librosa

        o, sr = self.options, self.sample_rate
        if o.trim_db is not None and len(y) > 0:
            trimmed, _ = librosa.effects.trim(y, top_db=o.trim_db)
            if len(trimmed) >= sr // 10:
                y = trimmed
        n_fft = int(2 ** np.ceil(np.log2(o.frame_ms * sr / 1000)))
        hop = int(o.hop_ms * sr / 1000)
        if len(y) < n_fft:
            y = np.pad(y, (0, n_fft - len(y)))
        mag = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
        S = mag**2
        want = set(o.descriptors)
        rows: list[np.ndarray] = []
        mel = _mel_basis(sr, n_fft, o.n_mels) @ S  # = librosa.feature.melspectrogram(S=S), filters built once
        log_mel = librosa.power_to_db(mel)
        if want & {"mfcc", "mfcc_delta", "mfcc_delta2"}:
            mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=o.n_mfcc)
            width = min(9, mfcc.shape[1] - (1 - mfcc.shape[1] % 2)) if mfcc.shape[1] >= 3 else 0
            for name, order in (("mfcc", 0), ("mfcc_delta", 1), ("mfcc_delta2", 2)):
                if name not in want:
                    continue
                if order == 0:
                    rows.append(mfcc)
                elif width >= 3:
                    rows.append(librosa.feature.delta(mfcc, order=order, width=width))
                else:
                    rows.append(np.zeros_like(mfcc))
        if "chroma" in want:
            # tuning=0.0: librosa's tuning estimate (piptrack) crashes numba on some machines
            rows.append(librosa.feature.chroma_stft(S=S, sr=sr, tuning=0.0))
        if "mel" in want:
            rows.append(log_mel)
        if "zcr" in want:
            rows.append(librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop))
        if "rms" in want:
            rows.append(librosa.feature.rms(S=mag, frame_length=n_fft))
        if "contrast" in want:
            rows.append(librosa.feature.spectral_contrast(S=mag, sr=sr, n_fft=n_fft))
        if "flatness" in want:
            rows.append(librosa.feature.spectral_flatness(S=mag))
        if "centroid" in want:
            rows.append(librosa.feature.spectral_centroid(S=mag, sr=sr))
        if "bandwidth" in want:
            rows.append(librosa.feature.spectral_bandwidth(S=mag, sr=sr))
        if "rolloff" in want:
            rows.append(librosa.feature.spectral_rolloff(S=mag, sr=sr))
        T = min(r.shape[1] for r in rows) if rows else 0
        if "pitch" in want:
            win = max(n_fft, int(2 * sr / o.fmin_pitch) + 2)
            f0 = librosa.yin(np.pad(y, (0, max(0, win - len(y)))), fmin=o.fmin_pitch, fmax=o.fmax_pitch,
                             sr=sr, frame_length=win, hop_length=hop)
            voiced = np.isfinite(f0) & (f0 < o.fmax_pitch * 0.99)
            logf0 = np.where(voiced, np.log2(np.maximum(f0, 1.0)), 0.0)
            T = min(T, len(f0)) if rows else len(f0)
            rows.append(np.stack([logf0, voiced.astype(float)]))
        return np.concatenate([r[:, :T] for r in rows]).astype(np.float64)

    def describe(self, y: np.ndarray) -> np.ndarray:
        return _functionals(self.frames(y), self.options.functionals).astype(np.float32)


@hookimpl
def register_encoders(register):
    register(LLDEncoder)
