"""Frame-sequence inputs (``lld`` with ``pooling: none``, ``logmel``) and the ``cnn`` / ``lstm`` heads.

The synthetic task puts the class in the temporal pattern only: a tone whose pitch rises or falls
over the same range, so a clip and its time reversal belong to different classes while every
statistic over time (mean, std, min, max of each band) has the same distribution in both.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from pydantic import ValidationError

from fusionkit.registry import registry

SR = 16000
CLASSES = ["fall", "rise"]
RELOAD_ATOL = 1e-6
FAST = {"width": 16, "epochs": 50, "patience": 15, "lr": 5e-3, "refit": False, "max_frames": 24}
HEAD_OPTIONS = {"cnn": {**FAST, "blocks": 2, "kernel": 5}, "lstm": FAST}


def glide(label: str, f_low: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A tone gliding 1.5 octaves up (``rise``) or down (``fall``) from/to ``f_low``, with a little noise."""
    u = np.arange(int(seconds * SR)) / (seconds * SR)
    f = f_low * 2 ** (1.5 * (u if label == "rise" else 1 - u))
    fade = np.minimum(1.0, np.minimum(u, 1 - u) * seconds / 0.03)  # 30 ms ramps: no click at either end
    y = 0.3 * fade * np.sin(2 * np.pi * np.cumsum(f) / SR) + 0.02 * rng.normal(size=len(u))
    return y.astype(np.float32)


def glide_corpus(speakers: int = 8, per_speaker: int = 12, seed: int = 0):
    """Signals, integer labels (index into CLASSES), speaker groups; each speaker has its own pitch range."""
    rng = np.random.default_rng(seed)
    signals, y, groups = [], [], []
    for s in range(speakers):
        base = rng.uniform(150, 300)
        for i in range(per_speaker):
            signals.append(glide(CLASSES[i % 2], base * rng.uniform(0.9, 1.1), rng.uniform(0.4, 0.6), rng))
            y.append(i % 2)
            groups.append(f"spk{s}")
    return signals, np.array(y), np.array(groups)


def encoder(name: str, **options):
    cls = registry().get("encoder", name)
    return cls(cls.Options.model_validate(options))


def head(name: str, seed: int = 0, **extra):
    cls = registry().get("fusion", name)
    return cls(cls.Options.model_validate({**HEAD_OPTIONS.get(name, {}), **extra}), seed=seed)


@lru_cache(maxsize=1)
def logmel_task():
    """Log-mel frames of the glide corpus, split into 6 training and 2 test speakers."""
    signals, y, groups = glide_corpus()
    enc = encoder("logmel", n_mels=24)
    seqs = [enc.select(a) for a in enc.encode_batch(signals)]
    test = np.isin(groups, ["spk6", "spk7"])
    pick = lambda m: [s for s, t in zip(seqs, m) if t]
    return pick(~test), y[~test], groups[~test], pick(test), y[test]


def accuracy(model, X, y) -> float:
    p = model.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    return float((p.argmax(axis=1) == y).mean())


# ---------------------------------------------------------------- lld pooling: none


def test_lld_default_options_keep_their_cache_key():
    assert encoder("lld").cache_key() == "lld-a51364f162751c82"
    assert encoder("lld", descriptors=["mfcc"], functionals=["mean"]).cache_key() == "lld-e2294387572f8ffd"
    assert "pooling" not in encoder("lld").identity()["options"]
    assert encoder("lld", pooling="functionals").cache_key() == encoder("lld").cache_key()


def test_lld_pooling_none_gives_the_frame_descriptors():
    y = glide("rise", 200.0, 0.5, np.random.default_rng(0))
    pooled = encoder("lld", descriptors=["mfcc", "rms", "pitch"], workers=1)
    frames = encoder("lld", descriptors=["mfcc", "rms", "pitch"], workers=1, pooling="none")
    assert frames.is_sequence() and not pooled.is_sequence()
    assert frames.cache_key() != pooled.cache_key()
    assert "functionals" not in frames.identity()["options"]
    (arrays,) = frames.encode_batch([y])
    assert arrays["frames"].dtype == np.float16 and frames.required_keys() == {"frames"}
    seq = frames.select(arrays)
    assert seq.dtype == np.float32 and seq.ndim == 2 and seq.shape[1] == 20 + 1 + 2 and seq.shape[0] > 30
    # the functionals of the cached frames are the pooled encoder's vector (up to float16 rounding)
    vec = pooled.select(pooled.encode_batch([y])[0])
    np.testing.assert_allclose(np.concatenate([seq.mean(0), seq.std(0), seq.min(0), seq.max(0)]), vec,
                               rtol=2e-3, atol=2e-2)
    np.testing.assert_allclose(frames.process_signal(y, SR), seq, atol=1e-6)


def test_lld_pooling_is_validated():
    with pytest.raises(ValidationError, match="pooling"):
        encoder("lld", pooling="mean")


# ---------------------------------------------------------------- logmel


def test_logmel_frames_shape_band_and_pooling():
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    enc = encoder("logmel", n_mels=40, hop_ms=10, window_ms=25, fmin=0, fmax=4000)
    (arrays,) = enc.encode_batch([tone])
    seq = enc.select(arrays)
    assert enc.is_sequence() and seq.shape == (1 + SR // 160, 40) and seq.dtype == np.float32
    import librosa

    centres = librosa.mel_frequencies(n_mels=42, fmin=0, fmax=4000)[1:-1]
    assert abs(centres[int(np.median(seq.argmax(axis=1)))] - 1000) < 120  # the loudest band holds 1 kHz
    mean = encoder("logmel", n_mels=40, fmax=4000, pooling="mean")
    both = encoder("logmel", n_mels=40, fmax=4000, pooling="mean+std")
    assert mean.cache_key() == both.cache_key() == enc.cache_key()  # pooling is a view: one cache
    assert not mean.is_sequence()
    np.testing.assert_allclose(mean.select(arrays), seq.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(both.select(arrays)[40:], seq.std(axis=0), rtol=1e-4, atol=1e-5)
    assert encoder("logmel", n_mels=32).cache_key() != enc.cache_key()


def test_logmel_short_and_silent_clips_give_finite_frames():
    enc = encoder("logmel")
    for y in (np.zeros(SR // 2, np.float32), np.zeros(10, np.float32)):
        seq = enc.select(enc.encode_batch([y])[0])
        assert len(seq) >= 1 and np.isfinite(seq).all()
        assert np.allclose(seq, np.log(1e-6), atol=1e-2)


@pytest.mark.parametrize("options, field", [
    ({"fmax": 9000}, "fmax"), ({"fmin": 5000, "fmax": 4000}, "fmin"), ({"n_mels": 2}, "n_mels"),
    ({"pooling": "max"}, "pooling"), ({"log_offset": 0}, "log_offset"), ({"hop": 3}, "hop"),
])
def test_logmel_bad_options_are_refused(options, field):
    with pytest.raises(ValidationError, match=field):
        encoder("logmel", **options)


# ---------------------------------------------------------------- cnn / lstm heads


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_sequence_head_beats_a_functional_baseline(name):
    pytest.importorskip("torch")
    Xtr, ytr, gtr, Xte, yte = logmel_task()
    stats = lambda seqs: np.stack([np.concatenate([s.mean(0), s.std(0), s.min(0), s.max(0)]) for s in seqs])
    baseline = head("linear")
    baseline.fit({"m": stats(Xtr)}, ytr, CLASSES, gtr)
    base_acc = accuracy(baseline, {"m": stats(Xte)}, yte)
    model = head(name)
    model.fit({"m": Xtr}, ytr, CLASSES, gtr)
    acc = accuracy(model, {"m": Xte}, yte)
    assert model.history["val_size"] > 0  # early stopping on held-out training speakers
    assert acc >= 0.85 and acc > base_acc + 0.2, f"{name}: {acc:.2f} vs functionals + linear {base_acc:.2f}"


@pytest.mark.parametrize("name, extra", [("cnn", {"norm": "layer", "pool": "mean"}),
                                         ("lstm", {"pool": "mean", "num_layers": 2})])
def test_sequence_head_reloads_with_the_same_probabilities(name, extra, tmp_path):
    pytest.importorskip("torch")
    Xtr, ytr, gtr, Xte, _ = logmel_task()
    model = head(name, epochs=3, **extra)
    model.fit({"m": Xtr}, ytr, CLASSES, gtr)
    model.save(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").rglob("*")}
    assert "head.json" in files and any(f.endswith(".safetensors") for f in files), files
    again = type(model).load(tmp_path / "m")
    np.testing.assert_allclose(again.predict_proba({"m": Xte}), model.predict_proba({"m": Xte}), rtol=0,
                               atol=RELOAD_ATOL)


@pytest.mark.parametrize("name, options, field", [
    ("cnn", {"kernel": 4}, "kernel"), ("cnn", {"norm": "group"}, "norm"), ("cnn", {"blocks": 0}, "blocks"),
    ("lstm", {"pool": "max"}, "pool"), ("lstm", {"num_layers": 9}, "num_layers"), ("lstm", {"hidden": 8}, "hidden"),
])
def test_sequence_head_bad_options_are_refused(name, options, field):
    with pytest.raises(ValidationError, match=field):
        registry().get("fusion", name).Options.model_validate(options)


# ---------------------------------------------------------------- fusionkit run -> export -> predict

RECIPE = """
name: glides-{head}
data: {{dataset: folders, root: {root}, options: {{label_from: {{folder: -1}}, speaker_from: {{folder: 0}}}}}}
encoders: [{{plugin: {encoder}, options: {options}}}]
fusion: {{plugin: {head}, options: {{width: 8, epochs: 4, patience: 2, max_frames: 32}}}}
split: {{kind: speaker-kfold, folds: 2}}
seed: 0
"""


def write_glides(root: Path) -> None:
    signals, y, groups = glide_corpus(speakers=4, per_speaker=6)
    for i, (x, label, spk) in enumerate(zip(signals, y, groups)):
        path = root / spk / CLASSES[label] / f"{spk}_{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), x, SR)


@pytest.mark.parametrize("encoder_name, options, head_name", [
    ("logmel", "{n_mels: 16}", "cnn"),
    ("lld", "{descriptors: [mfcc, pitch], pooling: none, workers: 1}", "lstm"),
])
def test_run_export_and_predict(encoder_name, options, head_name, tmp_path):
    pytest.importorskip("torch")
    import fusionkit
    from fusionkit.cli import main

    write_glides(tmp_path / "corpus")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.format(root=tmp_path / "corpus", encoder=encoder_name, options=options, head=head_name))
    runner = CliRunner()
    r = runner.invoke(main, ["run", str(recipe), "--out", str(tmp_path / "run")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(tmp_path / "run"), str(tmp_path / "bundle"), "--fold", "0"],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    from core_fixtures import fresh_process_difference

    # a fresh process reloads every fold with the same probabilities
    assert fresh_process_difference(tmp_path / "run") <= 5e-6
    rows = [row for row in csv.DictReader(open(tmp_path / "run" / "predictions.csv")) if row["fold"] == "0"]
    assert rows
    paths = {p.stem: p for p in (tmp_path / "corpus").rglob("*.wav")}
    model = fusionkit.load(tmp_path / "bundle")
    for row in rows[:4]:
        (stem,) = [s for s in paths if row["clip_id"].endswith(s)]
        out = model.predict(paths[stem])
        for c in model.classes:
            assert out["probabilities"][c] == pytest.approx(float(row[f"p_{c}"]), abs=1e-5)
