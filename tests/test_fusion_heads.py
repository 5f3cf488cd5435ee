"""Fusion heads on a synthetic task that needs both encoders.

The label (4 classes) is two bits: encoder ``a`` carries only the first, encoder ``b`` only the
second. Either encoder alone can tell at most two of the four classes apart (~50 % accuracy);
together they tell all four. Every head must beat each single-encoder version of itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from fusion_fixtures import CLASSES, FAST, NEURAL, RELOAD_ATOL, accuracy, make, split, two_bit_task


@pytest.mark.parametrize("name", list(FAST))
def test_fusion_beats_each_encoder_alone(name):
    pytest.importorskip("torch") if name in NEURAL else None
    pytest.importorskip("catboost") if name == "catboost" else None
    Xtr, ytr, gtr, Xte, yte = split(*two_bit_task())
    fused = make(name)
    fused.fit(Xtr, ytr, CLASSES, gtr)
    acc = accuracy(fused, Xte, yte)
    for enc in ("a", "b"):
        alone = make(name)
        alone.fit({enc: Xtr[enc]}, ytr, CLASSES, gtr)
        single = accuracy(alone, {enc: Xte[enc]}, yte)
        assert single < 0.65, f"{name} on {enc} alone: {single:.2f} (the task should be ambiguous)"
        assert acc > single + 0.2, f"{name}: fused {acc:.2f} vs {enc} alone {single:.2f}"
    assert acc > 0.8, f"{name}: fused accuracy {acc:.2f}"


@pytest.mark.parametrize("name", list(FAST))
def test_save_load_reproduces_probabilities(name, tmp_path):
    pytest.importorskip("torch") if name in NEURAL else None
    pytest.importorskip("catboost") if name == "catboost" else None
    Xtr, ytr, gtr, Xte, _ = split(*two_bit_task(n_speakers=8, per_speaker=16))
    head = make(name)
    head.fit(Xtr, ytr, CLASSES, gtr)
    head.save(tmp_path / "m")
    names = {p.name for p in (tmp_path / "m").rglob("*")}
    assert not any(n.endswith((".pkl", ".pickle", ".joblib", ".pt")) for n in names), names
    again = type(head).load(tmp_path / "m")
    np.testing.assert_allclose(again.predict_proba(Xte), head.predict_proba(Xte), rtol=0, atol=RELOAD_ATOL)


@pytest.mark.parametrize("name", [*NEURAL, "catboost", "late-average", "stacking"])
def test_same_seed_same_result(name):
    pytest.importorskip("torch") if name in NEURAL else None
    pytest.importorskip("catboost") if name == "catboost" else None
    Xtr, ytr, gtr, Xte, _ = split(*two_bit_task(n_speakers=8, per_speaker=16))
    runs = []
    extra = {"refit": True} if name == "concat-ffn" else {}  # the default refit path, seeded too
    for seed in (0, 0, 1):
        head = make(name, seed=seed, **extra)
        head.fit(Xtr, ytr, CLASSES, gtr)
        runs.append(head.predict_proba(Xte))
    np.testing.assert_allclose(runs[0], runs[1], rtol=0, atol=RELOAD_ATOL)
    if name in NEURAL or name == "catboost":
        assert np.abs(runs[0] - runs[2]).max() > 1e-4, "another seed should give another model"


def sequence_task(seed: int = 0):
    """Encoder 'a' as variable-length frame sequences (T_i, 6), 'b' pooled (N, 10)."""
    X, y, groups = two_bit_task(n_speakers=10, per_speaker=16, seed=seed)
    rng = np.random.default_rng(seed + 1)
    seqs = [X["a"][i] + rng.normal(0, 0.8, (int(rng.integers(3, 40)), 6)).astype(np.float32) for i in range(len(y))]
    return {"a": seqs, "b": X["b"]}, y, groups


@pytest.mark.parametrize("name", NEURAL)
def test_sequence_inputs(name, tmp_path):
    pytest.importorskip("torch")
    Xtr, ytr, gtr, Xte, yte = split(*sequence_task())
    head = make(name, max_frames=16)
    assert head.accepts_sequences
    head.fit(Xtr, ytr, CLASSES, gtr)
    assert accuracy(head, Xte, yte) > 0.7
    head.save(tmp_path / "m")
    again = type(head).load(tmp_path / "m")
    np.testing.assert_allclose(again.predict_proba(Xte), head.predict_proba(Xte), rtol=0, atol=RELOAD_ATOL)


def test_sequence_length_does_not_change_a_clip_prediction():
    """Padding is masked: a clip's probabilities do not depend on the other clips of the batch."""
    pytest.importorskip("torch")
    Xtr, ytr, gtr, Xte, _ = split(*sequence_task())
    head = make("cross-attention")
    head.fit(Xtr, ytr, CLASSES, gtr)
    together = head.predict_proba(Xte)
    alone = head.predict_proba({"a": Xte["a"][:1], "b": Xte["b"][:1]})
    np.testing.assert_allclose(alone[0], together[0], atol=1e-5)


def layered_task():
    """Encoder 'b' as (N, 3, 10): layer 1 carries the bit, layers 0 and 2 are noise."""
    X, y, groups = two_bit_task(n_speakers=10, per_speaker=20)
    rng = np.random.default_rng(3)
    noise = lambda: rng.normal(0, 1.0, X["b"].shape).astype(np.float32)
    return {"a": X["a"], "b": np.stack([noise(), X["b"], noise()], axis=1)}, y, groups


@pytest.mark.parametrize("name", [*NEURAL, "linear", "late-average"])
def test_layered_inputs(name):
    pytest.importorskip("torch") if name in NEURAL else None
    Xtr, ytr, gtr, Xte, yte = split(*layered_task())
    head = make(name)
    head.fit(Xtr, ytr, CLASSES, gtr)
    assert accuracy(head, Xte, yte) > 0.75
    if name == "concat-ffn":
        weights = head.history["layer_weights"][head.encoders.index("b")]
        assert weights[1] == max(weights), f"the informative layer should weigh most: {weights}"


def test_layers_as_a_sequence():
    pytest.importorskip("torch")
    Xtr, ytr, gtr, Xte, yte = split(*layered_task())
    head = make("transformer", layers="sequence")
    head.fit(Xtr, ytr, CLASSES, gtr)
    assert accuracy(head, Xte, yte) > 0.7
