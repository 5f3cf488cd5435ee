"""example-band-energy: options, band levels of known tones at 22.05 kHz, registration."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest
from pydantic import ValidationError

from fusionkit_example.spectral import BandEnergyEncoder, BandEnergyOptions

SR = 22050


def tone(freq: float, seconds: float = 1.0, amp: float = 0.5, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_options_reject_bad_edges():
    with pytest.raises(ValidationError, match="increase"):
        BandEnergyOptions(edges_hz=[0, 4000, 2000])
    with pytest.raises(ValidationError, match="11025"):
        BandEnergyOptions(edges_hz=[0, 8000, 12000])
    with pytest.raises(ValidationError):
        BandEnergyOptions(edges_hz=[1000])
    with pytest.raises(ValidationError):
        BandEnergyOptions(colour="red")


def test_a_tone_above_8_khz_lands_in_the_top_band():
    enc = BandEnergyEncoder(BandEnergyOptions())
    names = enc.feature_names()
    v = enc.encode_batch([tone(9500.0, amp=0.5)])[0]["features"]
    assert v.shape == (len(names),) == (12,)
    top = v[names.index("8000-11025Hz_mean_db")]
    # a sine of amplitude a has mean square a^2/2: -9.03 dBFS for a = 0.5
    assert top == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.3)
    assert v[names.index("8000-11025Hz_std_db")] < 0.5  # a steady tone
    others = [v[names.index(f"{b}_mean_db")] for b in ("0-300Hz", "300-1000Hz", "1000-2000Hz", "2000-4000Hz")]
    assert max(others) < top - 60


def test_levels_follow_amplitude_and_band():
    enc = BandEnergyEncoder(BandEnergyOptions(edges_hz=[0, 1000, 11025]))
    quiet, loud = (enc.describe(tone(500.0, amp=a)) for a in (0.05, 0.8))
    assert loud[0] - quiet[0] == pytest.approx(20 * np.log10(0.8 / 0.05), abs=0.1)
    high = enc.describe(tone(5000.0))
    assert high[1] > high[0] + 40 and loud[0] > loud[1] + 40
    silence = enc.describe(np.zeros(100, dtype=np.float32))  # shorter than a frame
    assert silence[:2] == pytest.approx([-120.0, -120.0]) and np.all(np.isfinite(silence))


def test_signals_at_other_rates_are_resampled_to_22050():
    enc = BandEnergyEncoder(BandEnergyOptions())
    names = enc.feature_names()
    at_44k = enc.process_signal(tone(9500.0, sr=44100), 44100)
    np.testing.assert_allclose(at_44k, enc.describe(tone(9500.0)), atol=0.2)
    # 16 kHz audio cannot hold 9.5 kHz: the same tone squeezed through 16 kHz leaves the top band empty
    from fusionkit.audio import to_mono_resampled

    via_16k = enc.process_signal(to_mono_resampled(tone(9500.0, sr=44100), 44100, 16000), 16000)
    top = names.index("8000-11025Hz_mean_db")
    assert at_44k[top] > via_16k[top] + 60


def test_registered_through_the_entry_point():
    (ep,) = [e for e in metadata.entry_points(group="fusionkit.encoders") if e.name == "example-band-energy"]
    assert ep.dist.name == "fusionkit-example" and ep.value == "fusionkit_example.spectral"
    from fusionkit.registry import build_registry

    assert build_registry().get("encoder", "example-band-energy") is BandEnergyEncoder


def test_cache_key_ignores_batch_size():
    key = BandEnergyEncoder(BandEnergyOptions()).cache_key()
    assert BandEnergyEncoder(BandEnergyOptions(batch_size=4)).cache_key() == key
    assert BandEnergyEncoder(BandEnergyOptions(frame_ms=30)).cache_key() != key
