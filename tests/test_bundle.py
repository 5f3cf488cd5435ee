"""export / predict / fusionkit.load: reproduce a run's predictions, timelines, bad files."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

import fusionkit
from fusionkit.cli import main
from fusionkit.windows import window_starts

RECIPE = """
name: tiny
data: {dataset: synthetic, options: {speakers: 4, clips_per_class: 3}}
encoders: [{plugin: lld}]
fusion: {plugin: xgboost, options: {n_estimators: 30}}
split: {kind: speaker-kfold, folds: 2}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    (root / "recipe.yaml").write_text(RECIPE)
    runner = CliRunner()
    r = runner.invoke(main, ["run", str(root / "recipe.yaml"), "--out", str(root / "run")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(root / "run"), str(root / "fold0"), "--fold", "0"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(root / "run"), str(root / "all")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return root


def _clip_paths(run: Path) -> dict[str, Path]:
    import yaml

    from fusionkit.pipeline.data import load_dataset
    from fusionkit.recipe import Recipe

    recipe = Recipe.model_validate(yaml.safe_load((run / "recipe.yaml").read_text()))
    return {c.id: c.path for c in load_dataset(recipe).clips()}


def test_bundle_layout_has_no_pickle(trained):
    files = {p.relative_to(trained / "all").as_posix() for p in (trained / "all").rglob("*") if p.is_file()}
    assert {"recipe.yaml", "encoders.json", "labels.json", "manifest.json"} <= files
    assert any(f.startswith("head/") for f in files)
    assert not any(f.endswith((".pkl", ".pickle", ".joblib", ".pt")) for f in files)
    manifest = json.loads((trained / "all" / "manifest.json").read_text())
    assert len(manifest["content_hash"]) == 64 and "fusionkit" in manifest["versions"]
    # a fold's bundle takes its head, not the run's record of that fold's test predictions
    assert (trained / "run" / "models" / "fold0" / "fold-outcome.json").is_file()
    assert not list((trained / "fold0").rglob("fold-outcome.json"))


def test_exported_fold_reproduces_the_runs_predictions(trained):
    rows = [r for r in csv.DictReader(open(trained / "run" / "predictions.csv")) if r["fold"] == "0"]
    paths = _clip_paths(trained / "run")
    model = fusionkit.load(trained / "fold0")
    for row in rows:
        out = model.predict(paths[row["clip_id"]])
        assert out["label"] == row["predicted"]
        for c in model.classes:
            assert out["probabilities"][c] == pytest.approx(float(row[f"p_{c}"]), abs=2e-6)


def test_export_of_a_damaged_run_names_the_file_and_leaves_no_half_bundle(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    (run / "models" / "fold0" / "head.json").write_text("{broken")
    r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / "b1"), "--fold", "0"])
    assert r.exit_code == 2 and "does not load back" in r.stderr and f"{run}/models/fold0/head.json" in r.stderr
    assert not (tmp_path / "b1").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = CliRunner().invoke(main, ["export", str(trained / "run"), str(mine), "--fold", "1"])
    assert r.exit_code == 2 and (mine / "notes.txt").read_text() == "keep me"  # a foreign folder is left alone
    (run / "metrics.json").unlink()
    r = CliRunner().invoke(main, ["export", str(run), str(tmp_path / "b2")])
    assert r.exit_code == 2 and "metrics.json: missing; the run did not finish" in r.stderr
    assert not (tmp_path / "b2").exists()


def test_tampered_bundle_is_refused(trained, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(trained / "all", copy)
    (copy / "labels.json").write_text('{"classes": ["a", "b", "c", "d"]}')
    with pytest.raises(ValueError, match="labels.json"):
        fusionkit.load(copy)


def _long_recording(path: Path, clips: list[Path], seconds: float, sr: int = 48000) -> list[tuple[float, float, str]]:
    """Concatenate clips (resampled to 48 kHz stereo) up to ``seconds``, written block by block."""
    from fusionkit.audio import to_mono_resampled

    truth, t, resampled = [], 0.0, {}
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=2, subtype="PCM_16") as f:
        i = 0
        while t < seconds:
            clip = clips[i % len(clips)]
            if clip not in resampled:
                x, s = sf.read(str(clip), dtype="float32")
                resampled[clip] = to_mono_resampled(x, s, sr)
            y = resampled[clip][: int((seconds - t) * sr)]
            if len(y) == 0:
                break
            f.write(np.stack([y, y], axis=1))
            truth.append((t, t + len(y) / sr, clips[i % len(clips)].stem.split("_")[1]))
            t += len(y) / sr
            i += 1
    return truth


def test_ten_minute_timeline_streams_with_constant_memory(trained, tmp_path):
    paths = sorted(_clip_paths(trained / "run").values())
    long = tmp_path / "long.wav"
    _long_recording(long, paths, 600.0)
    model = fusionkit.load(trained / "all")
    tracemalloc.start()
    segments = model.predict(long, window=4.0, hop=4.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(segments) == len(window_starts(600.0, 4.0, 4.0)) == 150
    assert segments[0].start == 0.0 and segments[-1].end == pytest.approx(600.0, abs=0.01)
    # the whole file decoded as float32 would be 230 MB (48 kHz stereo); windows are read one at a time
    assert peak < 60 * 2**20, f"peak traced memory {peak / 2**20:.0f} MB"


def test_timeline_labels_follow_the_source_clips(trained, tmp_path):
    paths = sorted(_clip_paths(trained / "run").values())
    rng = np.random.default_rng(0)
    picked = [paths[i] for i in rng.permutation(len(paths))[:30]]
    long = tmp_path / "mix.wav"
    truth = _long_recording(long, picked, sum(sf.info(str(p)).duration for p in picked) - 0.01)
    model = fusionkit.load(trained / "all")
    segs = model.predict(long, window=1.0, hop=0.5)
    hits = total = 0
    for s in segs:
        mid = (s.start + s.end) / 2
        label = next(lbl for a, b, lbl in truth if a <= mid < b)
        hits += s.label == label
        total += 1
    assert hits / total > 0.5  # 4 classes: chance is 0.25 (the head saw these clips when refitted)


def test_smoothing_keeps_window_count(trained, tmp_path):
    paths = sorted(_clip_paths(trained / "run").values())[:10]
    long = tmp_path / "short.wav"
    _long_recording(long, paths, 12.0)
    model = fusionkit.load(trained / "all")
    raw = model.predict(long, window=2.0, hop=1.0)
    smooth = model.predict(long, window=2.0, hop=1.0, smooth=3)
    assert len(raw) == len(smooth)
    for s in smooth:
        assert sum(s.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="smooth applies to timelines: give window"):
        model.predict(long, smooth=3)
    with pytest.raises(ValueError, match="hop applies to timelines: give window"):
        model.predict(long, hop=1.0)


def test_predict_on_array_any_rate_and_stereo(trained):
    path = sorted(_clip_paths(trained / "run").values())[0]
    x, sr = sf.read(str(path), dtype="float32")
    model = fusionkit.load(trained / "all")
    a = model.predict(path)
    from fusionkit.audio import to_mono_resampled

    x44 = to_mono_resampled(x, sr, 44100)
    b = model.predict(np.stack([x44, x44], axis=1), sampling_rate=44100)
    assert a["label"] == b["label"]


def test_predict_cli_labels_good_files_and_names_broken_ones(trained, tmp_path):
    good = sorted(_clip_paths(trained / "run").values())[:3]
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in good:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notaudio.wav").write_text("this is not audio\n" * 20)
    data = good[0].read_bytes()
    (folder / "truncated.wav").write_bytes(data[: len(data) // 3])
    r = CliRunner().invoke(
        main, ["predict", str(trained / "all"), str(folder), str(tmp_path / "missing.wav"), "--format", "json"])
    assert r.exit_code == 1
    results = json.loads(r.stdout)
    assert sorted(Path(x["file"]).name for x in results) == sorted(p.name for p in good)
    for name in ("empty.wav", "notaudio.wav", "truncated.wav", "missing.wav"):
        lines = [ln for ln in r.stderr.splitlines() if name in ln]
        assert len(lines) == 1, (name, r.stderr)


def test_predict_folder_passes_over_hidden_files_and_folders(trained, tmp_path):
    """macOS ._ files, .DS_Store and hidden folders are listed as passed over, not read; a hidden file named on
    the command line is still read."""
    good = sorted(_clip_paths(trained / "run").values())[:2]
    folder = tmp_path / "mac"
    (folder / ".Trashes").mkdir(parents=True)
    for p in good:
        (folder / p.name).write_bytes(p.read_bytes())
        (folder / f"._{p.name}").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 80)  # AppleDouble metadata
    (folder / ".DS_Store").write_bytes(b"\x00" * 64)
    (folder / ".Trashes" / good[0].name).write_bytes(good[0].read_bytes())
    explicit = tmp_path / ".named.wav"
    explicit.write_bytes(good[0].read_bytes())
    r = CliRunner().invoke(main, ["predict", str(trained / "all"), str(folder), str(explicit), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert sorted(Path(x["file"]).name for x in json.loads(r.stdout)) == sorted([p.name for p in good] + [".named.wav"])
    skipped = [ln for ln in r.stderr.splitlines() if ln.startswith("skipped: ")]
    assert len(skipped) == 4 and all("hidden" in ln for ln in skipped), r.stderr
    assert "._" + good[0].name in r.stderr and ".Trashes" in r.stderr and ".DS_Store" in r.stderr
    assert "4 entries passed over" in r.stderr


def test_predict_fails_when_no_file_could_be_labelled(trained, tmp_path):
    """Nothing labelled is a failure (exit 1, one line), whether nothing was audio or --vad found no speech; a file
    without speech among others is a warning naming it."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not audio")
    r = CliRunner().invoke(main, ["predict", str(trained / "all"), str(notes)])
    assert r.exit_code == 1 and "1 entry passed over" in r.stderr
    assert r.stderr.splitlines()[-1] == "error: no file could be labelled"
    pytest.importorskip("silero_vad")
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(32000, dtype=np.float32), 16000)
    r = CliRunner().invoke(main, ["predict", str(trained / "all"), str(silent), "--vad"])
    assert r.exit_code == 1
    assert f"warning: {silent}: no speech found (--vad); not labelled" in r.stderr.splitlines()
    assert r.stderr.splitlines()[-1] == "error: no file could be labelled" and "0 windows" not in r.stdout
    good = sorted(_clip_paths(trained / "run").values())[0]
    r = CliRunner().invoke(main, ["predict", str(trained / "all"), str(silent), str(good), "--vad", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert [Path(x["file"]) for x in json.loads(r.stdout)] == [good]
    assert "1 file(s) not labelled: no speech found (--vad)" in r.stderr


@pytest.mark.parametrize("args, name", [(["--hop", "2"], "--hop 2.0"), (["--smooth", "3"], "--smooth 3"),
                                        (["--smooth", "1"], "--smooth 1")])
def test_timeline_options_without_a_timeline_are_refused(trained, args, name):
    """--hop and --smooth shape a timeline: without --window (or --vad) they would be ignored, so they are refused."""
    good = sorted(_clip_paths(trained / "run").values())[0]
    r = CliRunner().invoke(main, ["predict", str(trained / "all"), str(good), *args])
    assert r.exit_code == 2, r.output
    assert r.stderr.splitlines() == [f"error: {name}: only with --window (or --vad); without a timeline the whole "
                                     "file gets one label"]


def test_silent_and_very_short_files_are_labelled_with_a_warning(trained, tmp_path):
    """A label for silence or a few milliseconds means little: each such file says so (table, CSV, JSON, stderr,
    a count), the others carry no warning, and the command still succeeds."""
    good = sorted(_clip_paths(trained / "run").values())[0]
    x, sr = sf.read(str(good), dtype="float32")
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / good.name).write_bytes(good.read_bytes())
    sf.write(str(folder / "silent.wav"), np.zeros(sr, dtype=np.float32), sr)
    sf.write(str(folder / "hum.wav"), (1e-5 * np.sin(np.arange(sr) / 10)).astype(np.float32), sr, subtype="FLOAT")
    sf.write(str(folder / "blip.wav"), x[: sr // 200], sr)
    r = CliRunner().invoke(main, ["predict", str(trained / "all"), str(folder), "--format", "csv"])
    assert r.exit_code == 0, r.output
    rows = {Path(row["file"]).name: row for row in csv.DictReader(r.stdout.splitlines())}
    assert rows[good.name]["warning"] == ""
    assert all(row["start"] == row["end"] == "" for row in rows.values())  # whole-file rows: neither
    assert rows["silent.wav"]["warning"] == "silent (every sample is 0)"
    assert rows["hum.wav"]["warning"] == "near-silent (loudest sample -100 dBFS)"
    assert rows["blip.wav"]["warning"] == "very short (0.005 s)"
    assert sum("its label means little" in ln for ln in r.stderr.splitlines()) == 3
    assert "3 file(s) labelled with a warning" in r.stderr
    result = fusionkit.load(trained / "all").predict(folder / "silent.wav")
    assert result["warning"] == "silent (every sample is 0)" and result["label"]


def test_timeline_flags_its_silent_windows(trained, tmp_path):
    good = sorted(_clip_paths(trained / "run").values())[0]
    x, sr = sf.read(str(good), dtype="float32")
    x = np.tile(x, int(np.ceil(2 * sr / len(x))))[: 2 * sr]
    path = tmp_path / "gap.wav"
    sf.write(str(path), np.concatenate([x, np.zeros(2 * sr, dtype=np.float32), x]), sr, subtype="FLOAT")
    model = fusionkit.load(trained / "all")
    for smooth in (1, 3):
        segments = model.predict(path, window=1.0, smooth=smooth)
        assert [s.warning for s in segments] == [None, None, "silent (every sample is 0)",
                                                 "silent (every sample is 0)", None, None]
    r = CliRunner().invoke(main, ["predict", str(trained / "all"), str(path), "--window", "1", "--format", "csv"])
    assert [row["warning"] for row in csv.DictReader(r.stdout.splitlines())][1:4] == [
        "", "silent (every sample is 0)", "silent (every sample is 0)"]


def test_signal_warning_levels():
    from fusionkit.audio import signal_warning

    sr = 16000
    assert signal_warning(np.zeros(sr, dtype=np.float32), sr).silent
    assert signal_warning(np.full(sr, 1e-4, dtype=np.float32), sr).silent  # -80 dBFS
    quiet_speech = signal_warning(np.full(sr, 0.01, dtype=np.float32), sr)  # -40 dBFS: quiet, not silent
    assert quiet_speech is None
    short = signal_warning(np.full(sr // 10, 0.5, dtype=np.float32), sr)
    assert str(short) == "very short (0.100 s)" and not short.silent


def test_window_arithmetic():
    assert window_starts(10.0, 4.0, 4.0) == [(0.0, 4.0), (4.0, 8.0), (6.0, 10.0)]
    assert window_starts(9.0, 4.0, 4.0) == [(0.0, 4.0), (4.0, 8.0), (5.0, 9.0)]
    assert window_starts(8.0, 4.0, 4.0) == [(0.0, 4.0), (4.0, 8.0)]
    assert window_starts(3.0, 4.0, 2.0) == [(0.0, 3.0)]
    assert len(window_starts(600.0, 4.0, 2.0)) == 299
    for total, window, hop in ((16.82, 5.0, 5.0), (7.3, 2.0, 0.7), (4.01, 4.0, 1.0), (33.3, 1.5, 2.5)):
        spans = window_starts(total, window, hop)
        assert spans[-1][1] == pytest.approx(total) and all(e - s == pytest.approx(window) for s, e in spans)
        if hop <= window:  # windows that touch or overlap leave no gap
            assert all(b[0] <= a[1] + 1e-9 for a, b in zip(spans, spans[1:]))


def test_windows_too_short_or_too_dense_are_refused_everywhere(trained, tmp_path):
    """A window of 1e-9 s, or a hop of 1 ms under 1 s windows, asked for millions of windows: refused (CLI exit 2,
    the Python API's ValueError) before any audio is read."""
    from fusionkit.windows import window_problem

    assert window_problem(0.2, 0.0125, 1) is None and window_problem(4.0, 0.25, 1) is None
    assert "window 1e-09: expected at least 0.2 s" in window_problem(1e-9, None, 1)
    assert "hop 0.001: expected at least 0.0625 s (the window / 16" in window_problem(1.0, 0.001, 1)
    assert "hop 0.1: expected at least 0.25 s" in window_problem(None, 0.1, 1)  # the default window, 4 s
    path = sorted(_clip_paths(trained / "run").values())[0]
    r = CliRunner().invoke(main, ["predict", str(trained / "all"), str(path), "--window", "1e-9"])
    assert r.exit_code == 2 and "--window 1e-09: expected at least 0.2 s" in r.stderr
    with pytest.raises(ValueError, match="hop 0.001: expected at least"):
        fusionkit.load(trained / "all").predict(path, window=1.0, hop=0.001)


def test_timeline_covers_the_end_of_the_recording(trained, tmp_path):
    """A recording that is not a whole number of windows long: its last window ends at the end (a full window,
    overlapping the one before), in the CLI and the Python API alike."""
    paths = sorted(_clip_paths(trained / "run").values())[:6]
    long = tmp_path / "odd-length.wav"
    _long_recording(long, paths, 4.82)
    duration = sf.info(str(long)).duration
    r = CliRunner().invoke(main, ["predict", str(trained / "all"), str(long), "--window", "2", "--format", "csv"])
    assert r.exit_code == 0, r.output
    spans = [(float(row["start"]), float(row["end"])) for row in csv.DictReader(r.stdout.splitlines())]
    assert spans == [(0.0, 2.0), (2.0, 4.0), (round(duration - 2.0, 3), round(duration, 3))]
    segments = fusionkit.load(trained / "all").predict(long, window=2.0)
    assert [(s.start, s.end) for s in segments] == spans
