"""Bundles that travel and refuse what they should: portability, remote code, model paths, manifest checks,
``predict --show``, and the arguments of ``export``/``predict`` and ``fusionkit.load``."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from click.testing import CliRunner

import fusionkit
from fusionkit.bundle import BundleError
from fusionkit.cli import main

pytest.importorskip("transformers")
from core_fixtures import rehash_bundle  # noqa: E402
from ssl_fixtures import tiny_ssl  # noqa: E402

SR = 16000


def _tone(freq: float, seed: int, seconds: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    amp = rng.uniform(0.1, 0.5)
    return (amp * np.sin(2 * np.pi * freq * t) + rng.normal(0, 0.01, t.size)).astype(np.float32)


def _build(root: Path) -> Path:
    """In ``root``: a run on a tiny manifest corpus (lld + a tiny wav2vec2 from a local folder, linear head),
    its bundle, and a clip outside the corpus to label."""
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    rows = []
    for s in range(4):
        for label, freq in (("low", 220.0), ("high", 1800.0)):
            for k in range(2):
                name = f"s{s}_{label}_{k}.wav"
                sf.write(corpus / name, _tone(freq, 100 * s + 10 * k + int(freq)), SR)
                rows.append({"path": name, "label": label, "speaker": f"s{s}"})
    with open(corpus / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "speaker"])
        w.writeheader()
        w.writerows(rows)
    model = tiny_ssl("wav2vec2-layer", root / "models" / "w2v")
    recipe = {
        "name": "hostile",
        "data": {"dataset": "manifest", "root": str(corpus / "manifest.csv")},
        "encoders": [
            {"plugin": "lld", "options": {"descriptors": ["rms", "zcr"], "workers": 1}},
            {"plugin": "wav2vec2", "name": "w2v", "options": {"model": str(model), "layers": 1}},
        ],
        "fusion": {"plugin": "linear"},
        "split": {"kind": "speaker-kfold", "folds": 2},
        "cache": {"dir": str(root / "cache")},
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    runner = CliRunner()
    r = runner.invoke(main, ["run", str(root / "recipe.yaml"), "--out", str(root / "run")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(root / "run"), str(root / "bundle")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    clip = root / "new.wav"
    sf.write(clip, _tone(1800.0, 7), SR)
    return root


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("hostile"))


@pytest.fixture
def bundle(made, tmp_path):
    """A private copy of the exported bundle, free to tamper with."""
    copy = tmp_path / "b"
    shutil.copytree(made / "bundle", copy, symlinks=True)
    return copy


def _edit_recipe(bundle: Path, change) -> None:
    raw = yaml.safe_load((bundle / "recipe.yaml").read_text())
    change(raw)
    (bundle / "recipe.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    rehash_bundle(bundle)


def _one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# ------------------------------------------------------------------ item 1: portable


def test_bundle_predicts_after_the_corpus_the_run_and_the_model_folder_are_gone(tmp_path):
    world = _build(tmp_path / "world")
    before = fusionkit.load(world / "bundle").predict(world / "new.wav")
    moved = tmp_path / "elsewhere" / "bundle"
    shutil.move(str(world / "bundle"), moved)
    for gone in ("corpus", "run", "models", "cache"):
        shutil.rmtree(world / gone)
    model = fusionkit.load(moved)
    after = model.predict(world / "new.wav")
    assert after["label"] == before["label"]
    for c in model.classes:
        assert after["probabilities"][c] == pytest.approx(before["probabilities"][c], abs=1e-6)
    # the local model folder travelled inside the bundle, named relative to it
    raw = yaml.safe_load((moved / "recipe.yaml").read_text())
    ref = raw["encoders"][1]["options"]["model"]
    assert not Path(ref).is_absolute() and (moved / ref / "config.json").is_file()


def test_a_bundle_trained_on_a_gpu_runs_on_the_cpu_of_a_machine_without_one(bundle, made, monkeypatch, caplog):
    """A bundle whose encoder ran on CUDA at training loads here and labels as the CPU bundle does; asking for a
    device this machine lacks is one line, exit 2."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    want = fusionkit.load(made / "bundle").predict(made / "new.wav")
    _edit_recipe(bundle, lambda r: r["encoders"][1]["options"].update(device="cuda"))
    with caplog.at_level("WARNING", logger="fusionkit"):
        model = fusionkit.load(bundle)
    assert "encoder w2v: trained on cuda, which this machine does not have: running on cpu" in caplog.text
    assert model.encoders["w2v"].options.device == "cpu"
    got = model.predict(made / "new.wav")
    for c in model.classes:
        assert got["probabilities"][c] == pytest.approx(want["probabilities"][c], abs=1e-6)
    assert fusionkit.load(bundle, device="auto").encoders["w2v"].options.device == "cpu"
    with pytest.raises(ValueError, match="bundle: device .cuda. requested but torch sees no CUDA device"):
        fusionkit.load(made / "bundle", device="cuda")
    r = CliRunner().invoke(main, ["predict", str(made / "bundle"), str(made / "new.wav"), "--device", "cuda"])
    assert r.exit_code == 2 and "requested but torch sees no CUDA device" in _one_error_line(r)
    r = CliRunner().invoke(main, ["predict", str(made / "bundle"), str(made / "new.wav"), "--device", "gpu"])
    assert r.exit_code == 2 and "'gpu' is not a device" in r.output
    r = CliRunner().invoke(main, ["predict", str(bundle), str(made / "new.wav"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    shown = CliRunner().invoke(main, ["predict", str(bundle), "--show"]).output
    assert "encoder w2v: plugin wav2vec2" in shown and "trained on cuda" in shown
    assert "trained on" not in CliRunner().invoke(main, ["predict", str(made / "bundle"), "--show"]).output


# ------------------------------------------------------------------ item 2: remote code, model paths


def test_remote_code_needs_the_callers_consent(bundle, made):
    _edit_recipe(bundle, lambda r: r["encoders"][1]["options"].update(trust_remote_code=True))
    with pytest.raises(ValueError, match="trust_remote_code"):
        fusionkit.load(bundle)
    r = CliRunner().invoke(main, ["predict", str(bundle), str(made / "new.wav")])
    assert r.exit_code == 2
    assert "--trust-remote-code" in _one_error_line(r)
    # the person running it may allow it
    model = fusionkit.load(bundle, trust_remote_code=True)
    assert model.predict(made / "new.wav")["label"] in ("low", "high")
    r = CliRunner().invoke(main, ["predict", str(bundle), str(made / "new.wav"), "--trust-remote-code"])
    assert r.exit_code == 0, r.output


def test_remote_code_anywhere_in_encoder_options_counts(bundle):
    _edit_recipe(bundle, lambda r: r["encoders"][0]["options"].update(extra={"deep": {"trust_remote_code": True}}))
    with pytest.raises(ValueError, match=r"encoders\.0\.options\.extra\.deep\.trust_remote_code"):
        fusionkit.load(bundle)


def test_model_paths_leaving_the_bundle_are_refused(bundle, made, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(bundle / "models" / "w2v", outside)
    for ref in (str(outside), "../outside", "models/../../outside"):
        _edit_recipe(bundle, lambda r, ref=ref: r["encoders"][1]["options"].update(model=ref))
        with pytest.raises(ValueError, match="outside the bundle"):
            fusionkit.load(bundle, trust_remote_code=True)


def test_a_model_folder_reached_through_a_symlink_is_refused(bundle, tmp_path):
    outside = tmp_path / "outside"
    shutil.copytree(bundle / "models" / "w2v", outside)
    (bundle / "models" / "link").symlink_to(outside, target_is_directory=True)
    _edit_recipe(bundle, lambda r: r["encoders"][1]["options"].update(model="models/link"))
    with pytest.raises(ValueError, match="symlink"):
        fusionkit.load(bundle)


def test_show_lists_what_a_bundle_loads_without_loading_it(bundle, monkeypatch):
    from fusionkit.bundle import Bundle

    def refuse(*a, **k):
        raise AssertionError("--show must not load the bundle's models")

    monkeypatch.setattr(Bundle, "load", refuse)
    enc = json.loads((bundle / "encoders.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    r = CliRunner().invoke(main, ["predict", str(bundle), "--show"])
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert manifest["content_hash"] in out and "linear" in out and "low" in out and "high" in out
    assert "wav2vec2" in out and "models/w2v" in out and enc[1]["identity"]["model"] in out
    assert "text:" not in out  # audio encoders only: no transcripts to say the source of
    r = CliRunner().invoke(main, ["predict", str(bundle), "--show", "--format", "json"])
    shown = json.loads(r.stdout)
    assert shown["text"] is None and [e["modality"] for e in shown["encoders"]] == ["audio", "audio"]
    assert shown["fusion"] == "linear" and shown["classes"] == ["high", "low"]
    assert [e["plugin"] for e in shown["encoders"]] == ["lld", "wav2vec2"]
    assert shown["encoders"][1]["weights_digest"] == enc[1]["identity"]["model"]


# ------------------------------------------------------------------ item 14: bundle checks


def test_a_file_missing_from_the_bundle_is_named(bundle):
    (bundle / "encoders.json").unlink()
    with pytest.raises(ValueError, match="missing: encoders.json"):
        fusionkit.load(bundle)


def test_a_file_not_in_the_manifest_is_refused(bundle):
    (bundle / "head" / "extra.json").write_text("{}")
    with pytest.raises(ValueError, match=r"not in the manifest.*head/extra\.json"):
        fusionkit.load(bundle)


def test_symlinks_in_a_bundle_are_refused_even_with_matching_content(bundle, tmp_path):
    outside = tmp_path / "labels.json"
    shutil.copy(bundle / "labels.json", outside)
    (bundle / "labels.json").unlink()
    (bundle / "labels.json").symlink_to(outside)
    with pytest.raises(ValueError, match="symlink.*labels.json"):
        fusionkit.load(bundle)


def test_encoder_weights_changed_since_export_are_one_clear_error(bundle, made):
    enc = json.loads((bundle / "encoders.json").read_text())
    enc[1]["identity"]["model"] = "0" * 32
    (bundle / "encoders.json").write_text(json.dumps(enc))
    rehash_bundle(bundle)
    with pytest.raises(ValueError, match="w2v.*weights"):
        fusionkit.load(bundle)
    r = CliRunner().invoke(main, ["predict", str(bundle), str(made / "new.wav")])
    assert r.exit_code == 2 and "weights" in _one_error_line(r)


def _write_manifest(bundle: Path, change) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


@pytest.mark.parametrize("field, value", [("fusion", "xgboost"), ("head", "fold 0"), ("created", "2020-01-01"),
                                          ("versions", {"fusionkit": "0.0"}), ("content_hash", "0" * 64)])
def test_a_manifest_edited_after_export_is_refused(bundle, field, value):
    _write_manifest(bundle, lambda m: m.__setitem__(field, value))
    with pytest.raises(BundleError, match=r"manifest\.json: edited after export \(its content hash does"):
        fusionkit.load(bundle)
    r = CliRunner().invoke(main, ["predict", str(bundle), "--show"])
    assert r.exit_code != 0 and "manifest.json: edited after export" in _one_error_line(r)


def test_a_bundle_of_the_earlier_manifest_format_loads_and_is_checked_by_its_rule(bundle):
    """Format 1 (earlier releases) hashed the ``files`` mapping only; such bundles still load."""
    import hashlib

    def earlier(m):
        m["format"] = 1
        m["content_hash"] = hashlib.sha256(json.dumps(m["files"], sort_keys=True).encode()).hexdigest()

    _write_manifest(bundle, earlier)
    assert fusionkit.load(bundle).classes == ["high", "low"]
    _write_manifest(bundle, lambda m: m.__setitem__("content_hash", "0" * 64))
    with pytest.raises(BundleError, match="edited after export"):
        fusionkit.load(bundle)
    _write_manifest(bundle, lambda m: m.__setitem__("format", 3))
    with pytest.raises(BundleError, match=r"manifest\.json: format 3 is not one this fusionkit reads"):
        fusionkit.load(bundle)


def test_export_refuses_a_non_empty_folder_that_is_not_a_bundle(made, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    r = CliRunner().invoke(main, ["export", str(made / "run"), str(target), "--fold", "0"])
    assert r.exit_code == 2
    assert "not empty" in _one_error_line(r)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    # an existing bundle is replaced, and an empty folder is fine
    for dest in (made / "bundle-again", tmp_path / "empty"):
        dest.mkdir(exist_ok=True)
        for _ in range(2):
            r = CliRunner().invoke(main, ["export", str(made / "run"), str(dest), "--fold", "1"])
            assert r.exit_code == 0, r.output
        fusionkit.load(dest)


# ------------------------------------------------------------------ items 9, 15: predict input


def test_window_predict_refuses_a_truncated_wav_like_whole_file_predict(made, tmp_path):
    data = (made / "new.wav").read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    for extra in ([], ["--window", "0.2"]):
        r = CliRunner().invoke(main, ["predict", str(made / "bundle"), str(cut), *extra])
        assert r.exit_code == 1, (extra, r.output)
        assert "truncated" in [ln for ln in r.stderr.splitlines() if "cut.wav" in ln][0]


def test_predict_on_a_folder_lists_what_it_passed_over_and_reads_opus(made, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(made / "new.wav", folder / "good.wav")
    (folder / "dangling.wav").symlink_to(tmp_path / "nowhere.wav")
    (folder / "notes.txt").write_text("not audio")
    opus = "OPUS" in sf.available_subtypes("OGG")
    if opus:
        x, _ = sf.read(str(made / "new.wav"), dtype="float32")
        sf.write(folder / "speech.opus", x, 48000, format="OGG", subtype="OPUS")
    r = CliRunner().invoke(main, ["predict", str(made / "bundle"), str(folder), "--format", "json"])
    labelled = sorted(Path(x["file"]).name for x in json.loads(r.stdout))
    assert labelled == (["good.wav", "speech.opus"] if opus else ["good.wav"])
    assert r.exit_code == 1  # the dangling link was an audio file that could not be read
    assert any("dangling.wav" in ln and "symlink" in ln for ln in r.stderr.splitlines()), r.stderr
    assert any("notes.txt" in ln for ln in r.stderr.splitlines()), r.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_predict_on_a_folder_names_an_unreadable_file(made, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    locked = folder / "locked.wav"
    shutil.copy(made / "new.wav", locked)
    locked.chmod(0)
    try:
        r = CliRunner().invoke(main, ["predict", str(made / "bundle"), str(folder)])
    finally:
        locked.chmod(0o644)
    assert r.exit_code == 1
    assert any("locked.wav" in ln for ln in r.stderr.splitlines()), r.stderr


# ------------------------------------------------------------------ item 16: CLI arguments


@pytest.mark.parametrize("args", [
    ["--window", "-1"], ["--window", "0"], ["--window", "nan"], ["--window", "inf"],
    ["--window", "2", "--hop", "-1"], ["--window", "2", "--hop", "nan"], ["--smooth", "0"], ["--smooth", "-2"],
])
def test_bad_predict_arguments_are_one_line_exit_2(made, args):
    r = CliRunner().invoke(main, ["predict", str(made / "bundle"), str(made / "new.wav"), *args])
    assert r.exit_code == 2, r.output
    assert args[-2] in _one_error_line(r)


@pytest.mark.parametrize("fold", ["99", "-1", "2", "x", "1.5"])
def test_bad_export_fold_is_one_line_exit_2(made, tmp_path, fold):
    r = CliRunner().invoke(main, ["export", str(made / "run"), str(tmp_path / "b"), "--fold", fold])
    assert r.exit_code == 2, r.output
    line = _one_error_line(r)
    assert "fold" in line and fold in line
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------ item 19: Python API


@pytest.mark.parametrize("present, missing", [((), "no recipe.yaml, no metrics.json"),
                                              (("metrics.json",), "no recipe.yaml;")])
def test_export_of_a_folder_that_is_not_a_run_says_so(made, tmp_path, present, missing):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    for name in present:
        shutil.copy(made / "run" / name, folder / name)
    r = CliRunner().invoke(main, ["export", str(folder), str(tmp_path / "b")])
    assert r.exit_code == 2, r.output
    line = _one_error_line(r)
    assert f"{folder}: cannot export: not a run folder ({missing}" in line and "built-in recipe" not in line
    assert not (tmp_path / "b").exists()


def test_integer_arrays_are_scaled_like_the_file(made):
    model = fusionkit.load(made / "bundle")
    x, sr = sf.read(str(made / "new.wav"), dtype="float32")
    ref = model.predict(x, sampling_rate=sr)
    for dtype in (np.int16, np.int32):
        scale = np.iinfo(dtype).max
        ints = np.round(x * scale).astype(dtype)
        got = model.predict(ints, sampling_rate=sr)
        for c in model.classes:
            assert got["probabilities"][c] == pytest.approx(ref["probabilities"][c], abs=1e-3)
    segs = model.predict(np.round(x * 32767).astype(np.int16), sampling_rate=sr, window=0.25)
    ref_segs = model.predict(x, sampling_rate=sr, window=0.25)
    for a, b in zip(segs, ref_segs):
        assert a.label == b.label


@pytest.mark.parametrize("rate", [0, -16000, None, 16000.5, True])
def test_an_array_needs_a_positive_integer_rate(made, rate):
    model = fusionkit.load(made / "bundle")
    x, _ = sf.read(str(made / "new.wav"), dtype="float32")
    with pytest.raises(ValueError, match="sampling_rate"):
        model.predict(x, sampling_rate=rate)
    with pytest.raises(ValueError, match="sampling_rate"):
        model.predict(x, sampling_rate=rate, window=0.25)
