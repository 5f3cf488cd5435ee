"""Helpers shared by the corpus readers: finding audio files, checking the root folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fusionkit.sdk.base import Dataset

AUDIO_SUFFIXES = frozenset({".wav", ".flac"})
OTHER_AUDIO_SUFFIXES = frozenset({".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".au", ".wma"})
"""Audio the corpus readers do not take: passed over with the reason, never silently."""


class CorpusError(ValueError):
    """A corpus folder that cannot be read as the dataset expects (one line, naming the path)."""


def corpus_dir(root: Path | str | None, dataset: str) -> Path:
    """``root`` as a Path, or a clear error when it is missing or not a folder."""
    if root is None:
        raise CorpusError(f"the {dataset} dataset needs data.root (the corpus folder)")
    path = Path(root)
    if not path.is_dir():
        raise CorpusError(f"{path}: not a folder (the {dataset} dataset needs the corpus folder)")
    return path


HIDDEN_REASON = "hidden file (its name starts with '.', e.g. a macOS ._ file)"
DANGLING_REASON = "not a readable file (a link to nothing?)"


def audio_files(root: Path | str, dataset: Dataset | None = None) -> list[Path]:
    """Every .wav/.flac file under ``root`` at any depth, sorted; hidden files, links to nothing and audio of
    other formats (.mp3, ...) are left out, and reported through ``dataset.skip`` when a dataset is given."""
    out = []
    for p in sorted(Path(root).rglob("*")):
        suffix = p.suffix.lower()
        if suffix in OTHER_AUDIO_SUFFIXES and dataset is not None and not p.name.startswith("."):
            dataset.skip(p, f"a {suffix} file: corpus readers take .wav and .flac (convert it, e.g. with ffmpeg)")
            continue
        if suffix not in AUDIO_SUFFIXES or p.is_dir():
            continue
        reason = HIDDEN_REASON if p.name.startswith(".") else None if p.is_file() else DANGLING_REASON
        if reason is None:
            out.append(p)
        elif dataset is not None:
            dataset.skip(p, reason)
    return out


def audio_index(root: Path | str) -> dict[str, Path]:
    """File stem -> path for every audio file under ``root`` (the .wav wins over a .flac twin)."""
    out: dict[str, Path] = {}
    for p in audio_files(root):
        if p.stem not in out or p.suffix.lower() == ".wav":
            out[p.stem] = p
    return out


def to_float(value) -> float | None:
    """A number from a label file cell, or None for blanks and non-numbers."""
    try:
        out = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return out if out == out else None  # NaN -> None
