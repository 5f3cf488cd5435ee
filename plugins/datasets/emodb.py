"""``emodb``: the Berlin Database of Emotional Speech (Burkhardt et al. 2005), German.

Layout: ``ROOT/wav/03a01Fa.wav`` (or ``.flac``; any depth under ROOT is searched).
File name: speaker (2 digits), sentence code (a01..b10), emotion letter, version letter.
Emotion letters: W anger -> ``angry``, L boredom -> ``boredom``, E disgust -> ``disgust``,
A fear -> ``fearful``, F happiness -> ``happy``, T sadness -> ``sad``, N -> ``neutral``.
The class names are those of RAVDESS where the emotion is the same, so that
cross-corpus recipes can use the shared classes directly.
"""

from __future__ import annotations

import re

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Clip, Dataset, Options
from fusionkit_plugins.datasets.common import audio_files, corpus_dir

EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral"}
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
# speaker: (gender, age) as documented with the corpus
SPEAKERS = {
    "03": ("male", 31), "08": ("female", 34), "09": ("female", 21), "10": ("male", 32), "11": ("male", 26),
    "12": ("male", 30), "13": ("female", 32), "14": ("female", 35), "15": ("male", 25), "16": ("female", 31),
}
NAME = re.compile(r"^(\d{2})([ab]\d{2})([WLEAFTN])([a-z])$")


def parse_name(stem: str) -> dict | None:
    """Labels from an EmoDB file stem such as ``03a01Fa``; None when it is not one."""
    m = NAME.match(stem)
    if not m:
        return None
    speaker, sentence, letter, version = m.groups()
    gender, age = SPEAKERS.get(speaker, (None, None))
    return {
        "speaker": speaker,
        "sentence": sentence,
        "emotion_letter": letter,
        "emotion": EMOTIONS[letter],
        "version": version,
        "gender": gender,
        "age": age,
    }


class EmoDB(Dataset):
    """EmoDB: 10 actors (5 female, 5 male), 10 German sentences, 7 emotions, 535 clips."""

    name = "emodb"
    description = "EmoDB (German): 7 emotions, speaker, gender, sentence code and text from file names"
    Options = Options

    def clips(self) -> list[Clip]:
        root = corpus_dir(self.root, self.name)
        out = []
        for path in audio_files(root, self):
            info = parse_name(path.stem)
            if info is None:
                self.skip(path, "not an EmoDB file name (e.g. 03a01Fa.wav)")
                continue
            out.append(Clip(id=path.stem, path=path, label=info["emotion"], speaker=f"emodb{info['speaker']}",
                            text=SENTENCES.get(info["sentence"]), meta=info))
        return out


@hookimpl
def register_datasets(register):
    register(EmoDB)
