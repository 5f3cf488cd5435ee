"""Train/test folds. Speaker-independent by default: no speaker is ever in both sides of a fold.

Kinds (``split.kind``): ``speaker-stratified`` (the default: k speaker-disjoint folds whose class
proportions are kept close to the corpus's, scikit-learn's StratifiedGroupKFold, speakers shuffled
by seed), ``speaker-kfold`` (k blocks of naturally sorted speakers, or shuffled by seed), ``loso``
(one fold per speaker), ``session`` (one fold per ``meta["session"]``),
``predefined`` (the corpus's own partitions), ``file`` (a clip_id,fold CSV), ``random``
(stratified by class; speakers leak, a warning says so) and ``cross-corpus`` (one fold, see
:func:`cross_corpus_fold`). :func:`thin_classes` names the classes a fold's training side lacks
or nearly lacks.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from fusionkit.recipe import SplitSpec
from fusionkit.sdk.base import Clip

log = logging.getLogger("fusionkit")
MIN_TRAIN_CLIPS = 5  # fewer training clips of a class than this in a fold gets a warning


@dataclass
class Fold:
    index: int
    train: np.ndarray  # indices into the clip list
    test: np.ndarray
    test_speakers: list[str]


def natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def make_folds(
    clips: list[Clip], spec: SplitSpec, seed: int = 0, partitions: dict[str, str] | None = None
) -> list[Fold]:
    """The folds of ``spec`` over ``clips`` (indices into the list); errors are one line naming split.*."""
    speakers = np.array([c.speaker for c in clips])
    kind = spec.kind
    if kind == "speaker-kfold":
        groups = _speaker_groups(speakers, spec.folds, spec.shuffle, seed)
    elif kind == "speaker-stratified":
        groups = _stratified_groups(clips, speakers, spec.folds, bool(spec.shuffle), seed)
    elif kind == "loso":
        groups = [[s] for s in sorted(set(speakers), key=natural_key)]
        if len(groups) < 2:
            raise ValueError(f"split.kind 'loso': needs at least 2 speakers, the data has {len(groups)}")
    elif kind == "session":
        sessions = np.array([str(c.meta.get("session") or "") for c in clips])
        if (sessions == "").any():
            raise ValueError(f"split.kind 'session': {int((sessions == '').sum())} clips have no session in their "
                             "meta (this dataset gives none; use loso or speaker-kfold)")
        if len(set(sessions)) < 2:
            raise ValueError("split.kind 'session': needs at least 2 sessions")
        return _by_values(clips, sessions, speakers)
    elif kind == "file":
        return _from_file(clips, spec.file, speakers)
    elif kind == "predefined":
        return [_predefined(clips, spec, partitions, speakers)]
    elif kind == "random":
        return _random(clips, spec, seed, speakers)
    elif kind == "cross-corpus":
        raise ValueError("split.kind 'cross-corpus' is made from data and test_data (see cross_corpus_fold)")
    else:  # pragma: no cover - the recipe model forbids it
        raise ValueError(kind)
    folds = []
    for i, test_speakers in enumerate(groups):
        test_mask = np.isin(speakers, test_speakers)
        folds.append(Fold(i, np.flatnonzero(~test_mask), np.flatnonzero(test_mask), list(test_speakers)))
    return folds


def cross_corpus_fold(n_train: int, n_test: int, speakers: np.ndarray) -> Fold:
    """The one cross-corpus fold: the first ``n_train`` clips train, the next ``n_test`` test."""
    test = np.arange(n_train, n_train + n_test)
    return Fold(0, np.arange(n_train), test, sorted(set(speakers[test]), key=natural_key))


def speaker_overlap(fold: Fold, speakers: np.ndarray) -> list[str]:
    """Speakers found on both sides of a fold (empty for every speaker-independent split)."""
    return sorted(set(speakers[fold.train]) & set(speakers[fold.test]), key=natural_key)


def _predefined(clips, spec: SplitSpec, partitions, speakers) -> Fold:
    if not partitions:
        raise ValueError("split.kind 'predefined': this dataset has no predefined partitions")
    part = np.array([partitions.get(c.id, "") for c in clips])
    train = np.flatnonzero(np.isin(part, spec.train))
    test = np.flatnonzero(np.isin(part, spec.test))
    found = ", ".join(sorted(set(part) - {""})) or "none"
    for side, idx, names in (("train", train, spec.train), ("test", test, spec.test)):
        if len(idx) == 0:
            raise ValueError(f"split.{side}: no clip is in partition(s) {', '.join(names)} (partitions found: {found})")
    return Fold(0, train, test, sorted(set(speakers[test]), key=natural_key))


def _random(clips, spec: SplitSpec, seed: int, speakers) -> list[Fold]:
    log.warning("split.kind 'random': speakers leak between train and test; figures are not speaker-independent")
    from sklearn.model_selection import KFold, StratifiedKFold

    labels = np.array([str(c.label) for c in clips])
    if any(c.label is None for c in clips):  # regression: nothing to stratify on
        splitter = KFold(n_splits=spec.folds, shuffle=True, random_state=seed)
    else:
        smallest = min(np.unique(labels, return_counts=True)[1])
        if smallest < spec.folds:
            raise ValueError(f"split.folds is {spec.folds} but a class has only {smallest} clips")
        splitter = StratifiedKFold(n_splits=spec.folds, shuffle=True, random_state=seed)
    return [
        Fold(i, tr, te, sorted(set(speakers[te]), key=natural_key))
        for i, (tr, te) in enumerate(splitter.split(np.zeros(len(clips)), labels))
    ]


def _speaker_groups(speakers: np.ndarray, k: int, shuffle: bool, seed: int) -> list[list[str]]:
    """Contiguous blocks of the naturally sorted speakers (Actor_01-04, 05-08, ...), or shuffled."""
    unique = sorted(set(speakers), key=natural_key)
    if k > len(unique):
        raise ValueError(f"split.folds is {k} but the data has only {len(unique)} speakers")
    if shuffle:
        rng = np.random.default_rng(seed)
        unique = [unique[i] for i in rng.permutation(len(unique))]
    return [list(block) for block in np.array_split(np.array(unique, dtype=object), k)]


def _stratified_groups(clips: list[Clip], speakers: np.ndarray, k: int, shuffle: bool, seed: int) -> list[list[str]]:
    """Speakers of each test fold from StratifiedGroupKFold: speaker-disjoint, class proportions kept close."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    n_speakers = len(set(speakers))
    if k > n_speakers:
        raise ValueError(f"split.folds is {k} but the data has only {n_speakers} speakers")
    labels = np.array(["" if c.label is None else str(c.label) for c in clips])  # regression: one stratum
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=shuffle, random_state=seed if shuffle else None)
    try:
        with warnings.catch_warnings():  # a class rarer than k clips: the per-fold warnings say what it costs
            warnings.simplefilter("ignore", UserWarning)
            tests = [te for _, te in splitter.split(np.zeros(len(clips)), labels, speakers)]
    except ValueError as exc:
        raise ValueError(f"split.kind 'speaker-stratified': {exc}") from None
    return [sorted({str(s) for s in speakers[te]}, key=natural_key) for te in tests]


def thin_classes(fold: Fold, labels: np.ndarray, classes: list[str], minimum: int = MIN_TRAIN_CLIPS) -> dict[str, int]:
    """Classes with fewer than ``minimum`` clips on the training side of ``fold``: name -> count (0: absent)."""
    counts = dict(zip(*np.unique(labels[fold.train], return_counts=True)))
    return {c: int(counts.get(c, 0)) for c in classes if counts.get(c, 0) < minimum}


def _by_values(clips, values, speakers) -> list[Fold]:
    folds = []
    for i, v in enumerate(sorted(set(values), key=natural_key)):
        test = np.flatnonzero(values == v)
        train = np.flatnonzero(values != v)
        folds.append(Fold(i, train, test, sorted(set(speakers[test]), key=natural_key)))
    return folds


def _from_file(clips: list[Clip], path: Path, speakers) -> list[Fold]:
    """A CSV of ``clip_id,fold`` (header optional); each fold value is one test fold. Clips not listed are in no
    fold (the run passes them over and lists them); ids the corpus lacks are warned about; an id listed twice with
    different folds is refused."""
    assignment: dict[str, str] = {}
    line: dict[str, int] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for n, row in enumerate(csv.reader(fh), 1):
                if not row or not "".join(row).strip() or (n == 1 and row[0].strip().lower() in ("clip_id", "id")):
                    continue
                if len(row) < 2 or not row[1].strip():
                    raise ValueError(f"{path}:{n}: expected clip_id,fold")
                cid, fold = row[0].strip(), row[1].strip()
                if assignment.get(cid, fold) != fold:
                    raise ValueError(f"{path}:{n}: clip {cid} is given fold {fold}, but line {line[cid]} gave it "
                                     f"fold {assignment[cid]}")
                assignment[cid] = fold
                line.setdefault(cid, n)
    except OSError as exc:
        raise ValueError(f"split.file: cannot read {path} ({exc.strerror})") from None
    values = np.array([assignment.get(c.id, "") for c in clips])
    if not (values != "").any():
        example = next(iter(assignment), "(empty file)")
        raise ValueError(f"{path}: no clip id of the corpus is listed (first id in the file: {example}; "
                         f"first corpus id: {clips[0].id if clips else '-'})")
    if len(set(values) - {""}) < 2:
        raise ValueError(f"{path}: needs at least 2 distinct fold values")
    unknown = sorted(set(assignment) - {c.id for c in clips}, key=natural_key)
    if unknown:
        _warn_unknown(str(path), tuple(unknown))
    folds = []
    for i, v in enumerate(sorted(set(values) - {""}, key=natural_key)):
        test = np.flatnonzero(values == v)
        train = np.flatnonzero((values != v) & (values != ""))
        folds.append(Fold(i, train, test, sorted(set(speakers[test]), key=natural_key)))
    return folds


@lru_cache(maxsize=16)
def _warn_unknown(path: str, unknown: tuple[str, ...]) -> None:
    """Once per file and ids (the folds are made before encoding, then again, for every seed)."""
    log.warning("split.file %s: %d listed id(s) are not clips of the corpus (e.g. %s)", path, len(unknown),
                ", ".join(unknown[:3]))
