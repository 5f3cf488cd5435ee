"""Normalisation that travels with the model: bundles of runs with ``normalize: corpus | speaker`` z-score features
with statistics of enrolment audio, as the run z-scored each group; cross-corpus runs report raw figures beside."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from core_fixtures import fake_distribution

SR = 16000
AMP = {"soft": 0.01, "mid": 0.02, "loud": 0.04}  # the class is the level relative to the speaker's own
CLASSES = ["soft", "mid", "loud"]

LEVEL_ENCODER = '''
    import numpy as np
    from fusionkit.sdk import hookimpl
    from fusionkit.sdk.base import Encoder

    class Level(Encoder):
        name = "nk-level"
        description = "log level statistics of 25 ms frames (numpy)"

        def encode_batch(self, inputs):
            out = []
            for x in inputs:
                frames = x[: len(x) // 400 * 400].reshape(-1, 400)
                level = np.log(np.sqrt((frames ** 2).mean(axis=1)) + 1e-8)
                out.append({"features": np.array([level.mean(), level.max(), np.log(np.abs(x).mean() + 1e-8)],
                                                 dtype=np.float32)})
            return out

    @hookimpl
    def register_encoders(register):
        register(Level)
'''


def write_speaker(folder: Path, speaker: str, gain: float, per: int, rng) -> list[dict]:
    """``per`` noise clips per class for one speaker whose every clip is ``gain`` times louder."""
    rows = []
    for label in CLASSES:
        for k in range(per):
            name = f"{speaker}_{label}_{k}.wav"
            amp = AMP[label] * gain * rng.uniform(0.9, 1.1)
            sf.write(folder / name, (amp * rng.standard_normal(SR // 4)).astype(np.float32), SR, subtype="FLOAT")
            rows.append({"path": name, "label": label, "speaker": speaker})
    return rows


def write_corpus(folder: Path, gains: dict[str, float], per: int = 4, seed: int = 0) -> Path:
    """A manifest corpus of level-coded clips; ``gains`` gives each speaker's (or source's) level shift."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows = [r for speaker, gain in gains.items() for r in write_speaker(folder, speaker, gain, per, rng)]
    with open(folder / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The numpy-only encoder installed for the module; a training corpus near gain 1; a speaker 6x louder; a
    second corpus (another source) 5x louder."""
    root = tmp_path_factory.mktemp("norm")
    site = fake_distribution(root / "site", "fk-norm-level", {"encoder": {"nk-level": "fk_norm_level"}},
                             {"fk_norm_level": LEVEL_ENCODER})
    sys.path.insert(0, str(site))
    corpus = write_corpus(root / "train", {"a1": 1.0, "a2": 1.15, "a3": 0.9, "a4": 1.05})
    shifted = write_corpus(root / "shifted", {"z1": 6.0}, seed=1)
    other = write_corpus(root / "other", {"b1": 5.0, "b2": 4.5}, seed=2)
    yield {"root": root, "corpus": corpus, "shifted": shifted, "other": other}
    sys.path.remove(str(site))


def recipe(world, tmp_path, **extra):
    from fusionkit.recipe import Recipe

    raw = {"name": "norm", "data": {"dataset": "manifest", "root": str(world["corpus"])},
           "encoders": [{"plugin": "nk-level"}], "fusion": {"plugin": "linear"},
           "split": {"kind": "speaker-kfold", "folds": 2}, "cache": {"dir": str(tmp_path / "cache")}, **extra}
    return Recipe.model_validate(raw)


def exported(world, tmp_path, name: str, fold: str = "all", **extra) -> tuple[Path, dict]:
    from fusionkit.bundle import export
    from fusionkit.pipeline.run import run

    metrics = run(recipe(world, tmp_path, **extra), tmp_path / f"run-{name}")
    return export(tmp_path / f"run-{name}", tmp_path / f"bundle-{name}", fold), metrics


def wavs(folder: Path, prefix: str = "") -> list[Path]:
    return sorted(folder.glob(f"{prefix}*.wav"))


def uar(model, files: list[Path], **kw) -> float:
    truth = [f.name.split("_")[1] for f in files]
    guess = [model.predict(f, **kw)["label"] for f in files]
    return float(np.mean([np.mean([g == c for g, t in zip(guess, truth) if t == c]) for c in CLASSES]))


def saved_probabilities(run_dir: Path) -> dict[str, np.ndarray]:
    with open(run_dir / "predictions.csv", newline="") as fh:
        return {r["clip_id"]: np.array([float(r[f"p_{c}"]) for c in CLASSES]) for r in csv.DictReader(fh)}


def main(args: list[str]):
    from click.testing import CliRunner

    from fusionkit.cli import main as cli

    return CliRunner().invoke(cli, args)


# ---------------------------------------------------------------- the point of it


def test_enrolment_recovers_what_the_raw_shift_breaks(world, tmp_path):
    from fusionkit.bundle import Bundle

    plain, _ = exported(world, tmp_path, "plain")
    normed, _ = exported(world, tmp_path, "speaker", normalize="speaker")
    files = wavs(world["shifted"])
    raw_uar = uar(Bundle.load(plain), files)
    model = Bundle.load(normed)
    enrolled = uar(model, files, enrol=model.enrol(files))
    assert raw_uar <= 0.5, raw_uar  # six times louder: the raw model calls nearly everything loud
    assert enrolled >= 0.9, enrolled
    assert enrolled - raw_uar >= 0.4


def test_bundle_with_enrolment_equals_the_runs_own_normalised_predictions(world, tmp_path):
    from fusionkit.bundle import Bundle

    bundle, metrics = exported(world, tmp_path, "fold", fold="0", normalize="speaker")
    model = Bundle.load(bundle)
    saved = saved_probabilities(tmp_path / "run-fold")
    fold0 = next(f for f in metrics["folds"] if f["fold"] == 0)
    compared = 0
    for speaker in fold0["test_speakers"]:
        files = wavs(world["corpus"], f"{speaker}_")
        norm = model.enrol(files)  # the speaker's clips: the group the run z-scored them with
        for f in files:
            got = model.predict(f, enrol=norm)["probabilities"]
            assert np.allclose([got[c] for c in CLASSES], saved[f.stem], atol=1e-5), f.name
            compared += 1
    assert compared == 24


def test_cross_corpus_run_reports_raw_beside_normalised_and_its_bundle_matches(world, tmp_path):
    from fusionkit.bundle import Bundle
    from fusionkit.cli.tables import results_table

    test_data = {"dataset": "manifest", "root": str(world["other"])}
    bundle, metrics = exported(world, tmp_path, "cross", normalize="corpus", test_data=test_data,
                               split={"kind": "cross-corpus"})
    raw = metrics["raw"]
    assert raw["normalize"] == "none" and [f["fold"] for f in raw["folds"]] == [f["fold"] for f in metrics["folds"]]
    assert raw["uar"] <= 0.5 and metrics["uar"] >= 0.9  # the other source is 5x louder
    assert "raw (normalize: none, same folds): uar " in results_table(metrics)
    assert "normalised / raw" in (tmp_path / "run-cross" / "report.md").read_text()
    saved = saved_probabilities(tmp_path / "run-cross")
    model = Bundle.load(bundle)
    files = wavs(world["other"])
    norm = model.enrol(files)  # the whole test corpus: the group the run z-scored it with
    for f in files[::3]:
        got = model.predict(f, enrol=norm)["probabilities"]
        assert np.allclose([got[c] for c in CLASSES], saved[f.stem], atol=1e-5), f.name


def test_runs_without_normalize_or_test_data_have_no_raw_block(world, tmp_path):
    from fusionkit.pipeline.run import run

    assert "raw" not in run(recipe(world, tmp_path, normalize="speaker"), tmp_path / "r1")
    assert "raw" not in run(recipe(world, tmp_path, test_data={"dataset": "manifest", "root": str(world["other"])},
                                   split={"kind": "cross-corpus"}), tmp_path / "r2")


# ---------------------------------------------------------------- refusals and what the bundle holds


def test_a_normalised_bundle_refuses_to_predict_without_enrolment(world, tmp_path):
    from fusionkit.bundle import Bundle, EnrolmentError

    bundle, _ = exported(world, tmp_path, "speaker", normalize="speaker")
    model = Bundle.load(bundle)
    clip = wavs(world["shifted"])[0]
    with pytest.raises(EnrolmentError, match="normalize: speaker .* pass --enrol PATH"):
        model.predict(clip)
    with pytest.raises(EnrolmentError, match="normalize: speaker"):
        model.predict(clip, window=0.2)
    with pytest.raises(EnrolmentError, match="at least 2 are needed"):
        model.enrol([clip])
    res = main(["predict", str(bundle), str(clip)])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "--enrol PATH" in lines[0] and "--enrol-self" in lines[0]


def test_serve_refuses_a_normalised_bundle_without_enrol_in_a_sentence_of_its_own(world, tmp_path, capsys):
    from fusionkit.cli.serve import load_app

    bundle, _ = exported(world, tmp_path, "speaker", normalize="speaker")
    with pytest.raises(SystemExit) as exit_:
        load_app({"bundle": str(bundle), "runtime": "torch", "trust_remote_code": False, "enrol": []})
    assert exit_.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"error: {bundle}: this bundle was trained with normalize: speaker"), line
    assert line.endswith("to normalise with: start serve with --enrol PATH (a folder or files); serve labels each "
                         "upload on its own, so it cannot take its statistics from the files being labelled"), line
    assert "--enrol-self" not in line and "(serve takes" not in line


def test_silent_enrolment_files_are_passed_over_with_the_reason(world, tmp_path):
    """Digital silence would pull the statistics towards nothing a speaker says: it is skipped and listed."""
    from fusionkit.bundle import Bundle, EnrolmentError

    bundle, _ = exported(world, tmp_path, "speaker", normalize="speaker")
    model = Bundle.load(bundle)
    clips = wavs(world["shifted"])[:3]
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(16000, dtype=np.float32), 16000)
    norm = model.enrol([*clips, silent])
    assert norm.clips == 3
    assert norm.skipped == {str(silent): "silent (every sample is 0): would bias the statistics"}
    with pytest.raises(EnrolmentError, match="1 usable clip") as caught:
        model.enrol([clips[0], silent])
    assert caught.value.skipped == norm.skipped


def test_a_plain_bundle_refuses_enrolment_and_bad_options_are_refused(world, tmp_path):
    plain, _ = exported(world, tmp_path, "plain")
    normed, _ = exported(world, tmp_path, "speaker", normalize="speaker")
    clip = str(wavs(world["shifted"])[0])
    res = main(["predict", str(plain), clip, "--enrol", str(world["shifted"])])
    assert res.exit_code == 2 and "normalize: none" in res.output
    res = main(["predict", str(normed), clip, "--group-by", "(z1)"])
    assert res.exit_code == 2 and "--group-by: only with --enrol-self" in res.output
    res = main(["predict", str(normed), clip, "--enrol-self", "--group-by", "z1"])
    assert res.exit_code == 2 and "needs a group" in res.output
    res = main(["predict", str(normed), clip, "--enrol-self", "--group-by", "(z1"])
    assert res.exit_code == 2 and "not a valid regular expression" in res.output
    res = main(["predict", str(normed), clip, "--enrol-self", "--enrol", str(world["shifted"])])
    assert res.exit_code == 2 and "choose one" in res.output


def test_manifest_covers_the_statistics_file(world, tmp_path):
    from safetensors.numpy import load_file

    from fusionkit.bundle import Bundle, BundleError, describe

    bundle, _ = exported(world, tmp_path, "corpus", normalize="corpus")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["normalize"] == {"kind": "corpus", "training_statistics": "normalization.safetensors"}
    assert "normalization.safetensors" in manifest["files"]
    stats = load_file(str(bundle / "normalization.safetensors"))
    assert set(stats) == {"nk-level/mean", "nk-level/std"} and stats["nk-level/mean"].shape == (3,)
    assert describe(bundle)["normalize"] == "corpus"
    data = bytearray((bundle / "normalization.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (bundle / "normalization.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="changed since export: normalization.safetensors"):
        Bundle.load(bundle)
    (bundle / "normalization.safetensors").unlink()
    with pytest.raises(BundleError, match="missing: normalization.safetensors"):
        Bundle.load(bundle)


def test_the_statistics_file_is_the_same_bytes_each_time_it_is_written(tmp_path):
    """safetensors writes its metadata in a random order (a Rust HashMap): with two keys, files of the same
    statistics differed (about one write in two)."""
    from types import SimpleNamespace

    from fusionkit.bundle.files import write_training_stats

    clips = [SimpleNamespace(id=f"c{i}") for i in range(3)]
    features = {"enc": {c.id: np.arange(4, dtype=np.float32) * i for i, c in enumerate(clips)}}
    prep = SimpleNamespace(features=features, train_clips=clips)
    written = set()
    for i in range(16):
        write_training_stats(tmp_path / f"{i}.safetensors", prep)
        written.add((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(written) == 1


def test_two_exports_of_a_run_write_the_same_files(world, tmp_path):
    """Reproducible exports: the same file digests; the manifests differ in the export time (``created``) only."""
    from fusionkit.bundle import export
    from fusionkit.bundle.files import content_hash
    from fusionkit.pipeline.run import run

    run(recipe(world, tmp_path, normalize="corpus"), tmp_path / "run")
    a, b = (json.loads((export(tmp_path / "run", tmp_path / name) / "manifest.json").read_text())
            for name in ("a", "b"))
    assert "normalization.safetensors" in a["files"] and a["files"] == b["files"]
    same_time = {**b, "created": a["created"]}
    assert content_hash(same_time) == a["content_hash"]
    assert {k: v for k, v in a.items() if k not in ("created", "content_hash")} == \
        {k: v for k, v in b.items() if k not in ("created", "content_hash")}


def test_training_statistics_are_a_fallback_only_when_asked(world, tmp_path):
    from fusionkit.bundle import Bundle

    bundle, _ = exported(world, tmp_path, "corpus", normalize="corpus")
    model = Bundle.load(bundle)
    norm = model.training_normaliser()
    assert norm.source == "training corpus" and norm.clips == 48
    assert uar(model, wavs(world["corpus"], "a1_"), enrol=norm) >= 0.9  # audio of the training source itself
    assert uar(model, wavs(world["shifted"]), enrol=norm) <= 0.5  # another source: the raw shift again


# ---------------------------------------------------------------- the command line


def test_a_normaliser_prints_short():
    from fusionkit.bundle import Normaliser
    from fusionkit.pipeline.data import GroupStats

    stats = {"whisper": GroupStats(np.full(512, 0.123456789), np.full(512, 1.5)),
             "lld": GroupStats(np.zeros(3), np.ones(3))}
    text = repr(Normaliser("corpus", stats, 48, "training corpus", {"a.wav": "silent"}))
    assert text == ("Normaliser(kind='corpus', clips=48, source='training corpus', widths={'whisper': 512, 'lld': 3}, "
                    "skipped=1)")


def test_predict_with_enrol_folder_and_enrol_self_grouped(world, tmp_path):
    from fusionkit.bundle import Bundle

    bundle, _ = exported(world, tmp_path, "speaker", normalize="speaker")
    model = Bundle.load(bundle)
    shifted = wavs(world["shifted"])
    res = main(["predict", str(bundle), *map(str, shifted[:3]), "--enrol", str(world["shifted"]), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("["):])
    norm = model.enrol(shifted)
    for row, f in zip(out, shifted[:3]):
        want = model.predict(f, enrol=norm)["probabilities"]
        assert np.allclose([row["probabilities"][c] for c in CLASSES], [want[c] for c in CLASSES], atol=1e-6)
    # two speakers in one folder: each is normalised with its own clips
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in shifted + wavs(world["corpus"], "a2_"):
        (mixed / f.name).write_bytes(f.read_bytes())
    (mixed / "notes.txt").write_text("not audio")
    res = main(["predict", str(bundle), str(mixed), "--enrol-self", "--group-by", r"/(\w\d)_", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert "enrolment: group z1: statistics of 12 clip(s)" in res.output
    assert "enrolment: group a2: statistics of 12 clip(s)" in res.output
    assert "skipped: " in res.output and "notes.txt" in res.output
    rows = json.loads(res.output[res.output.index("["):res.output.rindex("]") + 1])
    right = [r["label"] == Path(r["file"]).name.split("_")[1] for r in rows]
    assert len(rows) == 24 and np.mean(right) >= 0.9


def test_enrol_self_lists_files_the_pattern_misses_and_fails(world, tmp_path):
    bundle, _ = exported(world, tmp_path, "speaker", normalize="speaker")
    files = [str(f) for f in wavs(world["shifted"])[:4]] + [str(wavs(world["corpus"], "a1_")[0])]
    res = main(["predict", str(bundle), *files, "--enrol-self", "--group-by", r"(z\d)_"])
    assert res.exit_code == 1
    assert "a1_loud_0.wav: --group-by (z\\d)_ does not match its path; not labelled" in res.output
    assert "1 file(s) could not be labelled" in res.output


def test_unusable_enrolment_files_are_passed_over_with_a_warning(world, tmp_path):
    """Enrolment files that cannot be used (unreadable, silent) are warnings, not failures: the files are labelled
    and the command succeeds; only too few usable enrolment files is an error."""
    bundle, _ = exported(world, tmp_path, "speaker", normalize="speaker")
    enrol = tmp_path / "enrol"
    enrol.mkdir()
    for f in wavs(world["shifted"]):
        (enrol / f.name).write_bytes(f.read_bytes())
    (enrol / "broken.wav").write_bytes(b"RIFF....not audio")
    sf.write(str(enrol / "silent.wav"), np.zeros(SR, dtype=np.float32), SR)
    target = str(wavs(world["shifted"])[0])
    res = main(["predict", str(bundle), target, "--enrol", str(enrol), "--format", "json"])
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: enrolment file passed over: ")]
    assert len(warnings) == 2 and "broken.wav: not readable as audio" in warnings[0], res.stderr
    assert warnings[1].endswith("silent.wav: silent (every sample is 0): would bias the statistics")
    assert "enrolment: statistics of 12 clip(s)" in res.stderr
    assert "2 enrolment files passed over (each listed above with the reason)" in res.stderr
    assert "could not be labelled" not in res.stderr and "error:" not in res.stderr
    assert [row["file"] for row in json.loads(res.stdout)] == [target]
    # too few usable enrolment files: nothing can be normalised, so nothing is labelled
    res = main(["predict", str(bundle), target, "--enrol", str(enrol / "broken.wav"), "--enrol",
                str(enrol / "silent.wav"), "--enrol", target])
    assert res.exit_code == 1 and res.stdout == ""
    assert sum(ln.startswith("warning: enrolment file passed over: ") for ln in res.stderr.splitlines()) == 2
    assert res.stderr.splitlines()[-1].startswith("error: enrolment: 1 usable clip(s) of 3; at least 2 are needed")
    empty = tmp_path / "empty"
    empty.mkdir()
    res = main(["predict", str(bundle), target, "--enrol", str(empty)])
    assert res.exit_code == 2 and "no audio files to enrol" in res.output


def test_enrol_self_lists_the_files_it_passes_over_as_enrolment(world, tmp_path):
    """A silent file among the files being labelled is left out of their statistics (a warning naming it) and is
    still labelled, with its own warning."""
    bundle, _ = exported(world, tmp_path, "speaker", normalize="speaker")
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(SR, dtype=np.float32), SR)
    files = [str(f) for f in wavs(world["shifted"])[:4]]
    res = main(["predict", str(bundle), *files, str(silent), "--enrol-self", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert (f"warning: enrolment file passed over: {silent}: silent (every sample is 0): would bias the statistics"
            in res.stderr.splitlines())
    assert "enrolment: group (all files): statistics of 4 clip(s)" in res.stderr
    assert "1 enrolment file passed over" in res.stderr
    assert len(json.loads(res.stdout)) == 5
