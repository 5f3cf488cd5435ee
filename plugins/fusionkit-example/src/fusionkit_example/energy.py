"""``example-energy``: frame energy and zero-crossing statistics, in plain numpy.

A small but real audio encoder: the signal is cut into frames, each frame gives
its RMS level (dB re full scale) and zero-crossing rate (and, optionally, their
frame-to-frame deltas), and functionals summarise them over the clip. Two
clip-level cues follow: the fraction of pause frames and the rate of energy
bursts per second (a rough syllable-rate proxy).

Only numpy and pydantic are imported here, at module level; an encoder that needs
torch or transformers imports them inside ``load()``/``encode_batch()`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Encoder, Options

Functional = Literal["mean", "std", "min", "max", "q10", "q50", "q90"]
QUANTILES = {"q10": 0.1, "q50": 0.5, "q90": 0.9}


class EnergyOptions(Options):
    """Options of ``example-energy`` (the recipe's ``options:`` mapping)."""

    frame_ms: float = Field(25.0, gt=0, le=1000, description="analysis frame length (ms)")
    hop_ms: float = Field(10.0, gt=0, le=1000, description="frame hop (ms)")
    functionals: list[Functional] = Field(
        default_factory=lambda: ["mean", "std", "min", "max", "q10", "q50", "q90"],
        min_length=1,
        description="statistics taken over frames",
    )
    deltas: bool = Field(True, description="add frame-to-frame deltas of RMS and ZCR")
    floor_db: float = Field(-100.0, lt=0, description="RMS floor (dBFS) so that digital silence stays finite")
    pause_db: float = Field(30.0, gt=0, description="frames quieter than the clip's peak minus this are pauses")
    batch_size: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _hop_within_frame(self) -> EnergyOptions:
        if self.hop_ms > self.frame_ms:
            raise ValueError(f"hop_ms ({self.hop_ms}) must not exceed frame_ms ({self.frame_ms})")
        return self


def frame_signal(y: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """(T, frame) view of ``y``; a clip shorter than one frame is zero-padded to one frame."""
    y = np.asarray(y, dtype=np.float32)
    if len(y) < frame:
        y = np.pad(y, (0, frame - len(y)))
    return np.lib.stride_tricks.sliding_window_view(y, frame)[::hop]


def frame_descriptors(frames: np.ndarray, floor_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame RMS level in dBFS and zero-crossing rate (crossings per sample)."""
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    rms_db = np.maximum(20.0 * np.log10(np.maximum(rms, 1e-12)), floor_db)
    signs = np.signbit(frames)
    zcr = np.mean(signs[:, 1:] != signs[:, :-1], axis=1)
    return rms_db, zcr


def functionals(rows: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """rows: (D, T) -> (D * len(names),), ordered functional-major."""
    out = []
    for name in names:
        if name == "mean":
            out.append(rows.mean(axis=1))
        elif name == "std":
            out.append(rows.std(axis=1))
        elif name == "min":
            out.append(rows.min(axis=1))
        elif name == "max":
            out.append(rows.max(axis=1))
        else:
            out.append(np.quantile(rows, QUANTILES[name], axis=1))
    return np.concatenate(out)


def burst_rate(rms_db: np.ndarray, threshold_db: float, hop_s: float) -> float:
    """Upward crossings of ``threshold_db`` per second (energy bursts, roughly syllables)."""
    loud = rms_db >= threshold_db
    onsets = int(loud[0]) + int(np.count_nonzero(loud[1:] & ~loud[:-1]))
    return onsets / max(len(rms_db) * hop_s, 1e-9)


class EnergyEncoder(Encoder):
    """Frame RMS/ZCR (+ deltas) functionals, pause fraction and burst rate; one vector per clip."""

    name = "example-energy"
    modality = "audio"
    description = "example plugin: frame RMS/ZCR statistics, pause fraction, burst rate (numpy)"
    Options = EnergyOptions
    requires: ClassVar[tuple[str, ...]] = ("numpy",)
    version = "1"
    sample_rate = 16000
    # batch_size is one of the base class's runtime_options: it is left out of the cache key, so changing it
    # re-encodes nothing; every other option is part of the key

    def feature_names(self) -> list[str]:
        """Names of the vector's entries, in order."""
        rows = ["rms_db", "zcr"] + (["rms_db_delta", "zcr_delta"] if self.options.deltas else [])
        return [f"{r}_{f}" for f in self.options.functionals for r in rows] + ["pause_fraction", "burst_rate"]

    def describe(self, y: np.ndarray) -> np.ndarray:
        o, sr = self.options, self.sample_rate
        frame = max(2, int(round(o.frame_ms * sr / 1000)))
        hop = max(1, int(round(o.hop_ms * sr / 1000)))
        rms_db, zcr = frame_descriptors(frame_signal(y, frame, hop), o.floor_db)
        rows = [rms_db, zcr]
        if o.deltas:
            rows += [np.diff(rms_db, prepend=rms_db[0]), np.diff(zcr, prepend=zcr[0])]
        threshold = float(rms_db.max()) - o.pause_db
        pause_fraction = float(np.mean(rms_db < threshold))
        rate = burst_rate(rms_db, threshold + o.pause_db / 2, hop / sr)
        stats = functionals(np.stack(rows), o.functionals)
        return np.concatenate([stats, [pause_fraction, rate]]).astype(np.float32)

    def encode_batch(self, inputs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [{"features": self.describe(y)} for y in inputs]

    def required_keys(self) -> set[str]:
        return {"features"}

    def select(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return arrays["features"]


@hookimpl
def register_encoders(register):
    register(EnergyEncoder)
