"""Helpers for the dataset/protocol tests: tiny generated audio files and corpus trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SR = 16000


def write_tone(path: Path, freq: float = 220.0, seconds: float = 0.1, noise: float = 0.0, seed: int = 0) -> Path:
    """A short sine (optionally noisy) as WAV or FLAC, chosen by the suffix."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(SR * seconds)) / SR
    y = 0.3 * np.sin(2 * np.pi * freq * t)
    if noise:
        y = y + np.random.default_rng(seed).normal(0, noise, len(t))
    sf.write(path, y.astype(np.float32), SR, subtype="PCM_16")
    return path
