"""Shared helpers of the fusion-head tests: a synthetic two-bit task and fast head options."""

from __future__ import annotations

import numpy as np

from fusionkit.registry import registry

CLASSES = ["w", "x", "y", "z"]
FAST = {
    "linear": {},
    "concat-ffn": {"width": 32, "epochs": 60, "patience": 10, "refit": False},
    "self-attention": {"width": 32, "epochs": 60, "patience": 10, "refit": False},
    "cross-attention": {"width": 32, "epochs": 60, "patience": 10, "refit": False},
    "transformer": {"width": 32, "epochs": 60, "patience": 10, "depth": 1, "refit": False},
    "xgboost": {"n_estimators": 60, "n_jobs": 1},
    "catboost": {"iterations": 150, "threads": 1, "rsm": 1.0},
    "late-average": {"inner_folds": 3},
    "stacking": {"inner_folds": 3},
}
NEURAL = ["concat-ffn", "self-attention", "cross-attention", "transformer"]
# a reloaded (or refitted) head reproduces probabilities up to the last bits BLAS may change between
# runs and CPUs (e.g. 3e-16 on Intel AMX); never compare them bit for bit
RELOAD_ATOL = 1e-9


def two_bit_task(n_speakers: int = 12, per_speaker: int = 24, seed: int = 0):
    """X = {'a': (N, 6), 'b': (N, 10)}, y, speaker groups."""
    rng = np.random.default_rng(seed)
    n = n_speakers * per_speaker
    y = np.tile(np.arange(4), n // 4)
    rng.shuffle(y)
    groups = np.repeat([f"spk{i:02d}" for i in range(n_speakers)], per_speaker)
    bit_a, bit_b = y // 2, y % 2
    a = 1.2 * bit_a[:, None] * rng.normal(1.0, 0.2, (1, 6)) + rng.normal(0, 0.6, (n, 6))
    b = 1.2 * bit_b[:, None] * rng.normal(1.0, 0.2, (1, 10)) + rng.normal(0, 0.6, (n, 10))
    a += rng.normal(0, 0.5, (n_speakers, 1, 6)).repeat(per_speaker, 0).reshape(n, 6) * 0.3  # speaker offsets
    return {"a": a.astype(np.float32), "b": b.astype(np.float32)}, y, groups


def split(X, y, groups, n_test_speakers: int = 4):
    speakers = sorted(set(groups))
    test = np.isin(groups, speakers[-n_test_speakers:])
    take = lambda m: {k: (v[m] if not isinstance(v, list) else [s for s, t in zip(v, m) if t]) for k, v in X.items()}
    return take(~test), y[~test], groups[~test], take(test), y[test]


def make(name: str, seed: int = 0, **extra):
    cls = registry().get("fusion", name)
    return cls(cls.Options.model_validate({**FAST[name], **extra}), seed=seed)


def accuracy(head, X, y) -> float:
    p = head.predict_proba(X)
    assert p.shape == (len(y), len(CLASSES))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    return float((p.argmax(axis=1) == y).mean())
