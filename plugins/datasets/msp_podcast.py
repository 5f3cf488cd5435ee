"""``msp-podcast``: MSP-Podcast (Lotfian & Busso 2019), podcast speech with crowd-sourced labels.

Layout::

    ROOT/Labels/labels_consensus.csv   FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set
    ROOT/Audios/MSP-PODCAST_0001_0008.wav   (or .flac; any depth under Audios/)
    ROOT/Transcripts/MSP-PODCAST_0001_0008.txt   (optional)

EmoClass letters: A angry, S sad, H happy, U surprised, F fearful, D disgust, C contempt,
N neutral, O other, X no agreement (no label; such clips still count for regression).
Arousal (EmoAct), valence (EmoVal) and dominance (EmoDom), 1..7, are in meta as ``arousal``,
``valence``, ``dominance``. ``partitions()`` gives Split_Set as ``train`` (Train), ``dev``
(Development), ``test`` (Test1), ``test2`` (Test2), ``test3`` (Test3): use ``split: {kind:
predefined}``. Speakers marked Unknown get one pseudo-speaker per clip, so speaker splits
of this corpus are only approximately speaker-independent; prefer the predefined partitions.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Clip, Dataset, Options
from fusionkit_plugins.datasets.common import CorpusError, audio_index, corpus_dir, to_float

log = logging.getLogger("fusionkit")

CLASSES = {"A": "angry", "S": "sad", "H": "happy", "U": "surprised", "F": "fearful", "D": "disgust",
           "C": "contempt", "N": "neutral", "O": "other", "X": None}
PARTITIONS = {"train": "train", "development": "dev", "dev": "dev", "test1": "test", "test": "test",
              "test2": "test2", "test3": "test3"}
REQUIRED = ("FileName", "EmoClass", "SpkrID", "Split_Set")
LABELS_FILE = Path("Labels") / "labels_consensus.csv"


def read_labels(path: Path) -> list[dict]:
    """Rows of labels_consensus.csv, checked for the columns this reader needs."""
    if not path.exists():
        raise CorpusError(f"{path}: labels file not found (expected ROOT/{LABELS_FILE.as_posix()})")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise CorpusError(f"{path}: missing column(s) {', '.join(missing)}")
        return list(reader)


class MspPodcast(Dataset):
    """MSP-Podcast: categorical and dimensional labels with predefined partitions."""

    name = "msp-podcast"
    description = "MSP-Podcast: categorical + arousal/valence/dominance, predefined Train/Development/Test sets"
    Options = Options

    def __init__(self, root, options):
        super().__init__(root, options)
        self._clips: list[Clip] | None = None

    def clips(self) -> list[Clip]:
        if self._clips is not None:
            return self._clips
        root = corpus_dir(self.root, self.name)
        rows = read_labels(root / LABELS_FILE)
        audio_dir = root / "Audios"
        index = audio_index(audio_dir) if audio_dir.is_dir() else {}
        transcripts = root / "Transcripts"
        out, unknown_class = [], set()
        for n, row in enumerate(rows, 2):
            name = (row.get("FileName") or "").strip()
            if not name:
                self.skip(f"{LABELS_FILE.as_posix()}:{n}", "empty FileName")
                continue
            stem = Path(name).stem
            code = (row.get("EmoClass") or "").strip().upper()
            if code not in CLASSES:
                unknown_class.add(code)
            spk = (row.get("SpkrID") or "").strip()
            speaker = f"msp{spk}" if spk and spk.lower() != "unknown" else f"unknown-{stem}"
            text_file = transcripts / f"{stem}.txt"
            text = text_file.read_text(encoding="utf-8", errors="replace").strip() if text_file.exists() else None
            split = (row.get("Split_Set") or "").strip()
            meta = {"emo_class": code, "arousal": to_float(row.get("EmoAct")), "valence": to_float(row.get("EmoVal")),
                    "dominance": to_float(row.get("EmoDom")),
                    "gender": (row.get("Gender") or "").strip().lower() or None,
                    "split_set": split, "partition": PARTITIONS.get(split.lower(), split.lower() or None)}
            out.append(Clip(id=stem, path=index.get(stem), label=CLASSES.get(code), speaker=speaker, text=text,
                            meta=meta))
        if unknown_class:
            log.warning("%s: unknown EmoClass value(s) %s left unlabelled", root / LABELS_FILE,
                        ", ".join(sorted(unknown_class)))
        self._clips = out
        return out

    def partitions(self) -> dict[str, str] | None:
        parts = {c.id: c.meta["partition"] for c in self.clips() if c.meta.get("partition")}
        return parts or None


@hookimpl
def register_datasets(register):
    register(MspPodcast)
