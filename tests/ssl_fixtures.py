"""Tiny randomly initialised speech SSL models (hidden 32, 2 layers), saved with their feature extractors.

Built from configs at test time; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HIDDEN, LAYERS = 32, 2
CONV = dict(conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 8))
COMMON = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=37)

# kind -> (transformers model class name, uses an attention mask)
KINDS = {
    "wav2vec2-group": ("Wav2Vec2Model", False),
    "wav2vec2-layer": ("Wav2Vec2Model", True),
    "hubert": ("HubertModel", True),
    "wavlm": ("WavLMModel", True),
    "wavlm-group": ("WavLMModel", True),  # like wavlm-base-plus: group-norm conv stack, yet a mask
    "data2vec-audio": ("Data2VecAudioModel", True),
}


def _config(kind: str):
    import transformers as tf

    pos = dict(num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    if kind == "wav2vec2-group":
        return tf.Wav2Vec2Config(**COMMON, **CONV, **pos, feat_extract_norm="group")
    if kind == "wav2vec2-layer":
        return tf.Wav2Vec2Config(**COMMON, **CONV, **pos, feat_extract_norm="layer", do_stable_layer_norm=True)
    if kind == "hubert":
        return tf.HubertConfig(**COMMON, **CONV, **pos, feat_extract_norm="layer", do_stable_layer_norm=True)
    if kind == "wavlm":
        return tf.WavLMConfig(**COMMON, **CONV, **pos, feat_extract_norm="layer", num_buckets=16,
                              max_bucket_distance=50)
    if kind == "wavlm-group":
        return tf.WavLMConfig(**COMMON, **CONV, **pos, feat_extract_norm="group", num_buckets=16,
                              max_bucket_distance=50)
    if kind == "data2vec-audio":
        return tf.Data2VecAudioConfig(**COMMON, **CONV, num_conv_pos_embeddings=5, conv_pos_kernel_size=5,
                                      num_conv_pos_embedding_groups=2)
    raise KeyError(kind)


def tiny_ssl(kind: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny ``kind`` model and its Wav2Vec2FeatureExtractor into ``folder``."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    config = _config(kind)
    model = tf.AutoModel.from_config(config).eval()
    model.save_pretrained(folder)
    tf.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
        return_attention_mask=KINDS[kind][1],
    ).save_pretrained(folder)
    return Path(folder)


def tiny_w2v_bert(folder: Path, seed: int = 0) -> Path:
    """A tiny Wav2Vec2-BERT conformer with the real SeamlessM4T fbank feature extractor."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    config = tf.Wav2Vec2BertConfig(**COMMON, conv_depthwise_kernel_size=5, feature_projection_input_dim=160)
    tf.Wav2Vec2BertModel(config).eval().save_pretrained(folder)
    tf.SeamlessM4TFeatureExtractor(sampling_rate=16000).save_pretrained(folder)
    return Path(folder)


def voiced(seconds: float, f0: float = 150.0, seed: int = 0, sr: int = 16000) -> np.ndarray:
    """A harmonic tone with a little noise and an amplitude envelope (speech-like enough for tests)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    env = 0.5 * (1 - np.cos(2 * np.pi * 3 * t))
    return (0.2 * env * y + rng.normal(0, 0.01, len(t))).astype(np.float32)
