"""egemaps encoder: openSMILE eGeMAPS v02 functionals on generated signals."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("opensmile")

from ssl_fixtures import voiced  # noqa: E402

from fusionkit.pipeline.encode import clip_digests, encode_clips  # noqa: E402
from fusionkit.sdk.base import Clip  # noqa: E402
from fusionkit_plugins.egemaps import EGeMAPSEncoder, EGeMAPSOptions  # noqa: E402


@pytest.fixture(scope="module")
def enc():
    e = EGeMAPSEncoder(EGeMAPSOptions())
    e.load()
    return e


def test_88_features_on_a_tone(enc):
    (arrays,) = enc.encode_batch([voiced(1.5, f0=200.0)])
    vec = arrays["features"]
    assert vec.shape == (88,) and vec.dtype == np.float32 and np.all(np.isfinite(vec))
    names = enc.feature_names()
    assert len(names) == 88
    # F0 mean is in semitones above 27.5 Hz: 200 Hz -> 12 * log2(200 / 27.5) = 34.4
    f0 = vec[names.index("F0semitoneFrom27.5Hz_sma3nz_amean")]
    assert abs(f0 - 12 * np.log2(200 / 27.5)) < 1.0


def test_pitch_and_loudness_move_with_the_signal(enc):
    names = enc.feature_names()
    low, high, loud = (enc.encode_batch([x])[0]["features"] for x in
                       (voiced(1.5, f0=120.0), voiced(1.5, f0=240.0), 4 * voiced(1.5, f0=120.0)))
    f0 = names.index("F0semitoneFrom27.5Hz_sma3nz_amean")
    assert abs((high[f0] - low[f0]) - 12.0) < 1.0  # one octave
    level = names.index("loudness_sma3_amean")
    assert loud[level] > 2 * low[level]


def test_threads_give_the_same_values_and_short_clips_work(enc):
    clips = [voiced(1.0, seed=i, f0=100 + 30 * i) for i in range(4)] + [np.zeros(40, np.float32)]
    serial = EGeMAPSEncoder(EGeMAPSOptions(workers=1)).encode_batch(clips)
    parallel = EGeMAPSEncoder(EGeMAPSOptions(workers=3)).encode_batch(clips)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a["features"], b["features"])
    assert np.all(np.isfinite(serial[-1]["features"]))


def test_compare_2016_is_a_feature_set_choice():
    x = voiced(1.0)
    vec = EGeMAPSEncoder(EGeMAPSOptions(feature_set="ComParE_2016")).process_signal(x, 16000)
    assert vec.shape == (6373,)
    a, b = EGeMAPSEncoder(EGeMAPSOptions()), EGeMAPSEncoder(EGeMAPSOptions(feature_set="ComParE_2016"))
    assert a.cache_key() != b.cache_key()
    assert a.cache_key() == EGeMAPSEncoder(EGeMAPSOptions(workers=1, batch_size=4)).cache_key()


def test_unknown_feature_set_is_rejected():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        EGeMAPSOptions(feature_set="eGeMAPSv03")


def test_cached_through_encode_clips(tmp_path):
    import soundfile as sf

    clips = []
    for i in range(3):
        sf.write(tmp_path / f"{i}.wav", voiced(0.8, f0=150 + 40 * i, seed=i), 16000)
        clips.append(Clip(id=str(i), path=tmp_path / f"{i}.wav", label="x", speaker="s"))
    digests, _ = clip_digests(clips)
    enc = EGeMAPSEncoder(EGeMAPSOptions())
    first = encode_clips(enc, clips, tmp_path / "cache", digests)
    second = encode_clips(EGeMAPSEncoder(EGeMAPSOptions()), clips, tmp_path / "cache", digests)
    assert (first.computed, second.computed, second.cached) == (3, 0, 3)
    np.testing.assert_array_equal(first.features["2"], second.features["2"])


def test_registered_as_a_plugin():
    from fusionkit.registry import registry

    assert registry().get("encoder", "egemaps") is EGeMAPSEncoder


@pytest.mark.corpus
def test_real_ravdess_clips(enc):
    from conftest import corpus

    from fusionkit.audio import load_audio

    files = sorted(corpus("ravdess").glob("Actor_01/*.flac"))[:4]
    vecs = [enc.encode_batch([load_audio(f)])[0]["features"] for f in files]
    assert all(v.shape == (88,) and np.all(np.isfinite(v)) for v in vecs)
    f0 = enc.feature_names().index("F0semitoneFrom27.5Hz_sma3nz_amean")
    assert all(15 < v[f0] < 50 for v in vecs)  # a male actor's F0 in semitones above 27.5 Hz
    assert not np.allclose(vecs[0], vecs[1])
