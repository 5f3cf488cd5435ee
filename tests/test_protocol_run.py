"""The evaluation protocol end to end on tiny manifest corpora: labels, seeds, cross-corpus, regression."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from protocol_fakes import write_tone

from fusionkit.cli.tables import results_table
from fusionkit.pipeline.data import apply_labels, regression_targets
from fusionkit.pipeline.run import run
from fusionkit.recipe import LabelSpec, Recipe, RecipeError, load_recipe
from fusionkit.sdk.base import Clip

FREQ = {"ang": 520.0, "hap": 380.0, "neu": 200.0, "angry": 520.0, "happy": 380.0, "neutral": 200.0, "bored": 150.0}
LLD = {"plugin": "lld", "options": {"descriptors": ["mfcc", "rms", "centroid"], "functionals": ["mean", "std"],
                                    "trim_db": None, "workers": 1}}
XGB = {"plugin": "xgboost", "options": {"n_estimators": 30, "max_depth": 2, "n_jobs": 1}}
KEYS = {"uar", "wa", "macro_f1", "uar_std", "wa_std", "macro_f1_std", "summary", "folds", "skipped", "embeddings",
        "protocol", "classes", "pooled", "uar_pooled"}


def make_corpus(folder, labels, speakers, per=3, seed=0):
    """A manifest corpus: per speaker and label, ``per`` noisy tones whose pitch gives the label away."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in speakers:
        for lab in labels:
            for k in range(per):
                name = f"{s}_{lab}_{k}.wav"
                f = FREQ[lab] * rng.uniform(0.95, 1.05)
                write_tone(folder / name, f, seconds=0.3, noise=0.02, seed=int(rng.integers(1 << 30)))
                arousal = {"ang": 4.5, "hap": 3.5, "neu": 2.0, "angry": 4.5, "happy": 3.5, "neutral": 2.0,
                           "bored": 1.0}[lab] + rng.normal(0, 0.2)
                rows.append({"path": name, "label": lab, "speaker": s, "arousal": f"{arousal:.3f}",
                             "session": s[:2]})
    with open(folder / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder / "manifest.csv"


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    a = make_corpus(root / "a", ["ang", "hap", "neu"], ["a1", "a2", "a3", "a4"])
    b = make_corpus(root / "b", ["angry", "happy", "neutral", "bored"], ["b1", "b2", "b3"], per=2, seed=1)
    return a, b, root / "cache"


def recipe(corpora, **extra) -> Recipe:
    a, _, cache = corpora
    raw = {"name": "t", "data": {"dataset": "manifest", "root": str(a)}, "encoders": [LLD], "fusion": XGB,
           "cache": {"dir": str(cache)}, **extra}
    return Recipe.model_validate(raw)


# ------------------------------------------------------------------ labels


def clip(label):
    return Clip(id=label, path=None, label=label, speaker="s")


def test_labels_rename_merge_subset():
    clips = [clip(x) for x in ("ang", "hap", "exc", "neu", "sad")]
    kept, classes = apply_labels(clips, LabelSpec(map={"ang": "angry", "exc": "happy", "hap": "happy"},
                                                  include=["happy", "angry", "neutral"]))
    assert classes == ["happy", "angry"]  # include order; neutral never occurs under that name
    assert [(c.label, c.meta["original_label"]) for c in kept] == [("angry", "ang"), ("happy", "hap"), ("happy", "exc")]
    kept, classes = apply_labels([clip(x) for x in ("b", "a", "c")], LabelSpec())
    assert classes == ["a", "b", "c"] and len(kept) == 3


def test_labels_warn_about_unused_map_keys(caplog):
    apply_labels([clip("ang")], LabelSpec(map={"angry": "x"}, include=["ang", "typo"]))
    assert "angry never occur" in caplog.text and "no clip is labelled typo" in caplog.text
    caplog.clear()
    apply_labels([clip(x) for x in ("calm", "neutral", "happy")],
                 LabelSpec(map={"calm": "neutrl", "clam": "x"}, include=["neutrl", "neutral", "hapy"]))
    assert "clam never occurs; did you mean 'calm' for 'clam'?" in caplog.text
    assert "maps to neutrl, a class of its own; did you mean 'neutral' for 'neutrl'?" in caplog.text
    assert "no clip is labelled hapy after mapping; did you mean 'happy' for 'hapy'?" in caplog.text
    caplog.clear()
    apply_labels([clip(x) for x in ("ang", "neutral")], LabelSpec(map={"ang": "angry"}))  # a rename: no hint
    assert caplog.text == ""
    kept, classes = apply_labels([clip(x) for x in ("Happy", "happy", "sad")], LabelSpec())
    assert classes == ["Happy", "happy", "sad"]  # two classes, as the corpus says, but not without a word
    assert "classes differing only in case are separate classes: 'Happy' ~ 'happy'" in caplog.text
    assert "data.labels.map (e.g. Happy: happy)" in caplog.text


def test_regression_targets_need_numbers():
    good = Clip("a", None, None, "s", meta={"arousal": "3.5", "valence": 2})
    bad = Clip("b", None, None, "s", meta={"arousal": "n/a", "valence": 2})
    kept, Y = regression_targets([good, bad], ["arousal", "valence"])
    assert [c.id for c in kept] == ["a"] and Y.tolist() == [[3.5, 2.0]]
    with pytest.raises(ValueError, match="no data clip has numeric dominance"):
        regression_targets([good], ["dominance"])


# ------------------------------------------------------------------ runs


def test_run_records_labels_and_keeps_metrics_keys(corpora, tmp_path):
    r = recipe(corpora, data={"dataset": "manifest", "root": str(corpora[0]),
                              "labels": {"map": {"ang": "angry", "hap": "happy", "neu": "neutral"},
                                         "include": ["neutral", "angry"]}},
               split={"kind": "loso"})
    m = run(r, tmp_path)
    assert KEYS <= set(m)
    assert m["classes"] == ["neutral", "angry"]
    p = m["protocol"]
    assert p["label_map"] == {"ang": "angry", "hap": "happy", "neu": "neutral"}
    assert p["include"] == ["neutral", "angry"]
    assert p["class_counts"] == {"neutral": 12, "angry": 12}
    assert p["split"]["kind"] == "loso" and p["folds"] == 4 and p["speaker_independent"]
    assert "classes present in its test labels" in p["scoring"]
    assert m["uar"] > 0.8  # pitch separates the classes
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["protocol"]["label_map"] == p["label_map"]
    report = (tmp_path / "report.md").read_text()
    assert "neutral (12), angry (12)" in report and "leave-one-speaker-out over 4 speakers" in report
    for png in ("confusion.png", "recall.png", "folds.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_one_class_left_is_an_error_before_encoding(corpora, tmp_path):
    r = recipe(corpora, data={"dataset": "manifest", "root": str(corpora[0]), "labels": {"include": ["ang", "typo"]}},
               cache={"dir": str(tmp_path / "cache")})
    with pytest.raises(ValueError, match="data.labels .* leave only the class ang; a classifier needs two or more"):
        run(r, tmp_path / "run")
    assert not (tmp_path / "cache").exists()  # nothing was encoded


def test_one_class_left_after_skipping_is_an_error(tmp_path):
    manifest = make_corpus(tmp_path / "c", ["ang", "hap"], ["s1", "s2"], per=2)
    for f in (tmp_path / "c").glob("*_hap_*.wav"):
        f.write_bytes(b"")  # every happy clip unreadable
    r = Recipe.model_validate({"name": "t", "data": {"dataset": "manifest", "root": str(manifest)}, "encoders": [LLD],
                               "fusion": XGB, "cache": {"dir": str(tmp_path / "cache")}, "split": {"kind": "loso"}})
    with pytest.raises(ValueError, match=r"usable clips \(4 skipped; most often: empty file .*\) hold only the class "
                                         r"ang; a classifier needs two or more"):
        run(r, tmp_path / "run")


def test_seeds_give_mean_std_and_interval_over_folds_and_seeds(corpora, tmp_path):
    r = recipe(corpora, split={"kind": "speaker-kfold", "folds": 2, "shuffle": True}, seeds=[0, 1, 2])
    m = run(r, tmp_path)
    assert len(m["folds"]) == 6 and {f["seed"] for f in m["folds"]} == {0, 1, 2}
    s = m["summary"]["uar"]
    values = [f["uar"] for f in m["folds"]]
    assert s["n"] == 6 and s["mean"] == pytest.approx(np.mean(values))
    assert s["std"] == pytest.approx(np.std(values, ddof=1))
    assert s["ci95"][0] <= s["mean"] <= s["ci95"][1]
    assert set(m["seeds"]["per_seed"]) == {"0", "1", "2"}
    assert m["seeds"]["over_seeds"]["uar"]["n"] == 3
    assert m["protocol"]["seeds"] == [0, 1, 2]
    text = results_table(m)
    assert "95% CI" in text and "over seeds" in text and "seeds [0, 1, 2]" in text
    assert len(list((tmp_path / "models").iterdir())) == 6


def test_cross_corpus_shared_classes_and_per_class_recall(corpora, tmp_path):
    a, b, _ = corpora
    r = recipe(corpora,
               data={"dataset": "manifest", "root": str(a),
                     "labels": {"map": {"ang": "angry", "hap": "happy", "neu": "neutral"}}},
               test_data={"dataset": "manifest", "root": str(b)}, seeds=[0, 1])
    assert r.split.kind == "cross-corpus"
    m = run(r, tmp_path)
    assert m["classes"] == ["angry", "happy", "neutral"]  # 'bored' only in the test corpus: left out
    assert m["protocol"]["labels"]["left_out"] == {"train_only": [], "test_only": ["bored"]}
    assert m["protocol"]["test_corpus"] == "manifest"
    assert m["protocol"]["test_class_counts"] == {"angry": 6, "happy": 6, "neutral": 6}
    assert len(m["folds"]) == 2  # one fold per seed
    f = m["folds"][0]
    assert f["test_speakers"] == ["b1", "b2", "b3"] and f["train_size"] == 36 and f["test_size"] == 18
    assert len(m["pooled"]["per_class"]["recall"]) == 3
    assert "recall: angry" in results_table(m)
    assert m["uar"] > 0.6


def test_regression_with_ridge_reports_ccc(corpora, tmp_path):
    r = recipe(corpora, task={"kind": "regression", "targets": ["arousal"]}, fusion={"plugin": "ridge"},
               split={"kind": "session"})
    m = run(r, tmp_path)
    assert m["task"] == "regression" and m["targets"] == ["arousal"]
    assert m["protocol"]["split"]["kind"] == "session" and len(m["folds"]) == 4
    assert m["ccc_arousal"] > 0.6 and m["ccc"] == pytest.approx(m["ccc_arousal"])
    assert -1 <= m["ccc_pooled"] <= 1
    with open(tmp_path / "predictions.csv") as fh:
        assert next(csv.reader(fh)) == ["clip_id", "seed", "fold", "speaker", "true_arousal", "pred_arousal"]
    assert (tmp_path / "scatter.png").stat().st_size > 1000
    assert "CCC" in (tmp_path / "report.md").read_text()
    from fusionkit_plugins.ridge_head import RidgeHead

    head = RidgeHead.load(tmp_path / "models" / "fold0")
    assert head.W.shape[1] == 1


def test_the_cli_names_the_files_a_regression_run_wrote(corpora, tmp_path):
    import yaml
    from click.testing import CliRunner

    from fusionkit.cli import main

    r = recipe(corpora, task={"kind": "regression", "targets": ["arousal"]}, fusion={"plugin": "ridge"},
               split={"kind": "session"})
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(r.model_dump(mode="json", exclude_none=True)))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"outputs in {out}/ (metrics.json, predictions.csv, report.md, report.html, scatter.png)" in result.output


def test_a_test_clip_with_a_training_clips_audio_is_warned_about(corpora, tmp_path, caplog):
    """The same file listed under two ids, one per side of a fold: counted per fold and in the protocol."""
    import shutil

    src = corpora[0].parent
    folder = tmp_path / "copy"
    shutil.copytree(src, folder)
    shutil.copy(folder / "a1_ang_0.wav", folder / "copy.wav")
    with open(folder / "manifest.csv", "a", newline="") as fh:
        csv.writer(fh).writerow(["copy.wav", "ang", "a4", "4.0", "a4"])  # speaker a1's audio, as a4's
    r = recipe(corpora, data={"dataset": "manifest", "root": str(folder / "manifest.csv")},
               split={"kind": "speaker-kfold", "folds": 2})
    m = run(r, tmp_path / "out")
    assert [f["same_audio_as_training"] for f in m["folds"]] == [1, 1] and m["protocol"]["same_audio_as_training"] == 2
    assert "1 test clip(s) have the same audio as a training clip" in caplog.text


def test_head_must_match_the_task(corpora, tmp_path):
    a = corpora[0]
    bad = tmp_path / "r.yaml"
    bad.write_text(f"data: {{dataset: manifest, root: {a}}}\nencoders: [{{plugin: lld}}]\nfusion: {{plugin: ridge}}\n")
    with pytest.raises(RecipeError, match="'ridge' is a regression head but task.kind is classification"):
        load_recipe(bad)
    bad.write_text(f"data: {{dataset: manifest, root: {a}}}\nencoders: [{{plugin: lld}}]\nfusion: {{plugin: xgboost}}\n"
                   "task: {kind: regression, targets: [arousal]}\n")
    with pytest.raises(RecipeError, match="'xgboost' is a classification head but task.kind is regression"):
        load_recipe(bad)


def test_normalize_per_group_by_hand():
    from fusionkit.pipeline.data import normalize_features

    clips = [Clip("a", None, "x", "s1"), Clip("b", None, "x", "s1"),
             Clip("c", None, "x", "s2"), Clip("d", None, "x", "s2")]
    feats = {"e": {"a": np.array([1.0, 5.0]), "b": np.array([3.0, 5.0]), "c": np.array([10.0, 0.0]),
                   "d": np.array([30.0, 2.0])}}
    by_speaker = normalize_features(feats, {"e": False}, clips, "speaker")["e"]
    assert by_speaker["a"].tolist() == [-1.0, 0.0] and by_speaker["b"].tolist() == [1.0, 0.0]  # constant column -> 0
    assert by_speaker["c"].tolist() == [-1.0, -1.0] and by_speaker["d"].tolist() == [1.0, 1.0]
    by_corpus = normalize_features(feats, {"e": False}, clips, "corpus", test_ids={"c", "d"})["e"]
    assert by_corpus["c"].tolist() == by_speaker["c"].tolist()
    assert normalize_features(feats, {"e": False}, clips, "none") is feats
    with pytest.raises(ValueError, match="e give frame sequences"):
        normalize_features(feats, {"e": True}, clips, "speaker")


def test_cross_corpus_with_corpus_normalisation_is_recorded(corpora, tmp_path):
    a, b, _ = corpora
    r = recipe(corpora, data={"dataset": "manifest", "root": str(a),
                              "labels": {"map": {"ang": "angry", "hap": "happy", "neu": "neutral"}}},
               test_data={"dataset": "manifest", "root": str(b)}, normalize="corpus")
    m = run(r, tmp_path)
    assert m["protocol"]["normalize"] == "corpus"
    assert "z-scored per corpus" in results_table(m)
    assert "n/a (one score)" in results_table(m)  # one fold, one seed: no interval
    assert "z-scored per corpus" in (tmp_path / "report.md").read_text()


# ------------------------------------------------------------------ export of these runs


def test_export_of_a_cross_corpus_run_refits_on_the_training_corpus_only(corpora, tmp_path):
    from fusionkit.bundle import Bundle, export

    a, b, _ = corpora
    r = recipe(corpora, data={"dataset": "manifest", "root": str(a),
                              "labels": {"map": {"ang": "angry", "hap": "happy", "neu": "neutral"}}},
               test_data={"dataset": "manifest", "root": str(b)})
    run(r, tmp_path / "run")
    export(tmp_path / "run", tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["head"] == "refitted on all 36 clips of the training corpus"
    model = Bundle.load(tmp_path / "bundle")
    assert model.classes == ["angry", "happy", "neutral"]
    with open(tmp_path / "run" / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    # trained on the same clips as the run's single cross-corpus fold: the same test predictions
    for row in rows[:6]:
        out = model.predict(b.parent / (row["clip_id"].split(":")[-1] + ".wav"))
        assert out["label"] == row["predicted"]


def test_export_of_a_predefined_split_refits_on_its_training_partitions_only(corpora, tmp_path):
    """A corpus's own test partition stays unseen by the bundle: it labels the test clips as the run's fold did."""
    import shutil

    from fusionkit.bundle import Bundle, export

    folder = tmp_path / "corpus"
    shutil.copytree(corpora[0].parent, folder)
    with open(folder / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(folder / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0], "partition"])
        w.writeheader()
        w.writerows({**row, "partition": "test" if row["speaker"] == "a4" else "train"} for row in rows)
    r = recipe(corpora, data={"dataset": "manifest", "root": str(folder / "manifest.csv")},
               split={"kind": "predefined", "train": ["train"], "test": ["test"]})
    run(r, tmp_path / "run")
    export(tmp_path / "run", tmp_path / "bundle")
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["head"] == "refitted on all 27 clips of split.train (train; the test partition left out)"
    model = Bundle.load(tmp_path / "bundle")
    with open(tmp_path / "run" / "predictions.csv") as fh:
        for row in csv.DictReader(fh):
            assert model.predict(folder / f"{row['clip_id']}.wav")["label"] == row["predicted"]


def test_export_of_a_regression_run_predicts_values(corpora, tmp_path):
    import soundfile as sf
    from click.testing import CliRunner

    from fusionkit.bundle import Bundle, export
    from fusionkit.cli import main

    r = recipe(corpora, task={"kind": "regression", "targets": ["arousal"]}, fusion={"plugin": "ridge"},
               split={"kind": "session"})
    run(r, tmp_path / "run")
    export(tmp_path / "run", tmp_path / "bundle")
    labels = json.loads((tmp_path / "bundle" / "labels.json").read_text())
    assert labels == {"task": "regression", "targets": ["arousal"]}
    model = Bundle.load(tmp_path / "bundle")
    a = corpora[0].parent
    loud, calm = model.predict(a / "a1_ang_0.wav"), model.predict(a / "a1_neu_0.wav")
    assert set(loud) == {"values"} and loud["values"]["arousal"] > calm["values"]["arousal"] + 1.0
    timeline = model.predict(a / "a1_ang_0.wav", window=0.2, smooth=3)
    assert timeline and all(s.label is None and set(s.values) == {"arousal"} for s in timeline)
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(8000, dtype=np.float32), 8000)
    res = CliRunner().invoke(main, ["predict", str(tmp_path / "bundle"), str(a / "a1_ang_0.wav"), str(silent),
                                    "--format", "csv"])
    assert res.exit_code == 0, res.output
    out = res.stdout.splitlines()
    assert out[0] == "file,start,end,arousal,warning"
    assert out[1].startswith(f"{a / 'a1_ang_0.wav'},,,") and out[2].startswith(f"{silent},,,")  # whole file
    assert f"warning: {silent}: silent (every sample is 0): its values mean little" in res.stderr
    export(tmp_path / "run", tmp_path / "best", fold="best")
    assert "CCC" in json.loads((tmp_path / "best" / "manifest.json").read_text())["head"]


def test_group_normalised_runs_export_bundles_that_need_enrolment(corpora, tmp_path):
    from fusionkit.bundle import Bundle, EnrolmentError, export

    run(recipe(corpora, normalize="speaker", split={"kind": "speaker-kfold", "folds": 2}), tmp_path / "run")
    export(tmp_path / "run", tmp_path / "bundle")
    with pytest.raises(EnrolmentError, match="normalize: speaker"):
        Bundle.load(tmp_path / "bundle").predict(corpora[0].parent / "a1_ang_0.wav")
