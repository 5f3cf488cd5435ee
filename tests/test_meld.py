"""The meld dataset plugin on a tiny fake MELD tree (and on the real CSVs where they are present)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from fusionkit.pipeline.splits import make_folds
from fusionkit.recipe import SplitSpec
from fusionkit_plugins.datasets.meld import Meld, MeldError, MeldOptions, clean_text

HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
          "Season", "Episode", "StartTime", "EndTime"]
ROWS = {
    "train": [("You mustÂ\x92ve had your hands full.", "The Interviewer", "neutral", "neutral", 0, 0),
              ("Oh my God\x85 \x93really\x94?", "Rachel", "surprise", "positive", 0, 1),
              ("I hate this!", "Ross", "anger", "negative", 1, 0)],
    "dev": [("Whatâ€™s up?", "Joey", "neutral", "neutral", 0, 0)],
    "test": [("Yeah, we’re  fine.", "Monica", "joy", "positive", 0, 0),
             ("No!", "Chandler", "sadness", "negative", 3, 2)],
}


def write_tree(root: Path, rows=ROWS, encoding="utf-8") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for part, items in rows.items():
        with open(root / f"{part}_sent_emo.csv", "w", newline="", encoding=encoding, errors="replace") as fh:
            w = csv.writer(fh)
            w.writerow(HEADER)
            for n, (utt, spk, emo, sent, d, u) in enumerate(items, 1):
                w.writerow([n, utt, spk, emo, sent, d, u, 8, 21, "00:16:16,059", "00:16:21,731"])
    return root


def test_clips_ids_labels_meta(tmp_path):
    ds = Meld(write_tree(tmp_path / "meld"), MeldOptions())
    clips = ds.clips()
    assert [c.id for c in clips] == ["train_dia0_utt0", "train_dia0_utt1", "train_dia1_utt0", "dev_dia0_utt0",
                                     "test_dia0_utt0", "test_dia3_utt2"]
    first = clips[0]
    assert first.text == "You must've had your hands full."
    assert first.speaker == "The Interviewer" and first.label == "neutral" and first.path is None
    assert first.meta["partition"] == "train" and first.meta["dialogue"] == 0 and first.meta["utterance"] == 0
    assert clips[1].text == 'Oh my God... "really"?'
    assert clips[3].text == "What's up?"
    assert clips[4].text == "Yeah, we're fine."
    assert clips[4].meta["sentiment"] == "positive"


def test_dialogue_context_adds_speakers_and_the_previous_turns_of_the_same_dialogue(tmp_path):
    rows = {**ROWS, "train": ROWS["train"] + [("Fine.", "Joey", "neutral", "neutral", 0, 2)]}
    clips = {c.id: c.text for c in Meld(write_tree(tmp_path / "meld", rows), MeldOptions(context=1)).clips()}
    assert clips["train_dia0_utt0"] == "The Interviewer: You must've had your hands full."
    assert clips["train_dia0_utt1"] == ("Rachel: Oh my God... \"really\"? | context: The Interviewer: You must've "
                                        "had your hands full.")
    assert clips["train_dia0_utt2"] == 'Joey: Fine. | context: Rachel: Oh my God... "really"?'
    assert clips["train_dia1_utt0"] == "Ross: I hate this!"  # another dialogue: no context
    assert clips["test_dia0_utt0"] == "Monica: Yeah, we're fine."  # same dialogue id, other partition
    two = {c.id: c.text for c in Meld(write_tree(tmp_path / "meld", rows), MeldOptions(context=2)).clips()}
    assert two["train_dia0_utt2"].endswith("context: The Interviewer: You must've had your hands full. | Rachel: "
                                           'Oh my God... "really"?')


def test_sentiment_labels_and_partition_subset(tmp_path):
    ds = Meld(write_tree(tmp_path / "meld"), MeldOptions(label="sentiment", partitions=["train", "test"]))
    clips = ds.clips()
    assert {c.label for c in clips} == {"neutral", "positive", "negative"}
    assert not any(c.id.startswith("dev_") for c in clips)


def test_predefined_split_uses_partitions(tmp_path):
    ds = Meld(write_tree(tmp_path / "meld"), MeldOptions())
    clips = ds.clips()
    (fold,) = make_folds(clips, SplitSpec(kind="predefined", train=["train"], test=["test"]), 0, ds.partitions())
    assert [clips[i].id for i in fold.train] == ["train_dia0_utt0", "train_dia0_utt1", "train_dia1_utt0"]
    assert [clips[i].id for i in fold.test] == ["test_dia0_utt0", "test_dia3_utt2"]


def test_media_dir_attaches_audio_by_standard_names(tmp_path):
    root = write_tree(tmp_path / "meld")
    media = tmp_path / "media"
    (media / "train_splits").mkdir(parents=True)
    (media / "output_repeated_splits_test").mkdir()
    for name in ("dia0_utt0.mp4", "dia0_utt0.wav", "dia1_utt0.mp4"):
        (media / "train_splits" / name).write_bytes(b"x")
    (media / "output_repeated_splits_test" / "dia3_utt2.flac").write_bytes(b"x")
    clips = {c.id: c for c in Meld(root, MeldOptions(media_dir=str(media))).clips()}
    assert clips["train_dia0_utt0"].path.name == "dia0_utt0.wav"  # readable audio preferred over video
    assert clips["train_dia1_utt0"].path.name == "dia1_utt0.mp4"
    assert clips["train_dia0_utt1"].path is None
    assert clips["dev_dia0_utt0"].path is None
    assert clips["test_dia3_utt2"].path == media / "output_repeated_splits_test" / "dia3_utt2.flac"
    assert clips["test_dia0_utt0"].path is None  # dia0_utt0 of train is not test's


def test_cp1252_file_is_read(tmp_path):
    rows = {"train": [("It’s fine", "Ross", "joy", "positive", 0, 0)], "dev": [], "test": []}
    ds = Meld(write_tree(tmp_path / "meld", rows, encoding="cp1252"), MeldOptions(partitions=["train"]))
    assert ds.clips()[0].text == "It's fine"


def test_bad_input_names_file_and_reason(tmp_path):
    root = write_tree(tmp_path / "meld")
    (root / "dev_sent_emo.csv").write_text("Utterance,Speaker\nhi,Joey\n", encoding="utf-8")
    with pytest.raises(MeldError, match=r"dev_sent_emo.csv: missing column\(s\) Emotion"):
        Meld(root, MeldOptions()).clips()
    (root / "test_sent_emo.csv").unlink()
    with pytest.raises(MeldError, match="test_sent_emo.csv: not found"):
        Meld(root, MeldOptions(partitions=["test"])).clips()
    bad = write_tree(tmp_path / "bad", {"train": [("hi", "Joey", "joy", "positive", "x", 0)]})
    with pytest.raises(MeldError, match=r"train_sent_emo.csv:2: Dialogue_ID"):
        Meld(bad, MeldOptions(partitions=["train"])).clips()
    with pytest.raises(MeldError, match="not a folder"):
        Meld(tmp_path / "nope", MeldOptions()).clips()


def test_clean_text_keeps_unicode_letters():
    assert clean_text("Café  naïve\u2014ok") == "Café naïve-ok"
    assert clean_text("it\u2019s", ascii_punctuation=False) == "it\u2019s"


REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "text" / "meld"


@pytest.mark.corpus
@pytest.mark.skipif(not REAL.is_dir(), reason="MELD CSVs not present")
def test_real_meld_counts():
    ds = Meld(REAL, MeldOptions())
    clips = ds.clips()
    parts = ds.partitions()
    assert len(clips) == len(parts) == 13708
    assert sum(v == "test" for v in parts.values()) == 2610
    assert {c.label for c in clips} == {"anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"}
    assert all(c.text and "\x92" not in c.text and "\u2019" not in c.text for c in clips)
