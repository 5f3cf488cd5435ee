"""The real RAVDESS and EmoDB copies (parsing only, fast); skipped where ../shared/data is absent."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from fusionkit.sdk.base import Options
from fusionkit_plugins.datasets.emodb import EmoDB
from fusionkit_plugins.datasets.ravdess import Ravdess, RavdessOptions

REPO = Path(__file__).resolve().parents[1]
DATA = next((p for p in (REPO.parent / "shared" / "data", Path("/work/shared/data")) if p.is_dir()), None)
pytestmark = pytest.mark.corpus


def corpus(name: str) -> Path:
    if DATA is None or not (DATA / name).is_dir():
        pytest.skip(f"real corpus {name} not found under ../shared/data")
    return DATA / name


def test_real_ravdess_counts():
    clips = Ravdess(corpus("ravdess"), RavdessOptions()).clips()
    counts = Counter(c.label for c in clips)
    assert counts["neutral"] == 96
    assert all(counts[k] == 192 for k in ("calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"))
    assert len({c.speaker for c in clips}) == 24
    assert Counter(c.meta["gender"] for c in clips) == {"male": 720, "female": 720}


def test_real_emodb_counts():
    clips = EmoDB(corpus("emodb"), Options()).clips()
    assert len(clips) == 535
    assert len({c.speaker for c in clips}) == 10
    assert Counter(c.label for c in clips) == {"angry": 127, "boredom": 81, "neutral": 79, "happy": 71,
                                               "fearful": 69, "sad": 62, "disgust": 46}
    assert all(c.text for c in clips)


def test_real_emodb_loso_and_ravdess_speaker_folds_are_speaker_independent():
    import numpy as np

    from fusionkit.pipeline.splits import make_folds, speaker_overlap
    from fusionkit.recipe import SplitSpec

    emodb = EmoDB(corpus("emodb"), Options()).clips()
    folds = make_folds(emodb, SplitSpec(kind="loso"))
    speakers = np.array([c.speaker for c in emodb])
    assert len(folds) == 10 and sum(len(f.test) for f in folds) == 535
    assert all(speaker_overlap(f, speakers) == [] for f in folds)
    ravdess = Ravdess(corpus("ravdess"), RavdessOptions()).clips()
    folds = make_folds(ravdess, SplitSpec(kind="speaker-kfold", folds=6))
    assert [f.test_speakers[0] for f in folds] == ["actor01", "actor05", "actor09", "actor13", "actor17", "actor21"]
    assert all(len(f.test) == 240 for f in folds)
