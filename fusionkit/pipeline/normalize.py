"""Feature normalisation by group (``normalize: corpus | speaker``): z-scores computed without labels.

Each group's clips (a corpus, or a speaker) are standardised with that group's own mean and
standard deviation, per feature. It uses the test clips' features (never their labels), as
speaker/corpus normalisation does in the SER literature; the protocol records it.
"""

from __future__ import annotations

import numpy as np

from fusionkit.sdk.base import Clip


def group_of(clip: Clip, mode: str, test_ids: set[str]) -> str:
    if mode == "speaker":
        return clip.speaker
    return "test_data" if clip.id in test_ids else "data"


def normalize_features(features: dict[str, dict[str, np.ndarray]], sequences: dict[str, bool], clips: list[Clip],
                       mode: str, test_ids: set[str] = frozenset(), eps: float = 1e-6) -> dict:
    """New features dict: pooled encoders z-scored per group; sequence encoders are refused."""
    if mode == "none":
        return features
    seq = [name for name, is_seq in sequences.items() if is_seq]
    if seq:
        raise ValueError(f"normalize: {mode} needs pooled features; {', '.join(seq)} give frame sequences")
    groups: dict[str, list[str]] = {}
    for c in clips:
        groups.setdefault(group_of(c, mode, test_ids), []).append(c.id)
    out = {}
    for name, feats in features.items():
        new = {}
        for ids in groups.values():
            block = np.stack([np.asarray(feats[i], dtype=np.float64) for i in ids])
            mean, std = block.mean(axis=0), block.std(axis=0)
            z = (block - mean) / np.where(std > eps, std, 1.0)
            new.update({i: z[k].astype(np.float32) for k, i in enumerate(ids)})
        out[name] = new
    return out
