"""``crema-d``: CREMA-D (Cao et al. 2014), 91 actors, 12 English sentences, 6 emotions.

Layout: ``ROOT/AudioWAV/1001_DFA_ANG_XX.wav`` (or ``.flac``; any depth is searched), and
optionally ``ROOT/VideoDemographics.csv`` (ActorID, Age, Sex, Race, Ethnicity), whose
columns are copied into each clip's meta (gender from Sex).
File name: ActorID_Sentence_Emotion_Level; emotions ANG DIS FEA HAP NEU SAD; levels LO, MD,
HI, XX (unspecified).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Literal

from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Clip, Dataset, Options
from fusionkit_plugins.datasets.common import audio_files, corpus_dir

EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock.",
    "TIE": "That is exactly what happened.",
    "IOM": "I'm on my way to the meeting.",
    "IWW": "I wonder what this is about.",
    "TAI": "The airplane is almost full.",
    "MTI": "Maybe tomorrow it will be cold.",
    "IWL": "I would like a new alarm clock.",
    "ITH": "I think I have a doctor's appointment.",
    "DFA": "Don't forget a jacket.",
    "ITS": "I think I've seen this before.",
    "TSI": "The surface is slick.",
    "WSI": "We'll stop in a couple of minutes.",
}
NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


class CremaDOptions(Options):
    level: Literal["any", "low", "medium", "high", "unspecified"] = Field(
        "any", description="keep only clips acted at this intensity level")


def parse_name(stem: str) -> dict | None:
    """Labels from a CREMA-D file stem such as ``1001_DFA_ANG_XX``; None when it is not one."""
    m = NAME.match(stem)
    if not m:
        return None
    actor, sentence, emotion, level = m.groups()
    if emotion not in EMOTIONS or sentence not in SENTENCES or level not in LEVELS:
        return None
    return {"actor": actor, "sentence": sentence, "emotion": EMOTIONS[emotion], "level": LEVELS[level]}


def read_demographics(path: Path) -> dict[str, dict]:
    """ActorID -> its row of VideoDemographics.csv (gender added from Sex)."""
    out = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            actor = str(row.get("ActorID", "")).strip()
            if actor:
                sex = str(row.get("Sex", "")).strip().lower()
                out[actor] = {"age": row.get("Age"), "gender": sex or None,
                              "race": row.get("Race"), "ethnicity": row.get("Ethnicity")}
    return out


class CremaD(Dataset):
    """CREMA-D: 7442 clips from 91 actors; labels are the emotion the actor was asked for."""

    name = "crema-d"
    description = "CREMA-D: 6 emotions, intensity level, sentence text, actor (demographics when present)"
    Options = CremaDOptions

    def clips(self) -> list[Clip]:
        root = corpus_dir(self.root, self.name)
        demo_file = next(iter(sorted(root.rglob("VideoDemographics.csv"))), None)
        demographics = read_demographics(demo_file) if demo_file else {}
        out = []
        for path in audio_files(root, self):
            info = parse_name(path.stem)
            if info is None:
                self.skip(path, "not a CREMA-D file name (e.g. 1001_DFA_ANG_XX.wav)")
                continue
            if self.options.level != "any" and info["level"] != self.options.level:
                continue
            meta = {**info, **demographics.get(info["actor"], {})}
            out.append(Clip(id=path.stem, path=path, label=info["emotion"], speaker=f"cremad{info['actor']}",
                            text=SENTENCES[info["sentence"]], meta=meta))
        return out


@hookimpl
def register_datasets(register):
    register(CremaD)
