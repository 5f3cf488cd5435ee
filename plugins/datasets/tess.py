"""``tess``: the Toronto Emotional Speech Set (Dupuis & Pichora-Fuller 2010).

Two actresses (``OAF`` aged 64, ``YAF`` aged 26) say "Say the word _" with 200 target
words in 7 emotions: 2800 clips.

Layout: ``ROOT/OAF_angry/OAF_back_angry.wav`` (or ``.flac``; any depth is searched).
File name: speaker prefix, word, emotion (``angry disgust fear happy neutral ps sad``;
``ps`` is pleasant surprise, mapped to ``surprised``).
Known oddities of the distributed copies are tolerated: folder names whose case differs
from the files (``OAF_Fear``, ``YAF_neutral``, ``OAF_Pleasant_surprise``,
``YAF_pleasant_surprised``), a few files with the short prefix ``OA_``, misspelled or
long-form emotion words (``neautral``, ``fearful``, ``pleasant_surprise``), and the renamed
copies of commonly redistributed sets, ``testnew/<n>test<original>.wav`` (e.g.
``testnew/12testOAF_back_angry.wav``; the clip id is the original name). When the file name
carries no emotion word the folder name is used. Audio is read by its content, so AIFF data in
a ``.wav`` file and any sample rate are read like the rest. Every file passed over (a name of
no TESS form, a second copy of a recording) is reported with the reason.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Clip, Dataset, Options
from fusionkit_plugins.datasets.common import audio_files, corpus_dir

log = logging.getLogger("fusionkit")

EMOTIONS = {
    "angry": "angry", "anger": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fearful", "fearful": "fearful",
    "happy": "happy", "happiness": "happy",
    "neutral": "neutral", "neautral": "neutral", "nuetral": "neutral",
    "ps": "surprised", "pleasant_surprise": "surprised", "pleasant_surprised": "surprised",
    "surprise": "surprised", "surprised": "surprised",
    "sad": "sad", "sadness": "sad",
}
SPEAKERS = {"OAF": ("older", 64), "OA": ("older", 64), "YAF": ("younger", 26), "YA": ("younger", 26)}
PREFIX = re.compile(r"^(OAF|YAF|OA|YA)_(.+)$", re.IGNORECASE)
RENAMED = re.compile(r"^\d+[ _-]?test[ _-]?(.+)$", re.IGNORECASE)  # testnew/12testOAF_back_angry.wav
BAD_NAME = "not a TESS file name (e.g. OAF_back_angry.wav, or testnew/12testOAF_back_angry.wav)"


def original_stem(stem: str) -> str:
    """The TESS name inside a renamed copy's stem (``12testOAF_back_angry`` -> ``OAF_back_angry``)."""
    m = RENAMED.match(stem)
    return m.group(1) if m and PREFIX.match(m.group(1)) else stem


def emotion_of(text: str) -> tuple[str | None, int]:
    """The class named at the end of a TESS file or folder name, and how many ``_`` tokens name it."""
    tokens = text.lower().split("_")
    for n in (2, 1):  # two-word forms first: pleasant_surprise
        if len(tokens) > n - 1 and "_".join(tokens[-n:]) in EMOTIONS:
            return EMOTIONS["_".join(tokens[-n:])], n
    return None, 0


def parse_name(stem: str, folder: str = "") -> dict | None:
    """Speaker, word and emotion from ``OAF_back_angry`` (the folder name fills a missing emotion)."""
    m = PREFIX.match(stem)
    if not m:
        return None
    prefix, rest = m.group(1).upper(), m.group(2)
    from_file, n = emotion_of(rest)
    from_folder = emotion_of(folder)[0] if folder else None
    emotion = from_file or from_folder
    tokens = rest.split("_")
    word = "_".join(tokens[:-n] if n else tokens).lower()
    if emotion is None or not word:
        return None
    group, age = SPEAKERS[prefix]
    info = {"speaker": prefix if prefix.endswith("F") else prefix + "F", "word": word, "emotion": emotion,
            "age": age, "age_group": group, "gender": "female"}
    if from_file and from_folder and from_file != from_folder:
        info["folder_emotion"] = from_folder
    return info


class Tess(Dataset):
    """TESS: 2 speakers, 200 words, 7 emotions."""

    name = "tess"
    description = "TESS (Toronto): 2 actresses, 200 words, 7 emotions; tolerates the known naming oddities"
    Options = Options

    def clips(self) -> list[Clip]:
        root = corpus_dir(self.root, self.name)
        out: list[Clip] = []
        seen: dict[str, str] = {}
        for path in audio_files(root, self):
            clip = self._clip(path)
            if clip is None:
                self.skip(path, BAD_NAME)
            elif clip.id in seen:
                self.skip(path, f"a second copy of {clip.id} (first: {seen[clip.id]})")
            else:
                seen[clip.id] = path.relative_to(root).as_posix()
                out.append(clip)
        return out

    def _clip(self, path: Path) -> Clip | None:
        """The clip of one audio file, or None when its name is of no TESS form."""
        stem = original_stem(path.stem)
        info = parse_name(stem, path.parent.name)
        if info is None:
            return None
        if "folder_emotion" in info:
            log.warning("%s: file name says %s, folder says %s; the file name is used",
                        path, info["emotion"], info["folder_emotion"])
        if stem != path.stem:
            info["file"] = path.name
        return Clip(id=stem, path=path, label=info["emotion"], speaker=info["speaker"],
                    text=f"Say the word {info['word']}.", meta=info)


@hookimpl
def register_datasets(register):
    register(Tess)
