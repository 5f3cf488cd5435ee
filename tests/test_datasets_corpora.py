"""Corpus readers on fake trees that mimic each corpus's real naming (tiny generated audio)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from protocol_fakes import write_tone

from fusionkit.sdk.base import Options
from fusionkit_plugins.datasets.common import CorpusError
from fusionkit_plugins.datasets.cremad import CremaD, CremaDOptions
from fusionkit_plugins.datasets.emodb import EmoDB
from fusionkit_plugins.datasets.iemocap import Iemocap, IemocapOptions
from fusionkit_plugins.datasets.manifest import Manifest, ManifestError, ManifestOptions
from fusionkit_plugins.datasets.msp_podcast import MspPodcast
from fusionkit_plugins.datasets.ravdess import Ravdess, RavdessOptions
from fusionkit_plugins.datasets.tess import Tess


def by_id(clips):
    return {c.id: c for c in clips}


# ------------------------------------------------------------------ emodb


def test_emodb_names_sentences_and_shared_class_names(tmp_path):
    for name in ("03a01Fa.wav", "08b10Wb.flac", "16a04Lc.wav", "09b03Ea.wav", "10a05Aa.wav", "11a07Td.wav",
                 "12b09Nb.flac"):
        write_tone(tmp_path / "wav" / name)
    write_tone(tmp_path / "wav" / "notes.wav")  # not an EmoDB name: skipped
    clips = by_id(EmoDB(tmp_path, Options()).clips())
    assert sorted(clips) == ["03a01Fa", "08b10Wb", "09b03Ea", "10a05Aa", "11a07Td", "12b09Nb", "16a04Lc"]
    c = clips["03a01Fa"]
    assert (c.label, c.speaker, c.text) == ("happy", "emodb03", "Der Lappen liegt auf dem Eisschrank.")
    assert c.meta["gender"] == "male" and c.meta["sentence"] == "a01" and c.meta["version"] == "a"
    assert clips["08b10Wb"].label == "angry" and clips["08b10Wb"].meta["gender"] == "female"
    assert clips["08b10Wb"].text == "Die wird auf dem Platz sein, wo wir sie immer hinlegen."
    assert {clips[k].label for k in clips} == {"happy", "angry", "boredom", "disgust", "fearful", "sad", "neutral"}


def test_emodb_missing_root_is_one_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="not a folder"):
        EmoDB(tmp_path / "nope", Options()).clips()


# ------------------------------------------------------------------ ravdess


def test_ravdess_speech_song_intensity_gender(tmp_path):
    names = {
        "Actor_01/03-01-05-02-01-01-01.wav": ("angry", "speech", "strong", "male"),
        "Actor_02/03-01-01-01-02-02-02.flac": ("neutral", "speech", "normal", "female"),
        "Actor_01/03-02-03-01-01-01-01.wav": ("happy", "song", "normal", "male"),
        "Actor_02/03-02-04-02-02-01-02.wav": ("sad", "song", "strong", "female"),
    }
    for n in names:
        write_tone(tmp_path / n)
    write_tone(tmp_path / "Actor_01" / "01-01-05-02-01-01-01.wav")  # video modality: not audio-only
    both = by_id(Ravdess(tmp_path, RavdessOptions(channel="both")).clips())
    assert len(both) == 4
    for n, (label, channel, intensity, gender) in names.items():
        c = both[Path(n).stem]
        found = (c.label, c.meta["channel"], c.meta["intensity"], c.meta["gender"])
        assert found == (label, channel, intensity, gender)
    assert both["03-01-01-01-02-02-02"].text == "Dogs are sitting by the door"
    assert both["03-01-05-02-01-01-01"].speaker == "actor01"
    speech = Ravdess(tmp_path, RavdessOptions()).clips()
    assert {c.meta["channel"] for c in speech} == {"speech"}
    strong_f = Ravdess(tmp_path, RavdessOptions(channel="both", intensity="strong", gender="female")).clips()
    assert [c.id for c in strong_f] == ["03-02-04-02-02-01-02"]


def test_a_second_clip_with_the_same_id_is_passed_over_and_listed(tmp_path):
    """A copy of a RAVDESS file in another folder has the same id: the run keeps the first and lists the copy (and an
    .mp3 the readers do not take)."""
    import yaml

    from fusionkit.pipeline.data import select
    from fusionkit.recipe import load_recipe

    for n in ("Actor_01/03-01-05-02-01-01-01.wav", "Actor_01/03-01-03-01-01-01-01.wav",
              "backup/03-01-05-02-01-01-01.wav"):
        write_tone(tmp_path / "corpus" / n)
    (tmp_path / "corpus" / "Actor_01" / "03-01-04-01-01-01-01.mp3").write_bytes(b"ID3")  # a format not read
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "dup", "data": {"dataset": "ravdess", "root": "corpus"},
                                      "encoders": [{"plugin": "lld"}], "fusion": {"plugin": "linear"}}))
    chosen = select(load_recipe(str(recipe)))
    assert sorted(c.id for c in chosen.train) == ["03-01-03-01-01-01-01", "03-01-05-02-01-01-01"]
    assert chosen.passed_over == {
        "backup/03-01-05-02-01-01-01.wav": "ravdess: a second clip with id 03-01-05-02-01-01-01 (the first: "
                                           "Actor_01/03-01-05-02-01-01-01.wav)",
        "Actor_01/03-01-04-01-01-01-01.mp3": "ravdess: a .mp3 file: corpus readers take .wav and .flac (convert it, "
                                             "e.g. with ffmpeg)"}


# ------------------------------------------------------------------ crema-d


def test_cremad_names_levels_demographics(tmp_path):
    for n in ("1001_DFA_ANG_XX.wav", "1001_IEO_HAP_HI.wav", "1002_TSI_NEU_XX.flac", "1091_WSI_FEA_LO.wav"):
        write_tone(tmp_path / "AudioWAV" / n)
    write_tone(tmp_path / "AudioWAV" / "1001_XYZ_ANG_XX.wav")  # unknown sentence: skipped
    (tmp_path / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n1002,21,Female,Caucasian,Not Hispanic\n")
    clips = by_id(CremaD(tmp_path, CremaDOptions()).clips())
    assert sorted(clips) == ["1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TSI_NEU_XX", "1091_WSI_FEA_LO"]
    c = clips["1001_DFA_ANG_XX"]
    assert (c.label, c.speaker, c.text) == ("angry", "cremad1001", "Don't forget a jacket.")
    assert c.meta["gender"] == "male" and c.meta["level"] == "unspecified"
    assert clips["1002_TSI_NEU_XX"].meta["gender"] == "female"
    assert clips["1091_WSI_FEA_LO"].label == "fearful" and "gender" not in clips["1091_WSI_FEA_LO"].meta
    high = CremaD(tmp_path, CremaDOptions(level="high")).clips()
    assert [c.id for c in high] == ["1001_IEO_HAP_HI"]


# ------------------------------------------------------------------ tess


def test_tess_tolerates_known_oddities(tmp_path):
    files = {
        "OAF_angry/OAF_back_angry.wav": ("OAF", "back", "angry"),
        "OAF_Fear/OAF_bar_fear.wav": ("OAF", "bar", "fearful"),
        "OAF_Pleasant_surprise/OAF_bath_ps.wav": ("OAF", "bath", "surprised"),
        "OAF_neutral/OA_bite_neutral.wav": ("OAF", "bite", "neutral"),
        "YAF_pleasant_surprised/YAF_mess_ps.wav": ("YAF", "mess", "surprised"),
        "YAF_neutral/YAF_germ_neautral.wav": ("YAF", "germ", "neutral"),
        "YAF_sad/YAF_chain.flac": ("YAF", "chain", "sad"),  # no emotion in the file name: folder decides
        "YAF_disgust/YAF_date_disgust.wav": ("YAF", "date", "disgust"),
        "YAF_happy/YAF_dime_happy.wav": ("YAF", "dime", "happy"),
    }
    for n in files:
        write_tone(tmp_path / "TESS Toronto emotional speech set data" / n)
    clips = Tess(tmp_path, Options()).clips()
    got = {c.path.relative_to(tmp_path / "TESS Toronto emotional speech set data").as_posix(): c for c in clips}
    assert sorted(got) == sorted(files)
    for n, (speaker, word, label) in files.items():
        c = got[n]
        assert (c.speaker, c.meta["word"], c.label) == (speaker, word, label), n
        assert c.text == f"Say the word {word}."
    assert got["OAF_neutral/OA_bite_neutral.wav"].meta["age"] == 64


# ------------------------------------------------------------------ iemocap

EVAL = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]\tSes01F_impro01_M000\texc\t[4.0000, 3.5000, 3.0000]

[14.8872 - 18.0175]\tSes01F_impro01_F001\txxx\t[2.0000, 3.0000, 3.5000]

[19.2900 - 20.7875]\tSes01F_impro01_M001\tfru\t[2.0000, 3.5000, 3.5000]

[21.0 - 22.5]\tSes01F_impro01_F002\tang\t[1.5000, 4.0000, 4.0000]
"""
TRANS = """Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
Ses01F_impro01_M000 [010.0100-011.3925]: Do you have your forms?
Ses01F_impro01_F001 [014.8872-018.0175]: Yeah.
Ses01F_impro01_M001 [019.2900-020.7875]: Let me see them.
Ses01F_impro01_F002 [021.0000-022.5000]: Is there a problem?
M: [BREATHING]
"""
EVAL2 = "[1.0 - 2.0]\tSes02M_script01_1_F000\tsad\t[1.5000, 2.0000, 2.0000]\n"


def _iemocap_tree(root: Path) -> None:
    s1 = root / "Session1"
    (s1 / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (s1 / "dialog" / "transcriptions").mkdir(parents=True)
    (s1 / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(EVAL)
    (s1 / "dialog" / "transcriptions" / "Ses01F_impro01.txt").write_text(TRANS)
    for turn in ("F000", "M000", "F001", "M001", "F002"):
        write_tone(s1 / "sentences" / "wav" / "Ses01F_impro01" / f"Ses01F_impro01_{turn}.wav")
    s2 = root / "Session2"
    (s2 / "dialog" / "EmoEvaluation").mkdir(parents=True)
    (s2 / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt").write_text(EVAL2)
    write_tone(s2 / "sentences" / "wav" / "Ses02M_script01_1" / "Ses02M_script01_1_F000.flac")


def test_iemocap_four_classes_vad_speakers_sessions(tmp_path):
    _iemocap_tree(tmp_path)
    clips = by_id(Iemocap(tmp_path, IemocapOptions()).clips())
    assert len(clips) == 6  # every turn is listed; unlabelled ones have label None
    f0 = clips["Ses01F_impro01_F000"]
    assert (f0.label, f0.speaker, f0.text) == ("neutral", "Ses01_F", "Excuse me.")
    assert f0.meta["session"] == "Ses01" and f0.meta["mode"] == "improvised"
    assert (f0.meta["valence"], f0.meta["arousal"], f0.meta["dominance"]) == (2.5, 2.5, 2.5)
    m0 = clips["Ses01F_impro01_M000"]
    assert (m0.label, m0.speaker, m0.meta["gender"]) == ("happy", "Ses01_M", "male")  # excited merged
    assert clips["Ses01F_impro01_F001"].label is None  # xxx: no majority
    assert clips["Ses01F_impro01_M001"].label is None  # frustrated: not one of the four
    assert clips["Ses01F_impro01_F002"].meta["arousal"] == 4.0
    s2 = clips["Ses02M_script01_1_F000"]
    assert (s2.label, s2.speaker, s2.meta["session"], s2.meta["mode"]) == ("sad", "Ses02_F", "Ses02", "scripted")
    assert s2.path.suffix == ".flac" and s2.text is None


def test_iemocap_options_all_classes_excited_apart_and_filters(tmp_path):
    _iemocap_tree(tmp_path)
    every = by_id(Iemocap(tmp_path, IemocapOptions(classes="all", merge_excited=False)).clips())
    assert every["Ses01F_impro01_M000"].label == "excited"
    assert every["Ses01F_impro01_M001"].label == "frustrated"
    five = by_id(Iemocap(tmp_path, IemocapOptions(merge_excited=False)).clips())
    assert five["Ses01F_impro01_M000"].label == "excited"
    assert [c.id for c in Iemocap(tmp_path, IemocapOptions(mode="scripted")).clips()] == ["Ses02M_script01_1_F000"]
    assert {c.meta["session"] for c in Iemocap(tmp_path, IemocapOptions(sessions=[2])).clips()} == {"Ses02"}


def test_iemocap_wrong_root(tmp_path):
    with pytest.raises(CorpusError, match="Session1"):
        Iemocap(tmp_path, IemocapOptions()).clips()


# ------------------------------------------------------------------ msp-podcast

LABELS = """FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
MSP-PODCAST_0001_0008.wav,N,3.4,4.2,3.8,127,Female,Train
MSP-PODCAST_0001_0019.wav,A,6.0,2.0,5.6,127,Female,Development
MSP-PODCAST_0002_0033.wav,X,4.0,3.0,4.0,Unknown,Male,Test1
MSP-PODCAST_0003_0001.wav,H,5.2,6.1,4.4,25,Male,Test2
"""


def test_msp_podcast_labels_dimensions_partitions(tmp_path):
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels" / "labels_consensus.csv").write_text(LABELS)
    for n in ("MSP-PODCAST_0001_0008", "MSP-PODCAST_0001_0019", "MSP-PODCAST_0002_0033"):
        write_tone(tmp_path / "Audios" / f"{n}.wav")
    (tmp_path / "Transcripts").mkdir()
    (tmp_path / "Transcripts" / "MSP-PODCAST_0001_0008.txt").write_text("well I think so\n")
    ds = MspPodcast(tmp_path, Options())
    clips = by_id(ds.clips())
    a = clips["MSP-PODCAST_0001_0008"]
    assert (a.label, a.speaker, a.text) == ("neutral", "msp127", "well I think so")
    assert (a.meta["arousal"], a.meta["valence"], a.meta["dominance"]) == (3.4, 4.2, 3.8)
    assert clips["MSP-PODCAST_0001_0019"].label == "angry"
    x = clips["MSP-PODCAST_0002_0033"]
    assert x.label is None and x.speaker == "unknown-MSP-PODCAST_0002_0033" and x.meta["arousal"] == 4.0
    assert clips["MSP-PODCAST_0003_0001"].path is None  # listed, audio missing
    assert ds.partitions() == {"MSP-PODCAST_0001_0008": "train", "MSP-PODCAST_0001_0019": "dev",
                               "MSP-PODCAST_0002_0033": "test", "MSP-PODCAST_0003_0001": "test2"}


def test_msp_podcast_missing_column(tmp_path):
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels" / "labels_consensus.csv").write_text("FileName,EmoClass\nx.wav,N\n")
    with pytest.raises(CorpusError, match="missing column.*SpkrID"):
        MspPodcast(tmp_path, Options()).clips()


# ------------------------------------------------------------------ manifest


def test_manifest_csv_partition_session_and_meta(tmp_path):
    write_tone(tmp_path / "a.wav")
    write_tone(tmp_path / "sub" / "b.flac")
    (tmp_path / "manifest.csv").write_text(
        "path,label,speaker,text,partition,session,valence\n"
        "a.wav,happy,s1,hello,train,1,0.5\n"
        "sub/b.flac,,s2,,test,2,-0.2\n")
    ds = Manifest(tmp_path, ManifestOptions())
    clips = by_id(ds.clips())
    assert sorted(clips) == ["a", "sub/b"]
    assert clips["a"].path == tmp_path / "a.wav" and clips["a"].text == "hello" and clips["a"].label == "happy"
    assert clips["sub/b"].label is None and clips["sub/b"].meta["session"] == "2"
    assert clips["a"].meta["valence"] == "0.5"
    assert ds.partitions() == {"a": "train", "sub/b": "test"}


def test_manifest_jsonl_with_own_column_names(tmp_path):
    f = tmp_path / "list.jsonl"
    rows = [{"clip": "x1", "audio": "/abs/x1.wav", "emotion": "sad", "who": "p1", "split": "dev", "arousal": 3.0},
            {"clip": "x2", "audio": "x2.wav", "emotion": "angry", "who": "p2", "split": "test"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    o = ManifestOptions(id_column="clip", path_column="audio", label_column="emotion", speaker_column="who",
                        partition_column="split")
    ds = Manifest(f, o)
    clips = by_id(ds.clips())
    assert clips["x1"].path == Path("/abs/x1.wav") and clips["x2"].path == tmp_path / "x2.wav"
    assert clips["x1"].meta["arousal"] == 3.0
    assert ds.partitions() == {"x1": "dev", "x2": "test"}


@pytest.mark.parametrize("content, suffix, message", [
    ("path,label\na.wav,x\n", ".csv", "missing column.*speaker"),
    ("path,label,speaker\na.wav,x,\n", ".csv", r":2: speaker is empty"),
    ("path,label,speaker\na.wav,x,s\na.wav,y,s\n", ".csv", r":3: clip id 'a' repeats line 2"),
    ('{"path": "a.wav", "speaker": "s"}\n{oops\n', ".jsonl", r":2: not valid JSON"),
    ('["a.wav"]\n', ".jsonl", r":1: each line must be a JSON object"),
])
def test_manifest_bad_rows_name_file_and_line(tmp_path, content, suffix, message):
    f = tmp_path / f"m{suffix}"
    f.write_text(content)
    with pytest.raises(ManifestError, match=message):
        Manifest(f, ManifestOptions()).clips()


@pytest.mark.parametrize("recipe_file, tree", [
    ("benchmarks/iemocap/whisper-base-4class.yaml", _iemocap_tree),
    ("benchmarks/msp-podcast/ridge-dimensions.yaml", None),
])
def test_example_recipes_validate_and_split_fake_trees(tmp_path, recipe_file, tree):
    from fusionkit.pipeline.data import load_dataset
    from fusionkit.pipeline.splits import make_folds
    from fusionkit.recipe import load_recipe

    if tree is None:
        (tmp_path / "Labels").mkdir()
        (tmp_path / "Labels" / "labels_consensus.csv").write_text(LABELS)
    else:
        tree(tmp_path)
    repo = Path(__file__).resolve().parents[1]
    recipe = load_recipe(repo / recipe_file, [f"data.root={tmp_path}"])
    dataset = load_dataset(recipe)
    clips = [c for c in dataset.clips() if recipe.task.kind == "regression" or c.label]
    folds = make_folds(clips, recipe.split, 0, dataset.partitions())
    assert folds and all(len(f.test) for f in folds)
