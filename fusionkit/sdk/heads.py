"""Shared code for fusion heads (numpy only; torch code lives in :mod:`fusionkit.sdk.training`).

* :class:`Standardizer`: per-encoder mean/std fitted on the training fold only.
* :func:`pooled_blocks`: every encoder's features as an (N, D) block, in a stable order.
* :func:`validation_split`: a validation set drawn from the training fold's *speakers*.
* :func:`class_weights`: inverse-frequency weights for imbalanced corpora.
* :func:`save_arrays` / :func:`load_arrays`, :func:`write_config` / :func:`read_config`:
  safetensors + JSON persistence (no pickle anywhere).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fusionkit.sdk.features import as_matrix

CONFIG = "head.json"
ARRAYS = "arrays.safetensors"


class HeadFileError(ValueError):
    """A saved head that cannot be read back; the message names the file and the reason."""


# ---------------------------------------------------------------- shapes


def encoder_names(X: dict) -> list[str]:
    """Encoders in a stable order (sorted by name), so that fit and predict agree."""
    if not X:
        raise ValueError("fusion head: no encoder features were given")
    return sorted(X)


def n_rows(x) -> int:
    return len(x)


def pooled_blocks(X: dict, names: list[str] | None = None) -> list[np.ndarray]:
    """One float64 (N, D) block per encoder: layers are flattened, sequences mean-pooled."""
    names = names or encoder_names(X)
    return [as_matrix(X[k]).astype(np.float64) for k in names]


def check_names(X: dict, expected: list[str]) -> None:
    got = sorted(X)
    if got != sorted(expected):
        raise ValueError(f"fusion head was fitted on encoders {expected}, got {got}")


def check_width(name: str, block: np.ndarray, width: int) -> None:
    if block.shape[-1] != width:
        raise ValueError(f"encoder '{name}': fitted on {width}-dimensional features, got {block.shape[-1]}")


# ---------------------------------------------------------------- standardisation


class Standardizer:
    """z-scores with statistics from the training fold; constant columns get scale 1."""

    def __init__(self, mean: np.ndarray | None = None, scale: np.ndarray | None = None):
        self.mean = mean
        self.scale = scale

    def fit(self, x: np.ndarray) -> "Standardizer":
        """``x``: (N, D) or stacked frames (M, D)."""
        x = np.asarray(x, dtype=np.float64)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale = np.where(std > 1e-8, std, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.mean": self.mean, f"{prefix}.scale": self.scale}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> "Standardizer":
        return cls(arrays[f"{prefix}.mean"], arrays[f"{prefix}.scale"])


# ---------------------------------------------------------------- labels, weights, validation


def present_classes(y: np.ndarray, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if len(y) == 0:
        raise ValueError("fusion head: the training fold is empty")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"fusion head: labels must be class indices in [0, {n_classes}), got {y.min()}..{y.max()}")
    return np.unique(y)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced weights n / (k * count) for the k classes present; 0 for absent classes."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    k = int((counts > 0).sum())
    w = np.zeros(n_classes)
    w[counts > 0] = len(y) / (k * counts[counts > 0])
    return w


def validation_split(
    y: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train idx, validation idx) with whole speakers held out (GroupShuffleSplit on ``groups``).

    Without groups (or with a single speaker) a stratified clip-level split is used instead.
    """
    n = len(y)
    idx = np.arange(n)
    if groups is not None and len(set(groups.tolist())) >= 2:
        from sklearn.model_selection import GroupShuffleSplit

        n_groups = len(set(groups.tolist()))
        test_size = max(1, int(round(fraction * n_groups)))
        test_size = min(test_size, n_groups - 1)
        gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        tr, va = next(gss.split(idx, y, groups))
        return np.sort(tr), np.sort(va)
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    strat = y if counts[counts > 0].min() >= 2 else None
    tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=strat)
    return np.sort(tr), np.sort(va)


def inner_group_folds(y: np.ndarray, groups: np.ndarray | None, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speaker-grouped inner folds (GroupKFold); stratified clip folds when there are no groups."""
    idx = np.arange(len(y))
    if groups is not None and len(set(groups.tolist())) >= 2:
        from sklearn.model_selection import GroupKFold

        k = min(k, len(set(groups.tolist())))
        return list(GroupKFold(n_splits=k).split(idx, y, groups))
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y)
    k = max(2, min(k, int(counts[counts > 0].min()))) if counts[counts > 0].min() >= 2 else k
    try:
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y))
    except ValueError:
        from sklearn.model_selection import KFold

        return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(idx))


def macro_recall(y: np.ndarray, proba: np.ndarray) -> float:
    """Unweighted average recall over the classes present in ``y`` (UAR)."""
    pred = proba.argmax(axis=1)
    recalls = [float((pred[y == c] == c).mean()) for c in np.unique(y)]
    return float(np.mean(recalls))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- persistence


def save_arrays(directory: Path, arrays: dict[str, np.ndarray], filename: str = ARRAYS) -> None:
    from safetensors.numpy import save

    from fusionkit.fileio import atomic_write_bytes

    payload = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    atomic_write_bytes(Path(directory) / filename, save(payload))


def load_arrays(directory: Path, filename: str = ARRAYS) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = Path(directory) / filename
    if not path.exists():
        raise HeadFileError(f"{path}: missing (was the head saved into this folder?)")
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001
        raise HeadFileError(f"{path}: not a readable safetensors file ({exc})") from None


def write_config(directory: Path, config: dict[str, Any], filename: str = CONFIG) -> None:
    from fusionkit.fileio import atomic_write_text

    Path(directory).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(directory) / filename, json.dumps(config, indent=2, sort_keys=True))


def read_config(directory: Path, plugin: str, filename: str = CONFIG) -> dict[str, Any]:
    path = Path(directory) / filename
    if not path.exists():
        raise HeadFileError(f"{path}: missing (was the head saved into this folder?)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HeadFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if config.get("plugin") != plugin:
        raise HeadFileError(f"{path}: plugin: saved by '{config.get('plugin')}', cannot be loaded as '{plugin}'")
    return config
