"""Splits: no speaker on both sides of any speaker split (property tests), and each kind's behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusionkit.pipeline.splits import cross_corpus_fold, make_folds, speaker_overlap
from fusionkit.recipe import Recipe, SplitSpec
from fusionkit.sdk.base import Clip


def clips_from(speakers: list[str], labels: list[str] | None = None, sessions: list[str] | None = None) -> list[Clip]:
    out = []
    for i, s in enumerate(speakers):
        meta = {"session": sessions[i]} if sessions else {}
        out.append(Clip(id=f"c{i}", path=None, label=(labels[i] if labels else "x"), speaker=s, meta=meta))
    return out


speaker_lists = st.lists(st.sampled_from([f"spk{i}" for i in range(12)]), min_size=2, max_size=80).filter(
    lambda s: len(set(s)) >= 2)


def check_partition(clips, folds):
    """Speaker-independent, every clip tested exactly once, train = the rest."""
    speakers = np.array([c.speaker for c in clips])
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == list(range(len(clips)))
    for f in folds:
        assert speaker_overlap(f, speakers) == []
        assert not set(speakers[f.train]) & set(speakers[f.test])
        assert sorted(np.concatenate([f.train, f.test]).tolist()) == list(range(len(clips)))
        assert sorted(set(speakers[f.test])) == sorted(f.test_speakers)


@settings(max_examples=60, deadline=None)
@given(speakers=speaker_lists, k=st.integers(2, 6), shuffle=st.booleans(), seed=st.integers(0, 5))
def test_speaker_kfold_never_shares_a_speaker(speakers, k, shuffle, seed):
    clips = clips_from(speakers)
    if k > len(set(speakers)):
        with pytest.raises(ValueError, match="only"):
            make_folds(clips, SplitSpec(kind="speaker-kfold", folds=k, shuffle=shuffle), seed)
        return
    folds = make_folds(clips, SplitSpec(kind="speaker-kfold", folds=k, shuffle=shuffle), seed)
    assert len(folds) == k
    check_partition(clips, folds)


@settings(max_examples=60, deadline=None)
@given(speakers=speaker_lists)
def test_loso_one_fold_per_speaker(speakers):
    clips = clips_from(speakers)
    folds = make_folds(clips, SplitSpec(kind="loso"))
    assert len(folds) == len(set(speakers))
    assert all(len(f.test_speakers) == 1 for f in folds)
    check_partition(clips, folds)


@settings(max_examples=60, deadline=None)
@given(data=st.lists(st.tuples(st.integers(1, 5), st.sampled_from("FM")), min_size=2, max_size=80).filter(
    lambda d: len({s for s, _ in d}) >= 2))
def test_session_split_never_shares_a_speaker(data):
    # IEMOCAP-style: a speaker is a session's actress or actor, so sessions hold disjoint speakers
    clips = clips_from([f"Ses0{s}_{g}" for s, g in data], sessions=[f"Ses0{s}" for s, _ in data])
    folds = make_folds(clips, SplitSpec(kind="session"))
    assert len(folds) == len({s for s, _ in data})
    check_partition(clips, folds)


def test_speaker_kfold_blocks_are_naturally_sorted():
    clips = clips_from([f"actor{i}" for i in range(1, 13)])
    folds = make_folds(clips, SplitSpec(kind="speaker-kfold", folds=3))
    assert [f.test_speakers for f in folds] == [["actor1", "actor2", "actor3", "actor4"],
                                                ["actor5", "actor6", "actor7", "actor8"],
                                                ["actor9", "actor10", "actor11", "actor12"]]
    shuffled = make_folds(clips, SplitSpec(kind="speaker-kfold", folds=3, shuffle=True), seed=1)
    assert [f.test_speakers for f in shuffled] != [f.test_speakers for f in folds]
    assert make_folds(clips, SplitSpec(kind="speaker-kfold", folds=3, shuffle=True), seed=1)[0].test_speakers == \
        shuffled[0].test_speakers


def test_session_needs_sessions():
    with pytest.raises(ValueError, match="2 clips have no session"):
        make_folds(clips_from(["a", "b"]), SplitSpec(kind="session"))


def test_predefined_partitions_and_errors():
    clips = clips_from(["a", "a", "b", "c"])
    parts = {"c0": "train", "c1": "train", "c2": "dev", "c3": "test"}
    (fold,) = make_folds(clips, SplitSpec(kind="predefined"), partitions=parts)
    assert fold.train.tolist() == [0, 1] and fold.test.tolist() == [3] and fold.test_speakers == ["c"]
    (fold,) = make_folds(clips, SplitSpec(kind="predefined", train=["train", "dev"]), partitions=parts)
    assert fold.train.tolist() == [0, 1, 2]
    expected = r"split.test: no clip is in partition\(s\) test1 \(partitions found: dev, test, train\)"
    with pytest.raises(ValueError, match=expected):
        make_folds(clips, SplitSpec(kind="predefined", test=["test1"]), partitions=parts)
    with pytest.raises(ValueError, match="no predefined partitions"):
        make_folds(clips, SplitSpec(kind="predefined"), partitions=None)


def test_split_file(tmp_path):
    clips = clips_from(["a", "b", "c", "d"])
    f = tmp_path / "folds.csv"
    f.write_text("clip_id,fold\nc0,1\nc1,1\nc2,2\n")  # c3 not listed: left out
    folds = make_folds(clips, SplitSpec(kind="file", file=f))
    assert [(x.train.tolist(), x.test.tolist()) for x in folds] == [([2], [0, 1]), ([0, 1], [2])]
    f.write_text("c0,1\nc1\n")
    with pytest.raises(ValueError, match=r"folds.csv:2: expected clip_id,fold"):
        make_folds(clips, SplitSpec(kind="file", file=f))
    f.write_text("other,1\nother2,2\n")
    with pytest.raises(ValueError, match="no clip id of the corpus is listed"):
        make_folds(clips, SplitSpec(kind="file", file=f))


def test_split_file_refuses_a_clip_given_two_folds_and_warns_of_unknown_ids(tmp_path, caplog):
    clips = clips_from(["a", "b", "c", "d"])
    f = tmp_path / "folds.csv"
    f.write_text("c0,1\nc1,2\nc0,1\nc2,2\nc0,2\n")
    with pytest.raises(ValueError, match=r"folds.csv:5: clip c0 is given fold 2, but line 1 gave it fold 1"):
        make_folds(clips, SplitSpec(kind="file", file=f))
    f.write_text("c0,1\nc1,2\nnot-a-clip,1\n")
    folds = make_folds(clips, SplitSpec(kind="file", file=f))
    assert [x.test.tolist() for x in folds] == [[0], [1]]
    assert "1 listed id(s) are not clips of the corpus (e.g. not-a-clip)" in caplog.text


def test_random_is_stratified_and_warns(caplog):
    labels = ["x"] * 10 + ["y"] * 5
    clips = clips_from([f"s{i % 3}" for i in range(15)], labels=labels)
    folds = make_folds(clips, SplitSpec(kind="random", folds=5), seed=0)
    assert "speakers leak" in caplog.text
    for f in folds:
        assert sorted(labels[i] for i in f.test) == ["x", "x", "y"]
    assert any(speaker_overlap(f, np.array([c.speaker for c in clips])) for f in folds)
    with pytest.raises(ValueError, match="a class has only 5 clips"):
        make_folds(clips, SplitSpec(kind="random", folds=6))


def test_cross_corpus_fold():
    speakers = np.array(["a", "a", "b", "x", "y"])
    f = cross_corpus_fold(3, 2, speakers)
    assert f.train.tolist() == [0, 1, 2] and f.test.tolist() == [3, 4] and f.test_speakers == ["x", "y"]


def test_recipe_cross_corpus_kind_follows_test_data():
    base = {"data": {"dataset": "ravdess"}, "encoders": [{"plugin": "lld"}], "fusion": {"plugin": "xgboost"}}
    r = Recipe.model_validate({**base, "test_data": {"dataset": "emodb"}})
    assert r.split.kind == "cross-corpus"
    with pytest.raises(ValueError, match="cannot apply"):
        Recipe.model_validate({**base, "test_data": {"dataset": "emodb"}, "split": {"kind": "loso"}})
    with pytest.raises(ValueError, match="needs test_data"):
        Recipe.model_validate({**base, "split": {"kind": "cross-corpus"}})
