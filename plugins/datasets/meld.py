"""``meld``: MELD (Poria et al. 2019), utterances from the TV series Friends, from its CSV files.

Layout: ``ROOT/train_sent_emo.csv``, ``ROOT/dev_sent_emo.csv``, ``ROOT/test_sent_emo.csv`` (columns
``Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season, Episode,
StartTime, EndTime``). Clip ids are ``<partition>_dia<D>_utt<U>``; the speaker is the character.
The partitions are MELD's own, so ``split: {kind: predefined, train: [train], test: [test]}``
reproduces the usual protocol.

Audio is optional. With ``media_dir`` set, each clip gets the file ``dia<D>_utt<U>.<ext>`` found
in the partition's folder under it (``train``/``train_splits``, ``dev``/``dev_splits_complete``,
``test``/``output_repeated_splits_test``); otherwise ``clip.path`` is None and only text
encoders can be used.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Clip, Dataset, Options

log = logging.getLogger("fusionkit")

PARTITIONS = ("train", "dev", "test")
CSV_NAMES = {p: f"{p}_sent_emo.csv" for p in PARTITIONS}
REQUIRED_COLUMNS = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")
# folder names MELD's media archives unpack to, per partition (first found wins)
MEDIA_FOLDERS = {
    "train": ("train", "train_splits"),
    "dev": ("dev", "dev_splits_complete", "dev_splits"),
    "test": ("test", "output_repeated_splits_test", "test_splits"),
}
MEDIA_SUFFIXES = (".wav", ".flac", ".mp4")  # preferred first: soundfile reads wav/flac, not mp4

# Mojibake seen in MELD's distributed CSVs: Windows-1252 punctuation that went through Latin-1
# (U+0092 and friends, sometimes after a stray "Â"), and UTF-8 read as Windows-1252 ("â€™").
_MOJIBAKE = {
    "â€™": "'", "â€˜": "'", "â€œ": '"', "â€\x9d": '"', "â€¦": "...", "â€”": "-", "â€“": "-",
    "Â\x91": "'", "Â\x92": "'", "Â\x93": '"', "Â\x94": '"', "Â\x85": "...", "Â\x96": "-", "Â\x97": "-",
    "\x91": "'", "\x92": "'", "\x93": '"', "\x94": '"', "\x85": "...", "\x96": "-", "\x97": "-",
    "Â\xa0": " ", "\xa0": " ",
}
# typographic punctuation -> ASCII (tokenizers and TF-IDF-style features see one apostrophe)
_TYPOGRAPHIC = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2026": "...",
                "\u2014": "-", "\u2013": "-"}
_MOJIBAKE_RE = re.compile("|".join(re.escape(k) for k in sorted(_MOJIBAKE, key=len, reverse=True)))
_TYPO_RE = re.compile("|".join(map(re.escape, _TYPOGRAPHIC)))
_SPACES = re.compile(r"\s+")


class MeldError(ValueError):
    """A MELD file that cannot be read as expected (one line naming the file and the reason)."""


class MeldOptions(Options):
    label: Literal["emotion", "sentiment"] = Field("emotion", description="7 emotions or 3 sentiments")
    partitions: list[Literal["train", "dev", "test"]] = Field(
        default_factory=lambda: list(PARTITIONS), description="which CSV files to read")
    media_dir: str | None = Field(None, description="folder with MELD's audio/video (dia<D>_utt<U>.wav/.flac/.mp4)")
    ascii_punctuation: bool = Field(True, description="turn curly quotes, dashes and ellipses into ASCII")
    context: int = Field(0, ge=0, le=20, description="dialogue context: each text becomes 'Speaker: utterance', "
                                                     "followed by the previous N utterances of its dialogue with "
                                                     "their speakers (0: the utterance alone)")


def with_context(clips: list[Clip], k: int) -> None:
    """Give each clip's text its speaker and the previous ``k`` utterances of its dialogue (in order), in place.

    The target comes first, so a text encoder that truncates drops the oldest context, never the utterance."""
    by_dialogue: dict[tuple[str, int], list[Clip]] = {}
    for c in clips:
        by_dialogue.setdefault((c.meta["partition"], c.meta["dialogue"]), []).append(c)
    lines = {c.id: f"{c.speaker}: {c.text or ''}" for c in clips}
    for turns in by_dialogue.values():
        turns.sort(key=lambda c: c.meta["utterance"])
        for i, c in enumerate(turns):
            before = [lines[t.id] for t in turns[max(0, i - k) : i]]
            c.text = lines[c.id] + (" | context: " + " | ".join(before) if before else "")


def clean_text(text: str, ascii_punctuation: bool = True) -> str:
    """Repair MELD's mojibake, optionally make punctuation ASCII, collapse whitespace."""
    out = _MOJIBAKE_RE.sub(lambda m: _MOJIBAKE[m.group(0)], text)
    if ascii_punctuation:
        out = _TYPO_RE.sub(lambda m: _TYPOGRAPHIC[m.group(0)], out)
    return _SPACES.sub(" ", out).strip()


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of one MELD CSV (UTF-8, or Windows-1252 where it is not valid UTF-8)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    # not str.splitlines(): it breaks lines at U+0085 and U+2028, which MELD's mojibake contains
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise MeldError(f"{path}: missing column(s) {', '.join(missing)}")
    return [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]


def media_index(media_dir: Path, partition: str) -> dict[str, Path]:
    """``dia<D>_utt<U>`` -> media file, from the first of the partition's folders that exists."""
    for name in MEDIA_FOLDERS[partition]:
        folder = media_dir / name
        if folder.is_dir():
            found: dict[str, Path] = {}
            with os.scandir(folder) as entries:
                for e in entries:
                    stem, suffix = os.path.splitext(e.name)
                    if suffix.lower() not in MEDIA_SUFFIXES or e.name.startswith("."):
                        continue
                    old = found.get(stem)
                    if old is None or MEDIA_SUFFIXES.index(suffix.lower()) < MEDIA_SUFFIXES.index(old.suffix.lower()):
                        found[stem] = Path(e.path)
            return found
    return {}


class Meld(Dataset):
    """MELD text (and audio, where the media are given), with its train/dev/test partitions."""

    name = "meld"
    modality = "text+audio"
    description = "MELD (Friends) utterances: 7 emotions or 3 sentiments, train/dev/test, text with optional audio"
    Options = MeldOptions
    _partitions: dict[str, str] | None = None

    def _root(self) -> Path:
        if self.root is None:
            raise MeldError("the meld dataset needs data.root (the folder with *_sent_emo.csv)")
        root = Path(self.root)
        if not root.is_dir():
            raise MeldError(f"{root}: not a folder (the meld dataset needs the folder with *_sent_emo.csv)")
        return root

    def clips(self) -> list[Clip]:
        o = self.options
        root = self._root()
        media = Path(o.media_dir).expanduser() if o.media_dir else None
        if media is not None and not media.is_dir():
            raise MeldError(f"{media}: media_dir is not a folder")
        out: list[Clip] = []
        for part in o.partitions:
            path = root / CSV_NAMES[part]
            if not path.is_file():
                raise MeldError(f"{path}: not found (MELD partition '{part}')")
            files = media_index(media, part) if media is not None else {}
            if media is not None and not files:
                log.warning("%s: no media for MELD partition '%s' (looked in %s)", media, part,
                            ", ".join(MEDIA_FOLDERS[part]))
            clips = self._rows_to_clips(path, part, read_csv(path), files)
            if o.context:
                with_context(clips, o.context)
            out += clips
        self._partitions = {c.id: c.meta["partition"] for c in out}
        return out

    def _rows_to_clips(self, path: Path, part: str, rows: list[dict], files: dict[str, Path]) -> list[Clip]:
        o = self.options
        out = []
        for n, row in enumerate(rows, 2):
            try:
                dia, utt = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
            except ValueError:
                raise MeldError(f"{path}:{n}: Dialogue_ID/Utterance_ID must be integers, got "
                                f"{row['Dialogue_ID']!r}/{row['Utterance_ID']!r}") from None
            label = row["Emotion" if o.label == "emotion" else "Sentiment"].strip().lower() or None
            stem = f"dia{dia}_utt{utt}"
            text = clean_text(row["Utterance"], o.ascii_punctuation)
            meta = {
                "partition": part, "dialogue": dia, "utterance": utt,
                "emotion": row["Emotion"].strip().lower(), "sentiment": row["Sentiment"].strip().lower(),
                "season": row.get("Season", ""), "episode": row.get("Episode", ""),
                "start": row.get("StartTime", ""), "end": row.get("EndTime", ""),
            }
            out.append(Clip(id=f"{part}_{stem}", path=files.get(stem), label=label,
                            speaker=clean_text(row["Speaker"]) or "unknown", text=text or None, meta=meta))
        return out

    def partitions(self) -> dict[str, str]:
        """Clip id -> MELD partition (train/dev/test)."""
        if self._partitions is None:
            self.clips()
        return dict(self._partitions or {})


@hookimpl
def register_datasets(register):
    register(Meld)
