"""Tiny random Whisper checkpoints for the whisper tests (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TINY = dict(num_mel_bins=80, d_model=32, encoder_layers=3, encoder_attention_heads=2, decoder_layers=1,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_source_positions=1500,
            vocab_size=100, max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=3)


def tiny_whisper(directory: Path, seed: int = 0) -> Path:
    """save_pretrained a random 3-block WhisperForConditionalGeneration (+ feature extractor) into ``directory``."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(WhisperConfig(**TINY)).eval()
    model.save_pretrained(directory)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(directory)
    return Path(directory)


def voice(seconds: float, seed: int = 0, sr: int = 16000) -> np.ndarray:
    """A voiced-like test signal: harmonics of a gliding f0 with noise, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t)) ** 2
    x = 0.3 * x / np.abs(x).max() + 0.01 * rng.standard_normal(len(t))
    return x.astype(np.float32)
