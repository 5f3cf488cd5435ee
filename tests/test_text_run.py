"""End to end: text-only recipes through fusionkit.pipeline.run (MELD with no audio; ASR transcripts in a run)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_meld import write_tree  # noqa: E402
from text_fixtures import tiny_bert  # noqa: E402

from fusionkit.pipeline import transcripts  # noqa: E402
from fusionkit.pipeline.run import run  # noqa: E402
from fusionkit.recipe import validate  # noqa: E402

WORDS = {"joy": "I am so happy today", "anger": "this is terrible and I hate it", "neutral": "the meeting is at noon"}


def fake_meld(root):
    rows = {"train": [], "dev": [], "test": []}
    rng = np.random.default_rng(0)
    for part, n in (("train", 30), ("test", 12)):
        for i in range(n):
            label = sorted(WORDS)[i % 3]
            words = WORDS[label].split()
            rng.shuffle(words)
            rows[part].append((" ".join(words), f"spk{i % 4}", label, "neutral", i // 3, i % 3))
    return write_tree(root, rows)


def recipe(raw):
    rec, problems = validate(raw, "test-recipe")
    assert not problems, problems
    return rec


def test_text_only_meld_runs_without_audio(tmp_path):
    model = tiny_bert(tmp_path / "bert")
    rec = recipe({
        "name": "meld-text", "data": {"dataset": "meld", "root": str(fake_meld(tmp_path / "meld"))},
        "encoders": [{"plugin": "hf-text", "options": {"model": str(model), "layers": "all"}}],
        "fusion": {"plugin": "linear"},
        "split": {"kind": "predefined", "train": ["train"], "test": ["test"]},
        "cache": {"dir": str(tmp_path / "cache")},
    })
    metrics = run(rec, tmp_path / "run")
    assert metrics["n_clips"] == 42 and metrics["skipped"] == []
    (fold,) = metrics["folds"]
    assert (fold["train_size"], fold["test_size"]) == (30, 12)
    assert metrics["wa"] > 0.5  # the word sets separate the classes (chance: 1/3)
    again = run(rec, tmp_path / "run2")
    assert again["embeddings"]["computed"] == 0 and again["embeddings"]["cached"] == 42


class EchoWhisper:
    """Stand-in for faster-whisper: says the synthetic clip's duration."""

    def transcribe(self, audio, language=None, **kw):
        seg = type("Segment", (), {"text": f" about {round(len(audio) / 16000, 1)} seconds"})
        return iter([seg]), None


def test_asr_text_only_recipe_writes_and_reuses_transcripts(tmp_path, monkeypatch):
    model = tiny_bert(tmp_path / "bert")
    whisper = tmp_path / "whisper"
    whisper.mkdir()
    (whisper / "config.json").write_text("{}")
    (whisper / "model.bin").write_bytes(b"w")
    loads = []
    monkeypatch.setattr(transcripts, "load_whisper", lambda path, options: loads.append(path) or EchoWhisper())
    rec = recipe({
        "name": "asr", "data": {"dataset": "synthetic", "root": None, "options": {"speakers": 2, "clips_per_class": 2}},
        "text": {"source": "asr", "model": str(whisper)},
        "encoders": [{"plugin": "hf-text", "options": {"model": str(model)}}],
        "fusion": {"plugin": "linear"}, "split": {"kind": "speaker-kfold", "folds": 2},
        "cache": {"dir": str(tmp_path / "cache")},
    })
    monkeypatch.setenv("FUSIONKIT_CACHE_DIR", str(tmp_path / "cache"))
    metrics = run(rec, tmp_path / "run")
    assert metrics["n_clips"] == 16 and len(loads) == 1
    rows = list(csv.DictReader(open(tmp_path / "run" / "transcripts.csv", encoding="utf-8")))
    assert len(rows) == 16 and all(r["text"].startswith("about ") for r in rows)
    run(rec, tmp_path / "run2")
    assert len(loads) == 1  # every transcript came from the cache: the model was not even loaded
    assert (tmp_path / "run2" / "transcripts.csv").read_text() == (tmp_path / "run" / "transcripts.csv").read_text()
    assert json.loads((tmp_path / "run2" / "metrics.json").read_text())["embeddings"]["computed"] == 0

    # the exported bundle transcribes every window of new audio, and says what it heard
    import soundfile as sf
    from click.testing import CliRunner

    from fusionkit.cli import main

    assert CliRunner().invoke(main, ["export", str(tmp_path / "run"), str(tmp_path / "bundle")]).exit_code == 0
    shown = CliRunner().invoke(main, ["predict", str(tmp_path / "bundle"), "--show"]).output
    assert "\ntext: asr (ASR model " in shown, shown  # a text encoder: where its transcripts come from
    sf.write(tmp_path / "long.wav", np.random.default_rng(0).normal(0, 0.1, 16000 * 8).astype(np.float32), 16000)
    done = CliRunner().invoke(main, ["predict", str(tmp_path / "bundle"), str(tmp_path / "long.wav"),
                                     "--window", "3", "--format", "csv"])
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(done.stdout.splitlines()))
    # 8 s in 3 s windows: the last window is a full one ending at the end (5-8 s)
    assert [(r["start"], r["end"]) for r in rows] == [("0.0", "3.0"), ("3.0", "6.0"), ("5.0", "8.0")]
    assert [r["text"] for r in rows] == ["about 3.0 seconds"] * 3
