"""``ravdess``: the RAVDESS audio files, labels parsed from the 7-part file name.

Layout: ``ROOT/Actor_01/03-01-05-02-01-01-01.wav`` (or .flac; any depth is searched), for the
speech part and, when present, the song part (``02`` in the channel position; the song files
are distributed in their own Actor_XX folders, which may sit under the same ROOT).
Name parts: modality-channel-emotion-intensity-statement-repetition-actor:
emotion 01..08 = neutral, calm, happy, sad, angry, fearful, disgust, surprised (song has no
disgust nor surprised); intensity 01 normal, 02 strong (neutral has only normal); statement
01 "Kids are talking by the door", 02 "Dogs are sitting by the door"; odd actors are male.
Only audio-only files (modality 03) are read: the video files of the distribution are not audio.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Clip, Dataset, Options
from fusionkit_plugins.datasets.common import audio_files, corpus_dir

EMOTIONS = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust", 8: "surprised"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


class RavdessOptions(Options):
    channel: Literal["speech", "song", "both"] = Field("speech", description="vocal channel to keep")
    intensity: Literal["normal", "strong", "both"] = Field("both", description="emotional intensity to keep")
    gender: Literal["male", "female", "both"] = Field("both", description="actors to keep")


def parse_name(stem: str) -> dict | None:
    m = NAME.match(stem)
    if not m:
        return None
    modality, channel, emotion, intensity, statement, repetition, actor = map(int, m.groups())
    if modality != 3 or channel not in (1, 2) or emotion not in EMOTIONS or statement not in STATEMENTS:
        return None
    return {
        "modality": modality,
        "channel": "speech" if channel == 1 else "song",
        "emotion": EMOTIONS[emotion],
        "intensity": "normal" if intensity == 1 else "strong",
        "statement": statement,
        "repetition": repetition,
        "actor": actor,
        "gender": "male" if actor % 2 else "female",
    }


class Ravdess(Dataset):
    """RAVDESS (Livingstone & Russo 2018): 24 actors, 8 emotions, 2 statements."""

    name = "ravdess"
    description = "RAVDESS speech/song: emotion, intensity, statement text, actor, gender from file names"
    Options = RavdessOptions

    def clips(self) -> list[Clip]:
        o = self.options
        out = []
        for path in audio_files(corpus_dir(self.root, self.name), self):
            info = parse_name(path.stem)
            if info is None:
                self.skip(path, "not a RAVDESS audio file name (e.g. 03-01-05-02-01-01-01.wav)")
                continue
            if o.channel != "both" and info["channel"] != o.channel:
                continue
            if o.intensity != "both" and info["intensity"] != o.intensity:
                continue
            if o.gender != "both" and info["gender"] != o.gender:
                continue
            out.append(Clip(
                id=path.stem, path=path, label=info["emotion"], speaker=f"actor{info['actor']:02d}",
                text=STATEMENTS[info["statement"]], meta=info,
            ))
        return out


@hookimpl
def register_datasets(register):
    register(Ravdess)
