"""Train/test folds. Speaker-independent by default: no speaker is ever in both sides of a fold."""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionkit.interfaces import Clip
from fusionkit.recipe import SplitSpec

log = logging.getLogger("fusionkit")


@dataclass
class Fold:
    index: int
    train: np.ndarray  # indices into the clip list
    test: np.ndarray
    test_speakers: list[str]


def natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def make_folds(clips: list[Clip], spec: SplitSpec, seed: int = 0, partitions: dict[str, str] | None = None) -> list[Fold]:
    speakers = np.array([c.speaker for c in clips])
    kind = spec.kind
    if kind == "speaker-kfold":
        groups = _speaker_groups(speakers, spec.folds, spec.shuffle, seed)
    elif kind == "loso":
        groups = [[s] for s in sorted(set(speakers), key=natural_key)]
    elif kind == "session":
        sessions = np.array([str(c.meta.get("session", "")) for c in clips])
        if (sessions == "").any():
            raise ValueError("split.kind 'session': the dataset gives no session for some clips")
        return _by_values(clips, sessions, speakers)
    elif kind == "file":
        return _from_file(clips, spec.file, speakers)
    elif kind == "predefined":
        if not partitions:
            raise ValueError("split.kind 'predefined': this dataset has no predefined partitions")
        part = np.array([partitions.get(c.id, "") for c in clips])
        train = np.flatnonzero(np.isin(part, spec.train))
        test = np.flatnonzero(np.isin(part, spec.test))
        return [Fold(0, train, test, sorted(set(speakers[test]), key=natural_key))]
    elif kind == "random":
        log.warning("split.kind 'random': speakers leak between train and test; figures are not speaker-independent")
        from sklearn.model_selection import StratifiedKFold

        labels = np.array([c.label for c in clips])
        skf = StratifiedKFold(n_splits=spec.folds, shuffle=True, random_state=seed)
        return [
            Fold(i, tr, te, sorted(set(speakers[te]), key=natural_key))
            for i, (tr, te) in enumerate(skf.split(np.zeros(len(clips)), labels))
        ]
    else:  # pragma: no cover - the recipe model forbids it
        raise ValueError(kind)
    folds = []
    for i, test_speakers in enumerate(groups):
        test_mask = np.isin(speakers, test_speakers)
        folds.append(Fold(i, np.flatnonzero(~test_mask), np.flatnonzero(test_mask), list(test_speakers)))
    return folds


def _speaker_groups(speakers: np.ndarray, k: int, shuffle: bool, seed: int) -> list[list[str]]:
    """Contiguous blocks of the naturally sorted speakers (Actor_01-04, 05-08, ...), or shuffled."""
    unique = sorted(set(speakers), key=natural_key)
    if k > len(unique):
        raise ValueError(f"split.folds is {k} but the data has only {len(unique)} speakers")
    if shuffle:
        rng = np.random.default_rng(seed)
        unique = [unique[i] for i in rng.permutation(len(unique))]
    return [list(block) for block in np.array_split(np.array(unique, dtype=object), k)]


def _by_values(clips, values, speakers) -> list[Fold]:
    folds = []
    for i, v in enumerate(sorted(set(values), key=natural_key)):
        test = np.flatnonzero(values == v)
        train = np.flatnonzero(values != v)
        folds.append(Fold(i, train, test, sorted(set(speakers[test]), key=natural_key)))
    return folds


def _from_file(clips: list[Clip], path: Path, speakers) -> list[Fold]:
    """A CSV of ``clip_id,fold``; clips not listed are left out."""
    assignment: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if len(row) >= 2 and row[0] != "clip_id":
                assignment[row[0].strip()] = row[1].strip()
    values = np.array([assignment.get(c.id, "") for c in clips])
    folds = []
    for i, v in enumerate(sorted(set(values) - {""}, key=natural_key)):
        test = np.flatnonzero(values == v)
        train = np.flatnonzero((values != v) & (values != ""))
        folds.append(Fold(i, train, test, sorted(set(speakers[test]), key=natural_key)))
    return folds
