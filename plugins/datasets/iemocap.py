"""``iemocap``: IEMOCAP (Busso et al. 2008), 5 sessions of dyadic dialogues, one actress and one actor each.

Layout (as distributed)::

    ROOT/Session1/dialog/EmoEvaluation/Ses01F_impro01.txt   categorical + [V, A, D] labels per turn
    ROOT/Session1/dialog/transcriptions/Ses01F_impro01.txt  "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
    ROOT/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav   (or .flac)

Evaluation lines read: ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``.
The speaker is the session plus the gender letter of the turn's last id part
(``Ses01F_impro01_F000`` -> ``Ses01_F``); the session (``Ses01``) is in meta for
leave-one-session-out. Valence, arousal and dominance (1..5) are in meta for regression.

Classes: ``classes: four`` (default) keeps the customary set neutral, happy, angry, sad, with
excited merged into happy (``merge_excited: false`` keeps excited apart, as a fifth class);
``classes: all`` keeps every category (frustrated, surprised, fearful, disgust, other too).
Turns without a majority label (``xxx``) have no label (they still count for regression).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Clip, Dataset, Options
from fusionkit_plugins.datasets.common import CorpusError, corpus_dir

log = logging.getLogger("fusionkit")

CODES = {
    "neu": "neutral", "hap": "happy", "exc": "excited", "ang": "angry", "sad": "sad", "fru": "frustrated",
    "sur": "surprised", "fea": "fearful", "dis": "disgust", "oth": "other", "xxx": None,
}
FOUR = ("neutral", "happy", "angry", "sad")
EVAL_LINE = re.compile(
    r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(Ses\S+)\s+(\w+)\s+\[\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*\]")
TRANSCRIPT_LINE = re.compile(r"^(Ses\S+)\s+\[[\d.]+\s*-\s*[\d.]+\]:\s*(.*)$")
TURN_ID = re.compile(r"^(Ses\d{2})([FM])_(.+)_([FM])(\d+)$")


class IemocapOptions(Options):
    classes: Literal["four", "all"] = Field("four", description="the customary 4 classes, or every category")
    merge_excited: bool = Field(True, description="label excited turns happy")
    mode: Literal["both", "improvised", "scripted"] = Field("both", description="dialogue type to keep")
    sessions: list[int] | None = Field(None, description="keep only these sessions (1..5)")


def parse_turn_id(turn: str) -> dict | None:
    """``Ses01F_impro01_F000`` -> session, dialog, speaker (session + gender), gender."""
    m = TURN_ID.match(turn)
    if not m:
        return None
    session, _, middle, gender, _ = m.groups()
    dialog = turn.rsplit("_", 1)[0]
    return {"session": session, "dialog": dialog, "speaker": f"{session}_{gender}",
            "gender": "female" if gender == "F" else "male",
            "mode": "improvised" if "impro" in middle else "scripted"}


def read_evaluation(path: Path) -> dict[str, dict]:
    """Turn id -> start, end, code, valence, arousal, dominance from one EmoEvaluation file."""
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = EVAL_LINE.match(line.strip())
        if m:
            start, end, turn, code, v, a, d = m.groups()
            out[turn] = {"start": float(start), "end": float(end), "code": code.lower(),
                         "valence": float(v), "arousal": float(a), "dominance": float(d)}
    return out


def read_transcripts(path: Path) -> dict[str, str]:
    """Turn id -> its words, from one transcriptions file."""
    out = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            m = TRANSCRIPT_LINE.match(line.strip())
            if m:
                out[m.group(1)] = m.group(2).strip()
    return out


def label_of(code: str, options: IemocapOptions) -> str | None:
    label = CODES.get(code)
    if label == "excited" and options.merge_excited:
        label = "happy"
    if options.classes == "four" and label not in FOUR and not (label == "excited" and not options.merge_excited):
        return None
    return label


class Iemocap(Dataset):
    """IEMOCAP: 10 speakers over 5 sessions; categorical and dimensional labels, transcripts."""

    name = "iemocap"
    description = "IEMOCAP: 4-class (excited->happy) or all categories, V/A/D, transcripts, sessions"
    Options = IemocapOptions

    def clips(self) -> list[Clip]:
        root = corpus_dir(self.root, self.name)
        o = self.options
        sessions = sorted(p for p in root.glob("Session*") if p.is_dir())
        if o.sessions:
            sessions = [p for p in sessions if p.name[len("Session"):] in {str(s) for s in o.sessions}]
        if not sessions:
            raise CorpusError(f"{root}: no Session1..Session5 folders (is data.root the IEMOCAP_full_release folder?)")
        out, missing_audio = [], 0
        for session in sessions:
            for ev_file in sorted((session / "dialog" / "EmoEvaluation").glob("Ses*.txt")):
                texts = read_transcripts(session / "dialog" / "transcriptions" / ev_file.name)
                wav_dir = session / "sentences" / "wav" / ev_file.stem
                for turn, ev in read_evaluation(ev_file).items():
                    ids = parse_turn_id(turn)
                    if ids is None:
                        self.skip(f"{ev_file.relative_to(root).as_posix()}: {turn}", "not an IEMOCAP turn id")
                        continue
                    if o.mode != "both" and ids["mode"] != o.mode:
                        continue
                    path = next((p for p in (wav_dir / f"{turn}.wav", wav_dir / f"{turn}.flac") if p.exists()), None)
                    missing_audio += path is None
                    meta = {**ids, **ev}
                    out.append(Clip(id=turn, path=path, label=label_of(ev["code"], o), speaker=ids["speaker"],
                                    text=texts.get(turn), meta=meta))
        if missing_audio:
            log.warning("iemocap: %d turns have no audio file under sentences/wav", missing_audio)
        return out


@hookimpl
def register_datasets(register):
    register(Iemocap)
