"""``example-band-energy``: FFT band levels at 22.05 kHz, in plain numpy.

An encoder that declares its own ``sample_rate``: fusionkit hands it every signal at 22 050 Hz,
in training and in a bundle's predictions alike, so the bands above 8 kHz (beyond what 16 kHz
audio holds) carry real content. Each frame is Hann-windowed; its one-sided power spectrum is
summed over frequency bands, each band's level (dB re full scale: a sine of amplitude ``a``
inside a band gives ``20 log10(a / sqrt 2)``) is taken per frame, and the mean and standard
deviation over frames make one vector per clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Encoder, Options
from fusionkit_example.energy import frame_signal

SAMPLE_RATE = 22050


class BandEnergyOptions(Options):
    """Options of ``example-band-energy`` (the recipe's ``options:`` mapping)."""

    edges_hz: list[float] = Field(
        default_factory=lambda: [0.0, 300.0, 1000.0, 2000.0, 4000.0, 8000.0, 11025.0],
        min_length=2,
        description="band edges (Hz), increasing, from 0 up to 11025 (half of 22050)",
    )
    frame_ms: float = Field(46.0, gt=0, le=1000, description="analysis frame length (ms)")
    hop_ms: float = Field(23.0, gt=0, le=1000, description="frame hop (ms)")
    floor_db: float = Field(-120.0, lt=0, description="level floor (dBFS) so that digital silence stays finite")
    batch_size: int = Field(32, ge=1)

    @field_validator("edges_hz")
    @classmethod
    def _edges_increase_within_nyquist(cls, edges: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"edges must increase, got {edges}")
        if edges[0] < 0 or edges[-1] > SAMPLE_RATE / 2:
            raise ValueError(f"edges must lie within 0..{SAMPLE_RATE / 2:g} Hz, got {edges[0]:g}..{edges[-1]:g}")
        return edges


def band_levels(frames: np.ndarray, sr: int, edges_hz: Sequence[float], floor_db: float) -> np.ndarray:
    """(T, n) frames -> (bands, T) levels in dBFS of the Hann-windowed power in each [lo, hi) band
    (the last band includes its upper edge)."""
    n = frames.shape[1]
    window = np.hanning(n)
    power = np.abs(np.fft.rfft(frames.astype(np.float64) * window, axis=1)) ** 2
    weight = np.full(power.shape[1], 2.0)  # one-sided spectrum: every bin but DC (and Nyquist) counts twice
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    power = power * weight / (n * np.sum(window**2))  # Parseval: a band's mean-square level
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    rows = []
    for k, (lo, hi) in enumerate(zip(edges_hz, edges_hz[1:])):
        last = k == len(edges_hz) - 2
        in_band = (freqs >= lo) & ((freqs <= hi) if last else (freqs < hi))
        rows.append(power[:, in_band].sum(axis=1))
    return np.maximum(10.0 * np.log10(np.maximum(np.stack(rows), 1e-30)), floor_db)


class BandEnergyEncoder(Encoder):
    """Mean and standard deviation over frames of each FFT band's level; one vector per clip."""

    name = "example-band-energy"
    modality = "audio"
    description = "example plugin: FFT band levels up to 11 kHz at 22.05 kHz (numpy)"
    Options = BandEnergyOptions
    requires: ClassVar[tuple[str, ...]] = ("numpy",)
    version = "1"
    sample_rate = SAMPLE_RATE
    runtime_options: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    def feature_names(self) -> list[str]:
        """Names of the vector's entries, in order: every band's mean level, then every band's spread."""
        edges = self.options.edges_hz
        bands = [f"{lo:g}-{hi:g}Hz" for lo, hi in zip(edges, edges[1:])]
        return [f"{b}_{stat}" for stat in ("mean_db", "std_db") for b in bands]

    def describe(self, y: np.ndarray) -> np.ndarray:
        o, sr = self.options, self.sample_rate
        frame = max(2, int(round(o.frame_ms * sr / 1000)))
        hop = max(1, int(round(o.hop_ms * sr / 1000)))
        levels = band_levels(frame_signal(y, frame, hop), sr, o.edges_hz, o.floor_db)
        return np.concatenate([levels.mean(axis=1), levels.std(axis=1)]).astype(np.float32)

    def encode_batch(self, inputs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return [{"features": self.describe(y)} for y in inputs]

    def required_keys(self) -> set[str]:
        return {"features"}

    def select(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return arrays["features"]


@hookimpl
def register_encoders(register):
    register(BandEnergyEncoder)
