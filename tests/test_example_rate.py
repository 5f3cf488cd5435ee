"""A 22.05 kHz encoder (example-band-energy) is trained and served at 22.05 kHz: a bundle's prediction path
computes the features the run cached, and a tone above 8 kHz (beyond 16 kHz audio) reaches it."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from core_fixtures import fk_env, write_recipe  # noqa: F401

pytest.importorskip("fusionkit_example", reason="pip install -e plugins/fusionkit-example (make install does)")

from fusionkit_example.spectral import BandEnergyEncoder, BandEnergyOptions  # noqa: E402

SR = 44100
TONE = 9500.0  # Hz: above the 8 kHz Nyquist of 16 kHz audio, below the 11.025 kHz of 22.05 kHz audio
TOP = "8000-11025Hz_mean_db"


def clip(label: str, seed: int, seconds: float = 0.5) -> np.ndarray:
    """A 9.5 kHz tone in every clip; "dark" clips add a 500 Hz tone; a little noise makes clips differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = rng.uniform(0.2, 0.4) * np.sin(2 * np.pi * TONE * t) + rng.normal(0, 0.005, t.size)
    if label == "dark":
        y += rng.uniform(0.2, 0.4) * np.sin(2 * np.pi * 500.0 * t)
    return y.astype(np.float32)


@pytest.fixture
def corpus(tmp_path):
    rows = []
    for s in range(4):
        for label in ("bright", "dark"):
            for k in range(2):
                name = f"s{s}_{label}_{k}.wav"
                sf.write(tmp_path / name, clip(label, seed=100 * s + 10 * k + len(label)), SR)
                rows.append({"path": name, "label": label, "speaker": f"s{s}"})
    with open(tmp_path / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "speaker"])
        w.writeheader()
        w.writerows(rows)
    return tmp_path


def test_bundle_features_equal_the_runs_cached_ones(corpus, tmp_path, fk_env):
    from fusionkit.audio import file_digest
    from fusionkit.bundle import Bundle, export
    from fusionkit.cli import main
    from fusionkit.pipeline.cache import EmbeddingCache

    recipe = write_recipe(tmp_path / "r.yaml", {
        "name": "rate",
        "data": {"dataset": "manifest", "root": str(corpus / "manifest.csv")},
        "encoders": [{"plugin": "example-band-energy"}],
        "fusion": {"plugin": "linear"},
        "split": {"kind": "speaker-kfold", "folds": 2},
    })
    result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["embeddings"]["computed"] == 16
    export(tmp_path / "run", tmp_path / "bundle", fold="0")
    model = Bundle.load(tmp_path / "bundle")
    enc = BandEnergyEncoder(BandEnergyOptions())
    names = enc.feature_names()
    cache = EmbeddingCache(fk_env, enc.cache_key())
    for path in sorted(corpus.glob("*.wav"))[:4]:
        cached = cache.get(file_digest(path), {"features"})["features"]
        served = model.features(path)["example-band-energy"]
        np.testing.assert_allclose(served, cached, rtol=1e-5, atol=1e-4)
        # the tone (amplitude 0.2-0.4: -17 to -11 dBFS) sits in the top band; 16 kHz audio would leave it empty
        assert -18.0 < served[names.index(TOP)] < -10.0
        x, _ = sf.read(str(path), dtype="float32")
        served_array = model.features(x, sampling_rate=SR)["example-band-energy"]
        np.testing.assert_allclose(served_array, cached, rtol=1e-5, atol=1e-4)
    from fusionkit.audio import to_mono_resampled

    via_16k = model.features(to_mono_resampled(x, SR, 16000), sampling_rate=16000)["example-band-energy"]
    assert via_16k[names.index(TOP)] < served[names.index(TOP)] - 60
    # and the exported fold's head reproduces the run's predictions for its test clips
    with open(tmp_path / "run" / "predictions.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] == "0"]
    assert rows
    for row in rows:
        out = model.predict(corpus / f"{row['clip_id']}.wav")
        assert out["label"] == row["predicted"]
        for c in model.classes:
            assert out["probabilities"][c] == pytest.approx(float(row[f"p_{c}"]), abs=1e-5)


class RecordingHead:
    """Stands in for a fitted head: records the features it is given, answers uniform probabilities."""

    def __init__(self):
        self.seen = []

    def predict_proba(self, X):
        self.seen.append(X)
        n = len(next(iter(X.values())))
        return np.full((n, 2), 0.5)


def small_bundle(batch_size: int = 2):
    from fusionkit.bundle import Bundle

    recipe = SimpleNamespace(task=SimpleNamespace(kind="classification"), normalize="none")
    enc = BandEnergyEncoder(BandEnergyOptions(batch_size=batch_size))
    return Bundle(None, recipe, {"band": enc}, RecordingHead(), ["bright", "dark"]), enc


def test_predict_signals_resamples_from_the_given_rate():
    model, enc = small_bundle()
    names = enc.feature_names()
    signals = [clip("bright", seed=i) for i in range(3)]
    scores, texts = model.predict_signals(signals, sr=SR)
    assert texts is None and [s["bright"] for s in scores] == pytest.approx([0.5] * 3)
    seen = model.head.seen[-1]["band"]
    assert seen.shape == (3, len(names))
    for x, row in zip(signals, seen):
        np.testing.assert_allclose(row, enc.process_signal(x, SR), rtol=1e-5, atol=1e-4)
        assert row[names.index(TOP)] > -18.0
    # the same samples declared as 16 kHz are another sound (the tone at 3.4 kHz): sr is honoured
    model.predict_signals(signals[:1], sr=16000)
    assert model.head.seen[-1]["band"][0][names.index(TOP)] < seen[0][names.index(TOP)] - 40
    bad = [signals[0], np.full(1000, np.nan, dtype=np.float32)]
    from fusionkit.audio import AudioError

    with pytest.raises(AudioError, match="signal 1: samples are not finite numbers"):
        model.predict_signals(bad, sr=SR)


def test_timeline_windows_reach_the_encoder_at_its_rate(tmp_path):
    model, enc = small_bundle()
    x = np.concatenate([clip("bright", seed=1, seconds=1.0), clip("dark", seed=2, seconds=1.0)])
    path = tmp_path / "long.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    segments = model.predict(path, window=1.0, hop=1.0)
    assert [(s.start, s.end) for s in segments] == [(0.0, 1.0), (1.0, 2.0)]
    seen = model.head.seen[-1]["band"]
    for k in range(2):
        np.testing.assert_allclose(seen[k], enc.process_signal(x[k * SR:(k + 1) * SR], SR), rtol=1e-5, atol=1e-4)
    assert seen[0][enc.feature_names().index(TOP)] > -18.0
    from_array = model.predict(x, sampling_rate=SR, window=1.0, hop=1.0)
    assert len(from_array) == 2
    np.testing.assert_allclose(model.head.seen[-1]["band"], seen, rtol=1e-5, atol=1e-4)
