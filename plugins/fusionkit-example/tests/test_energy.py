"""Tests a plugin author would write: options, features on known signals, registration."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest
from pydantic import ValidationError

from fusionkit_example.energy import EnergyEncoder, EnergyOptions, burst_rate

SR = 16000


def tone(seconds: float, amp: float = 0.5, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_options_reject_bad_values():
    with pytest.raises(ValidationError, match="hop_ms"):
        EnergyOptions(frame_ms=10, hop_ms=20)
    with pytest.raises(ValidationError):
        EnergyOptions(functionals=["median"])
    with pytest.raises(ValidationError):
        EnergyOptions(colour="red")


def test_vector_matches_names_and_level():
    enc = EnergyEncoder(EnergyOptions(functionals=["mean", "max"]))
    out = enc.encode_batch([tone(1.0, amp=0.5)])[0]["features"]
    names = enc.feature_names()
    assert out.shape == (len(names),) == (2 * 4 + 2,)
    # a sine of amplitude a has RMS a/sqrt(2): -9.03 dBFS for a = 0.5
    assert out[names.index("rms_db_mean")] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.1)
    # 220 Hz crosses zero 440 times a second
    assert out[names.index("zcr_mean")] == pytest.approx(440 / SR, rel=0.05)


def test_louder_and_noisier_clips_differ():
    enc = EnergyEncoder(EnergyOptions(deltas=False, functionals=["mean"]))
    quiet, loud = (enc.describe(tone(0.5, amp=a)) for a in (0.05, 0.8))
    assert loud[0] - quiet[0] == pytest.approx(20 * np.log10(0.8 / 0.05), abs=0.1)
    noise = np.random.default_rng(0).normal(0, 0.2, SR).astype(np.float32)
    assert enc.describe(noise)[1] > 5 * quiet[1]


def test_bursts_and_pauses_and_silence():
    enc = EnergyEncoder(EnergyOptions())
    names = enc.feature_names()
    # four 100 ms bursts separated by 150 ms of silence in one second
    y = np.zeros(SR, dtype=np.float32)
    for k in range(4):
        y[k * 4000 : k * 4000 + 1600] = tone(0.1)
    v = enc.describe(y)
    assert v[names.index("burst_rate")] == pytest.approx(4.0, abs=0.5)
    assert 0.4 < v[names.index("pause_fraction")] < 0.7
    assert np.all(np.isfinite(enc.describe(np.zeros(100, dtype=np.float32))))  # shorter than a frame
    assert burst_rate(np.array([-10.0, -10.0]), -20.0, 0.01) == pytest.approx(50.0)


def test_registered_through_the_entry_point():
    eps = metadata.entry_points(group="fusionkit.encoders")
    (ep,) = [e for e in eps if e.name == "example-energy"]
    assert ep.dist.name == "fusionkit-example"
    from fusionkit.registry import build_registry

    assert build_registry().get("encoder", "example-energy") is EnergyEncoder


def test_cache_key_follows_the_output_not_the_speed():
    key = EnergyEncoder(EnergyOptions()).cache_key()
    assert EnergyEncoder(EnergyOptions(batch_size=8)).cache_key() == key
    assert EnergyEncoder(EnergyOptions(frame_ms=30)).cache_key() != key


def test_cache_key_is_stable():
    """Embeddings cached by earlier versions stay valid: the key of the default options does not move."""
    assert EnergyEncoder(EnergyOptions()).cache_key() == "example-energy-37835dd2b91bd578"
    assert EnergyEncoder(EnergyOptions(batch_size=3)).cache_key() == "example-energy-37835dd2b91bd578"
