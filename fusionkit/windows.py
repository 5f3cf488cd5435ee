"""Cutting recordings of any length into windows, read block by block (memory stays constant)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fusionkit.audio import (
    ESTIMATED_LENGTH_FORMATS,
    AudioError,
    as_float_signal,
    check_file,
    decoder_reason,
    signal_rate,
    to_mono_resampled,
)

# names of the files a folder given to ``fusionkit predict`` is searched for (libsndfile reads Opus in Ogg)
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au"}
TARGET_SR = 16000


SHORTEST_WINDOW_S = 0.2
"""The shortest window a timeline takes: shorter audio holds too little speech to judge (``fusionkit.audio``'s
"very short"), and a window of a few samples would only multiply the work."""

MOST_WINDOWS_PER_WINDOW = 16
"""The hop is at least the window / this: windows overlap by at most 15/16, so the work stays within 16 times that
of windows side by side (a hop of 1 ms under 1 s windows asked a thousand windows per second of audio)."""


def window_problem(window: float | None, hop: float | None, smooth: int, prefix: str = "") -> str | None:
    """Why these timeline arguments cannot be used (``prefix`` + the argument's name first), or None."""
    for name, value in (("window", window), ("hop", hop)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            return f"{prefix}{name} {value}: expected a finite number of seconds > 0"
    if window is not None and window < SHORTEST_WINDOW_S:
        return f"{prefix}window {window}: expected at least {SHORTEST_WINDOW_S} s (shorter windows hold too little " \
               "speech to judge)"
    shortest_hop = (window or 4.0) / MOST_WINDOWS_PER_WINDOW
    if hop is not None and hop < shortest_hop - 1e-12:
        return f"{prefix}hop {hop}: expected at least {shortest_hop:g} s (the window / {MOST_WINDOWS_PER_WINDOW}: " \
               f"windows overlapping more would multiply the work, not the detail)"
    if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
        return f"{prefix}smooth {smooth}: expected a whole number of windows >= 1"
    return None


def timeline_only_problem(given: dict[str, object], timeline: bool, needs: str) -> str | None:
    """Why options that only shape a timeline (``given``: name -> value, those passed) cannot be used when no
    timeline is asked for (``needs``: what asks for one), or None."""
    if timeline or not given:
        return None
    name, value = next(iter(given.items()))
    return f"{name} {value}: only with {needs}; without a timeline the whole file gets one label"


def window_starts(total: float, window: float, hop: float) -> list[tuple[float, float]]:
    """(start, end) of windows covering ``total`` seconds: one every ``hop`` seconds, each ``window`` long, and,
    where those stop short of the end, a last full window that ends at the end (starting ``total - window``, so it
    overlaps the one before). A recording shorter than the window is one window of its own length."""
    if total <= window:
        return [(0.0, total)] if total > 0 else []
    n = int(math.floor((total - window) / hop + 1e-9)) + 1
    spans = [(i * hop, i * hop + window) for i in range(n)]
    if total - spans[-1][1] > 1e-6:
        spans.append((total - window, total))
    return spans


def _open(path: Path):
    import soundfile as sf

    path = check_file(path)
    try:
        return sf.SoundFile(str(path))
    except Exception as exc:  # noqa: BLE001
        raise AudioError(f"not readable as audio ({decoder_reason(exc)})") from None


def iter_windows(source, sampling_rate: int | None, window: float, hop: float,
                 regions: list[tuple[float, float]] | None = None,
                 target_sr: int = TARGET_SR) -> Iterator[tuple[float, float, np.ndarray]]:
    """Yield (start s, end s, mono signal at ``target_sr``) for each window of a file or array."""
    if isinstance(source, (str, Path)):
        f = _open(Path(source))
        with f:
            sr, total = f.samplerate, f.frames / f.samplerate
            if f.frames == 0:
                raise AudioError("no audio samples")
            for s, e in _spans(total, window, hop, regions):
                f.seek(int(s * sr))
                wanted = min(int(round((e - s) * sr)), f.frames - int(s * sr))
                block = f.read(wanted, dtype="float32", always_2d=True)
                if len(block) < wanted and f.format not in ESTIMATED_LENGTH_FORMATS:
                    raise AudioError(f"truncated: header promises {f.frames} frames, "
                                     f"{int(s * sr) + len(block)} could be decoded")
                if len(block) == 0:
                    continue
                yield s, e, to_mono_resampled(block, sr, target_sr)
        return
    x = as_float_signal(source)
    sr = signal_rate(sampling_rate)
    if x.ndim == 2 and x.shape[0] < x.shape[1]:
        x = x.T  # (channels, frames) -> (frames, channels)
    total = len(x) / sr
    for s, e in _spans(total, window, hop, regions):
        yield s, e, to_mono_resampled(x[int(s * sr): int(round(e * sr))], sr, target_sr)


def _spans(total, window, hop, regions):
    if regions is None:
        yield from window_starts(total, window, hop)
        return
    for rs, re_ in regions:
        for s, e in window_starts(min(re_, total) - rs, window, hop):
            if e - s >= 0.25:
                yield rs + s, rs + e


def speech_regions(source, sampling_rate: int | None = None, min_gap: float = 0.3) -> list[tuple[float, float]]:
    """Speech regions (seconds) found by silero-vad, with gaps shorter than ``min_gap`` merged."""
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    from fusionkit.audio import load_audio

    x = load_audio(source, TARGET_SR) if isinstance(source, (str, Path)) else to_mono_resampled(
        source, signal_rate(sampling_rate), TARGET_SR)
    model = _vad_model(load_silero_vad)
    stamps = get_speech_timestamps(torch.from_numpy(x), model, sampling_rate=TARGET_SR, return_seconds=True)
    merged: list[list[float]] = []
    for st in stamps:
        if merged and st["start"] - merged[-1][1] < min_gap:
            merged[-1][1] = st["end"]
        else:
            merged.append([float(st["start"]), float(st["end"])])
    return [(s, e) for s, e in merged]


_VAD = None


def _vad_model(loader):
    global _VAD
    if _VAD is None:
        _VAD = loader()
    return _VAD


def smooth_probabilities(segments: list, width: int, names: list[str]) -> list:
    """Moving average over ``width`` neighbouring windows (centred) of each window's class
    probabilities (relabelled by the arg-max), or of its target values for a regression timeline."""
    from dataclasses import replace

    if not segments:
        return segments
    field = "values" if segments[0].values is not None else "probabilities"
    P = np.array([[getattr(s, field)[c] for c in names] for s in segments])
    kernel = np.ones(width) / width
    pad = width // 2
    padded = np.pad(P, ((pad, width - 1 - pad), (0, 0)), mode="edge")
    smoothed = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(len(names))], axis=1)
    if field == "values":
        return [replace(s, values=dict(zip(names, map(float, p)))) for s, p in zip(segments, smoothed)]
    return [replace(s, probabilities=dict(zip(names, map(float, p))), label=names[int(np.argmax(p))])
            for s, p in zip(segments, smoothed)]
