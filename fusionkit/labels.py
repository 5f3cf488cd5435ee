"""Class selection and mapping from the recipe's ``data.labels``."""

from __future__ import annotations

from fusionkit.interfaces import Clip
from fusionkit.recipe import LabelSpec


def apply_labels(clips: list[Clip], spec: LabelSpec) -> tuple[list[Clip], list[str]]:
    """Map labels, keep the included classes, drop unlabelled clips; return (clips, classes)."""
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
    classes = [c for c in spec.include if c in present] if spec.include else sorted(present)
    return kept, classes
