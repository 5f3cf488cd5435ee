"""``synthetic``: a small, deterministic, SYNTHETIC demo corpus, generated on first use.

It is not speech. Each clip is a voiced harmonic tone whose pitch level, contour, loudness and
tempo depend on the emotion label (with speaker and clip variation so that the task is not
trivial), plus a short English sentence whose words lean towards the same label. It exists so
that ``fusionkit run demo`` and the tests run offline in seconds; figures on it say nothing
about real emotional speech.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Clip, Dataset, Options

GENERATOR_VERSION = "1"
SR = 16000
# label: (pitch factor, contour slope in octaves, loudness, syllables per second, brightness)
STYLE = {
    "angry": (1.30, -0.10, 0.80, 5.5, 1.0),
    "happy": (1.25, 0.25, 0.60, 5.0, 0.7),
    "neutral": (1.00, -0.05, 0.40, 4.0, 0.4),
    "sad": (0.85, -0.30, 0.25, 2.8, 0.2),
}
WORDS = {
    "angry": ["I can't stand this", "stop doing that", "this is unacceptable", "get out now"],
    "happy": ["what a lovely day", "I am so glad", "this is wonderful news", "we did it"],
    "neutral": ["the meeting is at noon", "it is on the table", "the bus comes later", "I read the report"],
    "sad": ["I miss her so much", "nothing went right", "it is all over", "I feel so alone"],
}
FILLER = ["well", "so", "you know", "today", "again", "really"]


class SyntheticOptions(Options):
    speakers: int = Field(8, ge=2, le=64)
    clips_per_class: int = Field(6, ge=1, le=100, description="per speaker and class")
    seed: int = 7


def _clip_audio(rng: np.random.Generator, label: str, base_f0: float) -> np.ndarray:
    pitch, slope, loud, rate, bright = STYLE[label]
    # overlap between classes: every cue is jittered
    pitch *= rng.normal(1.0, 0.08)
    slope += rng.normal(0, 0.12)
    loud *= rng.lognormal(0, 0.25)
    rate *= rng.normal(1.0, 0.15)
    bright = float(np.clip(bright + rng.normal(0, 0.2), 0.05, 1.2))
    dur = rng.uniform(1.0, 1.6)
    t = np.arange(int(dur * SR)) / SR
    f0 = base_f0 * pitch * 2 ** (slope * t / dur) * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    decay = 1.5 / bright
    y = sum(np.exp(-decay * (k - 1)) * np.sin(k * phase) for k in range(1, 9))
    syllables = 0.5 * (1 - np.cos(2 * np.pi * rate * t)) ** 2  # on/off envelope
    y = loud * syllables * y / 3.0
    y += rng.normal(0, 0.01, len(t))
    return np.clip(y, -1, 1).astype(np.float32)


def _sentence(rng: np.random.Generator, label: str) -> str:
    # a third of the sentences borrow another class's words: the text alone is ambiguous too
    source = label if rng.random() > 0.33 else rng.choice(sorted(WORDS))
    return f"{rng.choice(FILLER)} {rng.choice(WORDS[source])}"


def generate(folder: Path, options: SyntheticOptions) -> None:
    """Write WAVs and manifest.csv into ``folder`` (atomically: a temp folder renamed at the end)."""
    import soundfile as sf

    rng = np.random.default_rng(options.seed)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".synthetic-"))
    rows = []
    for s in range(options.speakers):
        base_f0 = 110.0 if s % 2 == 0 else 200.0
        base_f0 *= rng.normal(1.0, 0.06)
        for label in sorted(STYLE):
            for k in range(options.clips_per_class):
                cid = f"spk{s:02d}_{label}_{k:02d}"
                sf.write(tmp / f"{cid}.wav", _clip_audio(rng, label, base_f0), SR, subtype="PCM_16")
                rows.append({"id": cid, "path": f"{cid}.wav", "label": label, "speaker": f"spk{s:02d}",
                             "text": _sentence(rng, label)})
    with open(tmp / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process generated it first
        shutil.rmtree(tmp, ignore_errors=True)


class Synthetic(Dataset):
    name = "synthetic"
    description = "SYNTHETIC demo corpus (tones + sentences that carry the label), generated offline"
    Options = SyntheticOptions
    needs_root = False

    def folder(self) -> Path:
        if self.root is not None:
            return Path(self.root)
        from fusionkit.fileio import default_cache_dir

        o = self.options
        name = f"synthetic-v{GENERATOR_VERSION}-{o.speakers}x{o.clips_per_class}-s{o.seed}"
        return default_cache_dir() / "datasets" / name

    def clips(self) -> list[Clip]:
        folder = self.folder()
        if not (folder / "manifest.csv").exists():
            generate(folder, self.options)
        with open(folder / "manifest.csv", newline="", encoding="utf-8") as fh:
            return [Clip(id=r["id"], path=folder / r["path"], label=r["label"], speaker=r["speaker"], text=r["text"])
                    for r in csv.DictReader(fh)]


@hookimpl
def register_datasets(register):
    register(Synthetic)
