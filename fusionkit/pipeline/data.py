"""The data stage of a run: which clips, and what is predicted of them.

Before encoding, :func:`select` reads the corpus (and the test corpus) through its dataset plugin,
maps and chooses the classes (``data.labels``) or reads the regression targets, and for a
cross-corpus run keeps the classes both corpora share. After encoding, :func:`keep_usable` keeps
the clips every encoder could take and :func:`normalize` z-scores features per group when the
recipe asks (``normalize: corpus | speaker``).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fusionkit.blame import PluginFailed, blame
from fusionkit.recipe import DataSpec, LabelSpec, Recipe, plugin_options
from fusionkit.sdk.base import Clip, Dataset

if TYPE_CHECKING:
    from fusionkit.pipeline.encode import Encoded

log = logging.getLogger("fusionkit")


# ---------------------------------------------------------------- labels and targets


def apply_labels(clips: list[Clip], spec: LabelSpec, corpus: str = "data") -> tuple[list[Clip], list[str]]:
    """Map labels (rename or merge), keep the included classes, drop unlabelled clips.

    Returns (clips, classes): classes in ``include`` order when given, else sorted. The
    clip's label before mapping is kept in ``meta["original_label"]``. Map keys and
    included classes that the corpus never yields are warned about (typos are common).
    """
    before = Counter(c.label for c in clips if c.label is not None)
    unused = sorted(k for k in spec.map if k not in before)
    if unused:
        log.warning("%s.labels.map: %s never occur%s%s (corpus labels: %s)", corpus, ", ".join(unused),
                    "s" if len(unused) == 1 else "", _near(unused, before), ", ".join(sorted(before)))
    new = sorted({v for k, v in spec.map.items() if k in before and v not in before})
    hint = _near(new, [c for c in before if c not in spec.map])
    if hint:  # a new class name one typo away from a class the corpus keeps: most likely a typo
        log.warning("%s.labels.map: maps to %s, a class of its own%s", corpus, ", ".join(new), hint)
    kept = []
    for clip in clips:
        if clip.label is None:
            continue
        label = spec.map.get(clip.label, clip.label)
        if spec.include is not None and label not in spec.include:
            continue
        clip.meta.setdefault("original_label", clip.label)
        clip.label = label
        kept.append(clip)
    present = {c.label for c in kept}
    _warn_case_twins(present, corpus)
    if spec.include:
        absent = [c for c in spec.include if c not in present]
        if absent:
            log.warning("%s.labels.include: no clip is labelled %s after mapping%s", corpus, ", ".join(absent),
                        _near(absent, {spec.map.get(c, c) for c in before}))
    classes = [c for c in spec.include if c in present] if spec.include else sorted(present)
    return kept, classes


def _warn_case_twins(classes: set[str], corpus: str) -> None:
    """Classes that differ only in case (``Happy`` and ``happy``) are two classes to a run: most likely one."""
    twins: dict[str, list[str]] = {}
    for c in sorted(classes):
        twins.setdefault(c.casefold(), []).append(c)
    found = [names for names in twins.values() if len(names) > 1]
    if found:
        example = found[0]
        log.warning("%s: classes differing only in case are separate classes: %s; merge them with "
                    "%s.labels.map (e.g. %s: %s)", corpus, "; ".join(" ~ ".join(f"'{n}'" for n in names)
                                                          for names in found),
                    corpus, example[0], example[-1])


def _near(names, known) -> str:
    """``"; did you mean 'x'?"`` for the names one typo away from a known label (difflib), else ``""``."""
    import difflib

    pairs = [(n, difflib.get_close_matches(n, sorted(known), n=1, cutoff=0.75)) for n in names]
    found = [f"'{m[0]}' for '{n}'" for n, m in pairs if m]
    return f"; did you mean {', '.join(found)}?" if found else ""


NO_LABEL = "(no label)"


def left_out_labels(clips: list[Clip], spec: LabelSpec) -> dict[str, int]:
    """Clips a classification run leaves out, per label after mapping: labels outside ``include`` and, under
    ``(no label)``, clips without one. Labels in order of count, largest first."""
    counts: Counter = Counter()
    for clip in clips:
        label = spec.map.get(clip.label, clip.label) if clip.label is not None else None
        if label is None:
            counts[NO_LABEL] += 1
        elif spec.include is not None and label not in spec.include:
            counts[label] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _warn_left_out(left_out: dict[str, int], spec: LabelSpec, corpus: str) -> None:
    """One line naming every label left out with its count, and an included class a label differs from only in
    case or surrounding spaces (a likely typo)."""
    if not left_out:
        return
    included = {c.strip().lower(): c for c in spec.include or []}
    near = [f"{k!r} ~ {included[k.strip().lower()]!r}" for k in left_out if k.strip().lower() in included]
    hint = f"; differ only in case or spaces from an included class: {', '.join(near)}" if near else ""
    log.warning("%s: %d clip(s) left out by %s.labels: %s%s", corpus, sum(left_out.values()), corpus,
                ", ".join(f"{k} {n}" for k, n in left_out.items()), hint)


def class_counts(clips: list[Clip], classes: list[str]) -> dict[str, int]:
    """Clips per class, in class order."""
    counts = Counter(c.label for c in clips)
    return {k: int(counts.get(k, 0)) for k in classes}


def target_value(clip: Clip, target: str) -> float | None:
    """A clip's numeric value for a regression target (a meta field), or None."""
    value = clip.meta.get(target)
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def regression_targets(clips: list[Clip], targets: list[str], corpus: str = "data") -> tuple[list[Clip], np.ndarray]:
    """Clips that have every target as a number in meta, and their (N, len(targets)) values."""
    kept, rows = [], []
    for clip in clips:
        values = [target_value(clip, t) for t in targets]
        if all(v is not None for v in values):
            kept.append(clip)
            rows.append(values)
    if clips and not kept:
        fields = sorted({k for c in clips[:50] for k in c.meta})
        raise ValueError(f"task.targets: no {corpus} clip has numeric {', '.join(targets)} in its meta "
                         f"(fields seen: {', '.join(fields) or 'none'})")
    if len(kept) < len(clips):
        log.warning("%s: %d of %d clips lack a numeric %s and are left out", corpus, len(clips) - len(kept),
                    len(clips), "/".join(targets))
    return kept, np.asarray(rows, dtype=np.float64).reshape(len(kept), len(targets))


# ---------------------------------------------------------------- before encoding


@dataclass
class Selection:
    """The labelled clips of ``data`` (``train``) and of ``test_data`` (``test``; empty unless cross-corpus)."""

    train: list[Clip]
    test: list[Clip]
    classes: list[str]
    labels: dict  # how classes were chosen, for the protocol
    partitions: dict[str, str] | None
    passed_over: dict[str, str] = field(default_factory=dict)  # file -> reason, from the dataset plugins

    @property
    def clips(self) -> list[Clip]:
        """Every clip to encode: the training corpus first, then the test corpus."""
        return self.train + self.test


def load_dataset(recipe: Recipe, spec: DataSpec | None = None) -> Dataset:
    """The dataset plugin of ``spec`` (default: ``recipe.data``), with its options validated."""
    spec = spec or recipe.data
    cls, options = plugin_options("dataset", spec.dataset, spec.options)
    with blame("dataset", spec.dataset):
        return cls(spec.root, options)


def select(recipe: Recipe) -> Selection:
    """Read the corpus (and test corpus); keep the clips with what the task predicts."""
    dataset = load_dataset(recipe)
    labels: dict = {"data": _label_info(recipe.data)}
    train, classes = _task_clips(recipe, recipe.data, "data", dataset, labels["data"])
    passed = passed_over(dataset, "data")
    test: list[Clip] = []
    if recipe.test_data is not None:
        test_set = load_dataset(recipe, recipe.test_data)
        labels["test_data"] = _label_info(recipe.test_data)
        test, test_classes = _task_clips(recipe, recipe.test_data, "test_data", test_set, labels["test_data"])
        passed.update(passed_over(test_set, "test_data"))
        if recipe.task.kind == "classification":
            classes, labels["left_out"] = _shared_classes(classes, test_classes)
            train = [c for c in train if c.label in classes]
            test = [c for c in test if c.label in classes]
        _unique_ids(train, test, recipe.test_data.dataset)
    if recipe.task.kind == "classification":
        need_two_classes(classes, "data.labels (include, map) leave")
        log.info("%d clips, %d classes: %s", len(train) + len(test), len(classes), ", ".join(classes))
    with blame("dataset", recipe.data.dataset):
        partitions = dataset.partitions()
    return Selection(train, test, classes, labels, partitions, passed)


def passed_over(dataset: Dataset, role: str, shown: int = 3) -> dict[str, str]:
    """The files ``dataset.clips()`` passed over (:meth:`Dataset.skip`) as skipped entries: the file (``test_data``'s
    prefixed ``test_data:``) -> ``<dataset>: <reason>``; a warning line gives the count and the first few."""
    found = getattr(dataset, "skipped", None) or {}
    if not found:
        return {}
    prefix = "" if role == "data" else f"{role}:"
    out = {f"{prefix}{item}": f"{dataset.name}: {reason}" for item, reason in found.items()}
    first = "; ".join(f"{item}: {reason}" for item, reason in list(found.items())[:shown])
    more = f"; and {len(found) - shown} more" if len(found) > shown else ""
    log.warning("%s: the %s dataset passed over %d file(s) (%s%s); all are listed under skipped in metrics.json "
                "and report.md", role, dataset.name, len(found), first, more)
    return out


def _label_info(spec: DataSpec) -> dict:
    return {"dataset": spec.dataset, "map": spec.labels.map, "include": spec.labels.include}


def _task_clips(recipe: Recipe, spec: DataSpec, role: str, dataset: Dataset,
                info: dict | None = None) -> tuple[list[Clip], list[str]]:
    """Clips of one corpus with what the task predicts: mapped classes, or numeric targets.

    Classification: the clips left out per label (outside ``include``, or unlabelled) are warned about and
    recorded in ``info["excluded"]`` for the protocol."""
    with blame("dataset", spec.dataset):
        clips = check_clips(list(dataset.clips()), spec.dataset)
    clips = first_of_each_id(clips, dataset)
    if recipe.task.kind == "regression":
        kept, _ = regression_targets(clips, recipe.task.targets, role)
        return kept, []
    left_out = left_out_labels(clips, spec.labels)
    _warn_left_out(left_out, spec.labels, role)
    if info is not None:
        info["excluded"] = left_out
    kept, classes = apply_labels(clips, spec.labels, role)
    if not kept:
        raise ValueError(f"{role}: dataset '{spec.dataset}' at {spec.root} yielded no labelled clips")
    return kept, classes


def check_clips(clips: list[Clip], dataset: str) -> list[Clip]:
    """What a dataset plugin gave, checked: ids and labels that are strings (or no label), one line naming the
    dataset and the first clip otherwise."""
    for clip in clips:
        if not isinstance(clip.id, str) or not clip.id:
            raise PluginFailed(f"dataset '{dataset}': a clip's id is {clip.id!r}; ids are non-empty strings")
        if clip.label is not None and not isinstance(clip.label, str):
            raise PluginFailed(f"dataset '{dataset}': clip {clip.id}: label {clip.label!r} is "
                               f"{type(clip.label).__name__}; labels are strings (or None for no label)")
    return clips


def first_of_each_id(clips: list[Clip], dataset: Dataset) -> list[Clip]:
    """The clips with the first of each id: a later clip with an id already seen (a second copy of a file in
    another folder, say) is passed over through :meth:`Dataset.skip`, naming the first, so that no clip is
    counted twice."""
    first: dict[str, str] = {}
    kept = []
    shown = getattr(dataset, "_shown", str)  # the file relative to the dataset's root
    for clip in clips:
        where = shown(Path(clip.path)) if clip.path is not None else "(no file)"
        if clip.id in first:
            dataset.skip(clip.path if clip.path is not None else clip.id,
                         f"a second clip with id {clip.id} (the first: {first[clip.id]})")
            continue
        first[clip.id] = where
        kept.append(clip)
    return kept


def _shared_classes(train_classes: list[str], test_classes: list[str]) -> tuple[list[str], dict]:
    """Cross-corpus classes: those both corpora have after mapping, in data's class order."""
    shared = [c for c in train_classes if c in set(test_classes)]
    info = {"train_only": [c for c in train_classes if c not in shared],
            "test_only": [c for c in test_classes if c not in shared]}
    if not shared:
        raise ValueError(f"cross-corpus: data ({', '.join(train_classes)}) and test_data ({', '.join(test_classes)}) "
                         "share no class; map them to common names in data.labels.map / test_data.labels.map")
    if info["train_only"] or info["test_only"]:
        log.warning("cross-corpus: classes left out (not in both corpora): %s",
                    ", ".join(info["train_only"] + info["test_only"]))
    return shared, info


def _unique_ids(train: list[Clip], test: list[Clip], prefix: str) -> None:
    """Give test clips whose id is also a training id a ``prefix:`` so features do not mix."""
    seen = {c.id for c in train}
    for c in test:
        if c.id in seen:
            c.id = f"{prefix}:{c.id}"


# ---------------------------------------------------------------- after encoding


@dataclass
class Prepared:
    """Everything before the folds: clips that every encoder could take, their features, the counts.

    Cross-corpus: ``clips[:n_train]`` come from ``data`` and the rest from ``test_data``.
    Regression: ``targets`` holds the (N, T) target values of ``clips``.
    """

    clips: list[Clip]
    classes: list[str]
    features: dict[str, dict[str, np.ndarray]]  # encoder name -> clip id -> features
    sequences: dict[str, bool]
    skipped: dict[str, str]
    embeddings: dict
    partitions: dict[str, str] | None
    encode_seconds: float
    n_train: int | None = None
    targets: np.ndarray | None = None
    labels: dict = field(default_factory=dict)  # how classes were chosen, for the protocol
    copies: dict[str, list[str]] = field(default_factory=dict)  # clip id -> its augmented copies' ids (augment)
    augment: dict | None = None  # what the augment stage made, for the protocol
    digests: dict[str, str] = field(default_factory=dict)  # clip id -> audio content digest (from encoding)
    flagged: dict[str, str] = field(default_factory=dict)  # clip id -> why its audio looks silent or very short

    @property
    def train_clips(self) -> list[Clip]:
        """The clips of ``data`` (all clips unless cross-corpus)."""
        return self.clips[: self.n_train] if self.n_train is not None else self.clips

    @property
    def test_clips(self) -> list[Clip]:
        """The clips of ``test_data`` (none unless cross-corpus)."""
        return self.clips[self.n_train:] if self.n_train is not None else []


def keep_usable(recipe: Recipe, selection: Selection, encoded: Encoded) -> Prepared:
    """The clips every encoder could take, with their features; classes without a usable clip are dropped
    (cross-corpus: classes without a usable clip on both sides)."""
    features, skipped = encoded.features, encoded.skipped

    def ok(c: Clip) -> bool:
        return c.id not in skipped and all(c.id in f for f in features.values())

    train = [c for c in selection.train if ok(c)]
    test = [c for c in selection.test if ok(c)]
    all_skipped = {**selection.passed_over, **skipped}  # files the dataset passed over, then clips not encoded
    check_shapes(features, encoded.sequences, [c.id for c in train + test])
    classes, targets = selection.classes, None
    cross = recipe.test_data is not None
    if recipe.task.kind == "regression":
        targets = np.array([[target_value(c, t) for t in recipe.task.targets] for c in train + test], dtype=np.float64)
        classes = []
    elif cross:
        classes = [k for k in classes if any(c.label == k for c in train) and any(c.label == k for c in test)]
        train = [c for c in train if c.label in classes]
        test = [c for c in test if c.label in classes]
    else:
        classes = [k for k in classes if any(c.label == k for c in train)]
    if not train + test:
        raise ValueError(f"no clip of '{recipe.data.dataset}' could be used (all {len(selection.clips)} skipped"
                         f"{_commonest(encoded.skipped)})")
    if recipe.task.kind == "classification":
        need_two_classes(classes, f"the usable clips ({len(all_skipped)} skipped{_commonest(encoded.skipped)}) hold")
    if cross and (not train or not test):
        raise ValueError("cross-corpus: one side has no usable clip after skipping")
    used = {c.id for c in train + test}
    flagged = {cid: w for cid, w in sorted(encoded.flagged.items()) if cid in used}
    if flagged:
        first = next(iter(flagged.items()))
        log.warning("%d clip(s) look silent or very short and are used as they are (listed under flagged in "
                    "metrics.json; first: %s: %s)", len(flagged), *first)
    return Prepared(train + test, classes, features, encoded.sequences, all_skipped, encoded.embeddings,
                    selection.partitions, encoded.seconds, n_train=len(train) if cross else None,
                    targets=targets, labels=selection.labels, digests=encoded.digests, flagged=flagged)


def need_two_classes(classes: list[str], where: str) -> None:
    """A :class:`ValueError` when fewer than two classes are left: a classifier's scores would mean nothing."""
    if len(classes) < 2:
        held = f"only the class {classes[0]}" if classes else "no class"
        raise ValueError(f"{where} {held}; a classifier needs two or more")


def check_shapes(features: dict[str, dict[str, np.ndarray]], sequences: dict[str, bool], ids: list[str]) -> None:
    """Every encoder's features of ``ids`` have one shape (a sequence encoder: one feature size), of 1 or 2
    dimensions; else a :class:`ValueError` naming the encoder, the shapes and a clip of the odd one."""
    for name, feats in features.items():
        shapes: dict[tuple, list[str]] = {}
        for cid in ids:
            shape = tuple(np.shape(feats[cid]))
            key = shape[-1:] if sequences.get(name) else shape
            shapes.setdefault(key if 1 <= len(shape) <= 2 else ("ndim", len(shape)), []).append(cid)
        odd = [k for k in shapes if k[:1] == ("ndim",)]
        if odd:
            cid = shapes[odd[0]][0]
            raise ValueError(f"encoder '{name}': features of clip {cid} have shape {tuple(np.shape(feats[cid]))}; "
                             "expected a vector (D,), layers (L, D) or a sequence (T, D)")
        if len(shapes) > 1:
            what = "feature sizes" if sequences.get(name) else "feature shapes"
            seen = ", ".join(f"{k} for {len(v)} clip(s) (e.g. {v[0]})"
                             for k, v in sorted(shapes.items(), key=lambda kv: -len(kv[1])))
            raise ValueError(f"encoder '{name}' gave clips different {what}: {seen}")


def _commonest(skipped: dict[str, str]) -> str:
    """``; most often: REASON (N clips)`` for the commonest skip reason, or an empty string."""
    if not skipped:
        return ""
    reason, n = Counter(skipped.values()).most_common(1)[0]
    return f"; most often: {reason} ({n} clip{'s' if n != 1 else ''})"


# ---------------------------------------------------------------- normalisation


def normalize(recipe: Recipe, prep: Prepared) -> Prepared:
    """``prep`` with its features z-scored per ``recipe.normalize`` group (itself when that is ``none``).

    Each group's clips (a corpus, or a speaker) are standardised with that group's own mean and
    standard deviation, per feature. It uses the test clips' features (never their labels), as
    speaker/corpus normalisation does in the SER literature; the protocol records it.
    """
    if recipe.normalize == "none":
        return prep
    test_ids = {c.id for c in prep.test_clips}
    return replace(prep, features=normalize_features(prep.features, prep.sequences, prep.clips, recipe.normalize,
                                                     test_ids))


def group_of(clip: Clip, mode: str, test_ids: set[str]) -> str:
    """The normalisation group of a clip: its speaker, or its corpus (``data`` / ``test_data``)."""
    if mode == "speaker":
        return clip.speaker
    return "test_data" if clip.id in test_ids else "data"


NORMALIZE_EPS = 1e-6
"""A feature whose standard deviation in a group is at most this is only centred (divided by 1)."""


@dataclass(frozen=True)
class GroupStats:
    """One group's per-feature mean and standard deviation (float64, the shape of one clip's features)."""

    mean: np.ndarray
    std: np.ndarray

    def scale(self, eps: float = NORMALIZE_EPS) -> np.ndarray:
        """The divisor of the z-score: the std, or 1 where the std is at most ``eps`` (a constant feature)."""
        return np.where(self.std > eps, self.std, 1.0)


def group_stats(rows) -> GroupStats:
    """The mean and (population) standard deviation over the clips of one group, per feature."""
    block = np.stack([np.asarray(r, dtype=np.float64) for r in rows])
    return GroupStats(block.mean(axis=0), block.std(axis=0))


def apply_stats(rows, stats: GroupStats, eps: float = NORMALIZE_EPS) -> np.ndarray:
    """``rows`` (stacked) z-scored with ``stats``, as float32: the one formula of training and of bundles."""
    block = np.stack([np.asarray(r, dtype=np.float64) for r in rows])
    if block.shape[1:] != stats.mean.shape:
        raise ValueError(f"features of shape {block.shape[1:]} cannot be normalised with statistics of shape "
                         f"{stats.mean.shape}")
    return ((block - stats.mean) / stats.scale(eps)).astype(np.float32)


def normalize_features(features: dict[str, dict[str, np.ndarray]], sequences: dict[str, bool], clips: list[Clip],
                       mode: str, test_ids: set[str] = frozenset(), eps: float = NORMALIZE_EPS) -> dict:
    """New features dict: pooled encoders z-scored per group; sequence encoders are refused."""
    if mode == "none":
        return features
    seq = [name for name, is_seq in sequences.items() if is_seq]
    if seq:
        raise ValueError(f"normalize: {mode} needs pooled features; {', '.join(seq)} give frame sequences")
    groups: dict[str, list[str]] = {}
    for c in clips:
        groups.setdefault(group_of(c, mode, test_ids), []).append(c.id)
    out = {}
    for name, feats in features.items():
        new = {}
        for ids in groups.values():
            rows = [feats[i] for i in ids]
            z = apply_stats(rows, group_stats(rows), eps)
            new.update({i: z[k] for k, i in enumerate(ids)})
        out[name] = new
    return out


def corpus_stats(features: dict[str, dict[str, np.ndarray]], clips: list[Clip]) -> dict[str, GroupStats]:
    """Each encoder's statistics over ``clips`` (raw features): what ``normalize: corpus`` uses for that corpus."""
    return {name: group_stats([feats[c.id] for c in clips]) for name, feats in features.items()}
