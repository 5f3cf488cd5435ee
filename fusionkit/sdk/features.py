"""Helpers for fusion heads: the shapes of encoders' features and how they become one matrix."""

from __future__ import annotations

import numpy as np

Features = np.ndarray | list
"""One encoder's features for N clips: (N, D), (N, L, D), or a list of N (T_i, D) arrays."""


def as_matrix(x) -> np.ndarray:
    """(N, D) from pooled (N, D), layered (N, L, D) -> (N, L*D), or sequences -> their mean."""
    if isinstance(x, list):
        return np.stack([np.asarray(s).reshape(-1, np.asarray(s).shape[-1]).mean(axis=0) for s in x]).astype(np.float32)
    x = np.asarray(x, dtype=np.float32)
    return x.reshape(len(x), -1)


def concat_pooled(X: dict) -> np.ndarray:
    """Concatenate every encoder's features in a stable (sorted by name) order."""
    return np.concatenate([as_matrix(X[k]) for k in sorted(X)], axis=1)
