"""Heads saved by earlier versions still load and give the same probabilities.

The folders are written here exactly as the earlier ``save`` methods wrote them (their head.json
keys and array names); the expected probabilities are computed by hand from the same arrays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fusion_fixtures import RELOAD_ATOL
from safetensors.numpy import save_file

from fusionkit.registry import registry
from fusionkit.sdk.heads import HeadFileError, softmax

CLASSES = ["w", "x", "y", "z"]


def features(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.normal(0, 1, (9, 3)).astype(np.float32), "b": rng.normal(0, 1, (9, 2)).astype(np.float32)}


def old_linear(directory: Path, encoders: list[str], widths: list[int], present: list[int], seed: int = 0,
               drop: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """A ``linear`` head folder as the earlier LinearHead.save wrote it (without the ``drop`` keys)."""
    rng = np.random.default_rng(len(present) + sum(widths))
    k = 1 if len(present) == 2 else len(present)
    arrays = {"coef": rng.normal(0, 1, (k, sum(widths))), "intercept": rng.normal(0, 1, k),
              "block_scale": np.array([1.0 / np.sqrt(d) for d in widths])}
    for i, d in enumerate(widths):
        arrays[f"scaler{i}.mean"] = rng.normal(0, 0.3, d)
        arrays[f"scaler{i}.scale"] = rng.uniform(0.5, 2.0, d)
    config = {"plugin": "linear", "classes": CLASSES, "present": present, "encoders": encoders, "widths": widths,
              "options": {"C": 1.0, "max_iter": 2000, "tol": 1e-4, "class_weight": "balanced",
                          "block_weighting": "equal"}, "seed": seed}
    directory.mkdir(parents=True)
    (directory / "head.json").write_text(json.dumps({k: v for k, v in config.items() if k not in drop}, indent=2))
    save_file(arrays, str(directory / "arrays.safetensors"))
    return arrays


def linear_by_hand(arrays: dict[str, np.ndarray], X: dict, encoders: list[str], present: list[int]) -> np.ndarray:
    cols = [(X[e].astype(np.float64) - arrays[f"scaler{i}.mean"]) / arrays[f"scaler{i}.scale"]
            * arrays["block_scale"][i] for i, e in enumerate(encoders)]
    z = np.concatenate(cols, axis=1) @ arrays["coef"].T + arrays["intercept"]
    if z.shape[1] == 1:
        p1 = 1 / (1 + np.exp(-z[:, 0]))
        p = np.stack([1 - p1, p1], axis=1)
    else:
        p = softmax(z)
    out = np.zeros((len(z), len(CLASSES)))
    out[:, present] = p
    return out


@pytest.mark.parametrize("present", [[0, 1, 2, 3], [0, 2, 3], [1, 3]])
def test_old_linear_head(tmp_path, present):
    X = features()
    arrays = old_linear(tmp_path / "m", ["a", "b"], [3, 2], present, seed=3)
    head = registry().get("fusion", "linear").load(tmp_path / "m")
    assert head.seed == 3 and head.classes == CLASSES and head.present.tolist() == present
    expected = linear_by_hand(arrays, X, ["a", "b"], present)
    assert np.abs(expected[:, present]).min() > 0 and (np.delete(expected, present, axis=1) == 0).all()
    np.testing.assert_allclose(head.predict_proba(X), expected, rtol=0, atol=RELOAD_ATOL)


def test_old_head_without_seed_or_options_gets_the_defaults(tmp_path):
    old_linear(tmp_path / "m", ["a", "b"], [3, 2], [0, 1, 2, 3], seed=5, drop=("seed", "options"))
    head = registry().get("fusion", "linear").load(tmp_path / "m")
    assert head.seed == 0 and head.options == head.Options()


def test_old_late_average_without_present(tmp_path):
    """Earlier late heads saved no ``present``: their bases gave probabilities over every class."""
    X = features(1)
    probas = []
    for i, enc in enumerate(["a", "b"]):
        arrays = old_linear(tmp_path / "m" / f"base{i}", [enc], [X[enc].shape[1]], [0, 1, 2, 3])
        arrays["block_scale"][:] = 1.0
        save_file(arrays, str(tmp_path / "m" / f"base{i}" / "arrays.safetensors"))
        probas.append(linear_by_hand(arrays, X, [enc], [0, 1, 2, 3]))
    config = {"plugin": "late-average", "classes": CLASSES, "encoders": ["a", "b"], "oof_uar": {"a": 0.5},
              "options": {"base": "linear", "base_options": {}, "weighting": "search", "average": "proba",
                          "inner_folds": 3, "grid_step": 0.05}, "seed": 0, "weights": [0.7, 0.3], "average": "proba"}
    (tmp_path / "m" / "head.json").write_text(json.dumps(config))
    head = registry().get("fusion", "late-average").load(tmp_path / "m")
    assert head.present.tolist() == [0, 1, 2, 3] and head.scores == {"a": 0.5}
    expected = 0.7 * probas[0] + 0.3 * probas[1]
    np.testing.assert_allclose(head.predict_proba(X), expected / expected.sum(axis=1, keepdims=True),
                               rtol=0, atol=RELOAD_ATOL)


def test_old_ridge_head(tmp_path):
    """Earlier ridge heads: ridge.safetensors, and no encoder names in head.json."""
    X = features(2)
    rng = np.random.default_rng(4)
    arrays = {"W": rng.normal(0, 1, (5, 2)), "b": rng.normal(0, 1, 2), "mean": rng.normal(0, 1, 5),
              "scale": rng.uniform(0.5, 2, 5)}
    (tmp_path / "m").mkdir()
    save_file(arrays, str(tmp_path / "m" / "ridge.safetensors"))
    (tmp_path / "m" / "head.json").write_text(json.dumps({
        "plugin": "ridge", "task": "regression", "targets": ["arousal", "valence"], "alpha": 10.0,
        "options": {"alphas": [1.0, 10.0], "inner_folds": 3}, "seed": 0}))
    head = registry().get("fusion", "ridge").load(tmp_path / "m")
    assert head.targets == ["arousal", "valence"] and head.alpha == 10.0 and head.encoders is None
    raw = np.concatenate([X["a"], X["b"]], axis=1).astype(np.float64)
    expected = (raw - arrays["mean"]) / arrays["scale"] @ arrays["W"] + arrays["b"]
    np.testing.assert_allclose(head.predict(X), expected, rtol=0, atol=1e-6)


def test_a_missing_entry_or_array_is_named(tmp_path):
    arrays = old_linear(tmp_path / "m", ["a", "b"], [3, 2], [0, 1, 2, 3], drop=("classes",))
    cls = registry().get("fusion", "linear")
    with pytest.raises(HeadFileError, match=r"m/head.json: entry 'classes' missing"):
        cls.load(tmp_path / "m")
    old_linear(tmp_path / "n", ["a", "b"], [3, 2], [0, 1, 2, 3])
    save_file({k: v for k, v in arrays.items() if k != "intercept"}, str(tmp_path / "n" / "arrays.safetensors"))
    with pytest.raises(HeadFileError, match=r"n/arrays.safetensors: array 'intercept' missing"):
        cls.load(tmp_path / "n")
    cfg = json.loads((tmp_path / "n" / "head.json").read_text())
    cfg["options"]["C"] = -1
    (tmp_path / "n" / "head.json").write_text(json.dumps(cfg))
    with pytest.raises(HeadFileError, match=r"n/head.json: options.C: not valid for linear"):
        cls.load(tmp_path / "n")
