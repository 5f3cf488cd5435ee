"""Choosing what is predicted: class selection and mapping (``data.labels``), or regression targets."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from fusionkit.sdk.base import Clip
from fusionkit.recipe import LabelSpec

log = logging.getLogger("fusionkit")


def apply_labels(clips: list[Clip], spec: LabelSpec, corpus: str = "data") -> tuple[list[Clip], list[str]]:
    """Map labels (rename or merge), keep the included classes, drop unlabelled clips.

    Returns (clips, classes): classes in ``include`` order when given, else sorted. The
    clip's label before mapping is kept in ``meta["original_label"]``. Map keys and
    included classes that the corpus never yields are warned about (typos are common).
    """
    before = Counter(c.label for c in clips if c.label is not None)
    unused = sorted(k for k in spec.map if k not in before)
    if unused:
        log.warning("%s.labels.map: %s never occur (corpus labels: %s)", corpus, ", ".join(unused), ", ".join(sorted(before)))
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
    if spec.include:
        absent = [c for c in spec.include if c not in present]
        if absent:
            log.warning("%s.labels.include: no clip is labelled %s after mapping", corpus, ", ".join(absent))
    classes = [c for c in spec.include if c in present] if spec.include else sorted(present)
    return kept, classes


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
