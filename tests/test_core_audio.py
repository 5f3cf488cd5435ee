"""Odd and bad audio: readable oddities are converted and evaluated, unreadable files are skipped with a reason."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from core_fixtures import fk_env, small_recipe, write_recipe  # noqa: F401

SR = 16000


def voice(rng, f0: float, seconds: float = 0.8, sr: int = SR, loud: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5))
    return (loud * y / 2 + rng.normal(0, 0.01, len(t))).astype(np.float32)


def wav_bytes(y: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


# ------------------------------------------------------------------ load_audio on its own


def test_truncated_wav_is_reported(tmp_path):
    from fusionkit.audio import AudioError, load_audio, riff_truncation

    whole = wav_bytes(voice(np.random.default_rng(0), 150))
    path = tmp_path / "cut.wav"
    path.write_bytes(whole[: 44 + 2 * 5000])
    # libsndfile alone would decode the 5000 frames that are there and report no error
    assert sf.info(str(path)).frames == 5000
    assert riff_truncation(path) == "truncated: the WAV header promises 12800 frames, the file holds 5000"
    with pytest.raises(AudioError, match="truncated"):
        load_audio(path)
    path.write_bytes(whole[:44])  # header only
    with pytest.raises(AudioError, match="truncated: .* the file holds 0"):
        load_audio(path)
    path.write_bytes(whole)
    assert riff_truncation(path) is None and load_audio(path).shape == (12800,)


def test_truncated_stereo_24bit_counts_frames_not_bytes(tmp_path):
    from fusionkit.audio import riff_truncation

    y = np.stack([voice(np.random.default_rng(1), 200)] * 2, axis=1)
    whole = wav_bytes(y, subtype="PCM_24")  # WAVE_FORMAT_EXTENSIBLE, block align 6
    path = tmp_path / "cut.wav"
    data_at = whole.index(b"data") + 8
    path.write_bytes(whole[: data_at + 6 * 1000])
    assert riff_truncation(path) == "truncated: the WAV header promises 12800 frames, the file holds 1000"


def test_streaming_placeholder_size_is_not_truncation(tmp_path):
    from fusionkit.audio import riff_truncation

    whole = bytearray(wav_bytes(voice(np.random.default_rng(2), 120)))
    at = whole.index(b"data") + 4
    whole[at : at + 4] = struct.pack("<I", 0xFFFFFFFF)  # what a streaming writer leaves behind
    path = tmp_path / "stream.wav"
    path.write_bytes(bytes(whole))
    assert riff_truncation(path) is None
    (tmp_path / "not.wav").write_text("RIFF but not really")
    assert riff_truncation(tmp_path / "not.wav") is None


def test_stereo_and_high_rate_are_converted(tmp_path):
    from fusionkit.audio import load_audio, to_mono_resampled

    rng = np.random.default_rng(3)
    left, right = voice(rng, 150), voice(rng, 300)
    sf.write(tmp_path / "st.wav", np.stack([left, right], axis=1), SR)
    mono = load_audio(tmp_path / "st.wav")
    np.testing.assert_allclose(mono, (left + right) / 2, atol=2e-4)  # PCM_16 quantisation
    hi = voice(rng, 150, sr=96000)
    sf.write(tmp_path / "hi.wav", hi, 96000)
    out = load_audio(tmp_path / "hi.wav")
    assert out.shape == (len(hi) // 6,)
    # the 150 Hz fundamental survives the resampling
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * SR / len(out) - 150) < 3
    # a 2-frame stereo clip is still (frames, channels) when read from a file
    sf.write(tmp_path / "tiny.wav", np.array([[0.5, -0.5], [0.25, 0.25]], dtype=np.float32), SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "tiny.wav"), [0.0, 0.25])
    with pytest.raises(Exception, match="no audio samples"):
        to_mono_resampled(np.zeros((0,), dtype=np.float32), SR, SR)


def test_unreadable_files_give_one_line_reasons(tmp_path):
    from fusionkit.audio import AudioError, load_audio

    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("this is not audio at all\n" * 20)
    for name, reason in (("empty.wav", "empty file (0 bytes)"), ("text.wav", "not readable as audio"),
                         ("missing.wav", "file not found")):
        with pytest.raises(AudioError) as err:
            load_audio(tmp_path / name)
        assert str(err.value).startswith(reason) and "\n" not in str(err.value)


# ------------------------------------------------------------------ through a whole run


@pytest.fixture
def odd_corpus(tmp_path):
    """24 normal clips (4 speakers x 2 classes x 3) plus every kind of odd and bad file."""
    root = tmp_path / "corpus"
    root.mkdir()
    rng = np.random.default_rng(4)
    rows = []
    for s in range(4):
        for label, f0 in (("low", 110.0), ("high", 260.0)):
            for k in range(3):
                name = f"s{s}_{label}_{k}.wav"
                sf.write(root / name, voice(rng, f0 * rng.normal(1, 0.03)), SR)
                rows.append({"path": name, "label": label, "speaker": f"s{s}"})
    sf.write(root / "stereo.wav", np.stack([voice(rng, 250), voice(rng, 270)], axis=1), SR)
    sf.write(root / "hires.wav", voice(rng, 115, sr=96000), 96000)
    (root / "empty.wav").write_bytes(b"")
    (root / "notaudio.wav").write_text("definitely not a RIFF file\n" * 30)
    whole = wav_bytes(voice(rng, 120))
    (root / "truncated.wav").write_bytes(whole[: len(whole) // 3])
    rows += [{"path": "stereo.wav", "label": "high", "speaker": "s0"},
             {"path": "hires.wav", "label": "low", "speaker": "s1"},
             {"path": "empty.wav", "label": "low", "speaker": "s2"},
             {"path": "notaudio.wav", "label": "high", "speaker": "s3"},
             {"path": "truncated.wav", "label": "low", "speaker": "s0"},
             {"path": "gone.wav", "label": "high", "speaker": "s1"}]
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "speaker"])
        w.writeheader()
        w.writerows(rows)
    return root


def test_run_over_odd_and_bad_audio(tmp_path, fk_env, odd_corpus):
    from fusionkit.cli import main

    recipe = write_recipe(tmp_path / "r.yaml", small_recipe(data={"dataset": "manifest", "root": str(odd_corpus)}))
    result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    skipped = {s["clip"]: s["reason"] for s in metrics["skipped"]}
    assert set(skipped) == {"empty", "notaudio", "truncated", "gone"}
    assert "empty file (0 bytes)" in skipped["empty"]
    assert "not readable as audio" in skipped["notaudio"]
    assert "truncated: the WAV header promises 12800 frames" in skipped["truncated"]
    assert skipped["gone"].startswith("file not found (") and "gone.wav" in skipped["gone"]
    with open(tmp_path / "run" / "predictions.csv", newline="") as fh:
        predicted = {r["clip_id"] for r in csv.DictReader(fh)}
    assert {"stereo", "hires"} <= predicted
    assert len(predicted) == metrics["n_clips"] == 26
    assert not predicted & set(skipped)


@pytest.mark.parametrize("fmt", ["MP3", "OGG", "FLAC"])
def test_compressed_formats_whole_and_cut(tmp_path, fmt):
    from fusionkit.audio import AudioError, load_audio

    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile cannot write {fmt}")
    y = voice(np.random.default_rng(5), 180, seconds=2.0)
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, y, SR, format=fmt)
    assert abs(len(load_audio(path)) - len(y)) < 0.02 * len(y)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 3])
    with pytest.raises(AudioError, match="truncated|not readable"):
        load_audio(path)


def test_truncated_aiff_is_reported(tmp_path):
    from fusionkit.audio import AudioError, container_truncation, load_audio

    path = tmp_path / "clip.aiff"
    sf.write(path, voice(np.random.default_rng(6), 140), SR, format="AIFF", subtype="PCM_16")
    assert container_truncation(path) is None and len(load_audio(path)) == 12800
    whole = path.read_bytes()
    data_at = whole.index(b"SSND") + 16
    path.write_bytes(whole[: data_at + 2 * 3000])
    assert sf.info(str(path)).frames == 3000  # libsndfile quietly shortens it
    with pytest.raises(AudioError, match="truncated: the AIFF header promises 12800 frames, the file holds 3000"):
        load_audio(path)


SHARED = next((p for p in (Path("/work/shared/data"), Path(__file__).resolve().parents[2] / "shared" / "data")
               if p.is_dir()), None)


@pytest.mark.corpus
@pytest.mark.skipif(SHARED is None, reason="real corpora (../shared/data) not present")
def test_no_real_corpus_file_is_rejected():
    """The truncation checks must not flag healthy files: every RAVDESS and EmoDB file decodes."""
    from fusionkit.audio import AudioError, load_audio

    files = [p for corpus in ("ravdess", "emodb") for p in sorted((SHARED / corpus).rglob("*"))
             if p.suffix.lower() in (".wav", ".flac")]
    if not files:
        pytest.skip("no RAVDESS/EmoDB audio under " + str(SHARED))
    rejected = {}
    for path in files:
        try:
            load_audio(path)
        except AudioError as exc:
            rejected[path.name] = str(exc)
    assert not rejected, f"{len(rejected)} of {len(files)} healthy files rejected, e.g. {list(rejected.items())[:3]}"
