"""Helpers for fusion heads: shaping encoders' features and class probabilities."""

from __future__ import annotations

import numpy as np


def as_matrix(x) -> np.ndarray:
    """(N, D) from pooled (N, D), layered (N, L, D) -> (N, L*D), or sequences -> their mean."""
    if isinstance(x, list):
        return np.stack([np.asarray(s).reshape(-1, np.asarray(s).shape[-1]).mean(axis=0) for s in x]).astype(np.float32)
    x = np.asarray(x, dtype=np.float32)
    return x.reshape(len(x), -1)


def concat_pooled(X: dict) -> np.ndarray:
    """Concatenate every encoder's features in a stable (sorted by name) order."""
    return np.concatenate([as_matrix(X[k]) for k in sorted(X)], axis=1)


def full_proba(proba: np.ndarray, present: np.ndarray, n_classes: int) -> np.ndarray:
    """Place probabilities over the classes seen in training into all classes' columns."""
    out = np.zeros((proba.shape[0], n_classes), dtype=np.float64)
    out[:, present] = proba
    return out
