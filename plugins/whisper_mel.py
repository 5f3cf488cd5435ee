"""Whisper's log-mel spectrogram in torch (equal to ``WhisperFeatureExtractor``, at any length).

Whisper: 25 ms Hann window (400 samples), 10 ms hop (160), power spectrum, 80 or 128
Slaney mel bands up to 8 kHz, log10 clamped at 1e-10, floored at (max - 8), then
``(x + 4) / 4``. ``log_mel`` computes it for one signal at its own length (frames =
samples // 160) or padded with zeros to ``pad_samples``, as the feature extractor does.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

N_FFT = 400
HOP = 160
SAMPLE_RATE = 16000


@lru_cache(maxsize=4)
def mel_filters(n_mels: int) -> np.ndarray:
    """(n_fft/2 + 1, n_mels) Slaney filters, as the feature extractor builds them."""
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2, num_mel_filters=n_mels, min_frequency=0.0, max_frequency=8000.0,
        sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney",
    ).astype(np.float32)


class LogMel:
    """Callable computing Whisper log-mel features (n_mels, frames) for one mono 16 kHz signal."""

    def __init__(self, n_mels: int = 80):
        import torch

        self.n_mels = n_mels
        self.window = torch.hann_window(N_FFT)
        self.filters = torch.from_numpy(mel_filters(n_mels)).T.contiguous()  # (n_mels, freq)

    def __call__(self, signal: np.ndarray, pad_samples: int | None = None):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))
        if pad_samples is not None and x.numel() < pad_samples:
            x = torch.nn.functional.pad(x, (0, pad_samples - x.numel()))
        if x.numel() < N_FFT // 2 + 1:  # reflect padding needs n > n_fft/2
            x = torch.nn.functional.pad(x, (0, N_FFT // 2 + 1 - x.numel()))
        stft = torch.stft(x, N_FFT, HOP, window=self.window, return_complex=True)
        power = (stft[..., :-1].abs() ** 2).contiguous()
        log_spec = torch.clamp(self.filters @ power, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0

    def batch(self, signals: list[np.ndarray], pad_samples: int | None = None):
        """(B, n_mels, T_max) features of several signals in one STFT, and each one's frame count.

        Each signal is reflect-padded by itself (as ``torch.stft(center=True)`` would) before
        the batch is zero-padded, so every signal's frames equal :meth:`__call__`'s; frames
        past a signal's end are 0. The max - 8 floor uses each signal's own frames.
        """
        import torch

        half = N_FFT // 2
        lengths = [max(len(sig), pad_samples or 0, half + 1) for sig in signals]
        frames = [n // HOP for n in lengths]
        stacked = np.zeros((len(signals), max(lengths) + 2 * half), dtype=np.float32)
        for row, sig, n in zip(stacked, signals, lengths):  # numpy: no thread hand-offs per clip
            x = np.zeros(n, dtype=np.float32)
            x[: len(sig)] = sig
            row[: n + 2 * half] = np.pad(x, half, mode="reflect")
        stacked = torch.from_numpy(stacked)
        stft = torch.stft(stacked, N_FFT, HOP, window=self.window, center=False, return_complex=True)
        t_max = max(frames)
        power = (stft[..., :t_max].abs() ** 2).contiguous()
        log_spec = torch.clamp(self.filters @ power, min=1e-10).log10()  # (B, n_mels, T)
        valid = torch.arange(t_max)[None, :] < torch.tensor(frames)[:, None]  # (B, T)
        floor = log_spec.masked_fill(~valid[:, None, :], float("-inf")).amax(dim=(1, 2)) - 8.0
        log_spec = torch.maximum(log_spec, floor[:, None, None])
        out = ((log_spec + 4.0) / 4.0) * valid[:, None, :]
        return out, frames
