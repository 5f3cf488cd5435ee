r"""Emotion timeline of a long recording assembled from RAVDESS clips, labelled by an exported bundle.

    fusionkit run benchmarks/ravdess/whisper-base.yaml --set data.root=../shared/data/ravdess --out runs/rav-base
    python benchmarks/timeline_ravdess.py --run runs/rav-base --fold 0 --minutes 10 \
        --out benchmarks/timeline/results.jsonl

Honest by construction: the bundle is the head of fold K (``fusionkit export RUN --fold K``), trained
on the other actors, and the recording is built only from fold K's test actors, whom the head never
saw. Clips are shuffled and butted end to end (each clip keeps its own leading/trailing silence) until
the recording is MINUTES long, written as 16 kHz FLAC; the clips' spans are the ground truth.

``fusionkit predict BUNDLE REC --window W --hop H --format json`` is timed as a subprocess (wall
clock including Python start-up, bundle and model loading, decoding); the real-time factor is the
recording's duration over that time. Agreement: each window's label against the label of the clip
that covers most of the window (window accuracy and UAR over windows; chance is 1/8 for 8 classes).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import soundfile as sf


def build_recording(clips, minutes: float, seed: int, path: Path) -> list[tuple[float, float, str]]:
    """Concatenate shuffled clips into ``path`` until ``minutes`` long; return (start, end, label) spans."""
    from fusionkit.audio import load_audio

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(clips))
    parts, spans, t = [], [], 0.0
    for i in order:
        x = load_audio(clips[i].path, 16000)
        parts.append(x)
        spans.append((t, t + len(x) / 16000, clips[i].label))
        t += len(x) / 16000
        if t >= minutes * 60:
            break
    if t < minutes * 60:
        raise SystemExit(f"only {t / 60:.1f} minutes of audio from the test actors; ask for fewer minutes")
    sf.write(str(path), np.concatenate(parts), 16000, format="FLAC")
    return spans


def majority_label(start: float, end: float, spans) -> str:
    """The label of the clip that overlaps the window [start, end) the most."""
    best, label = -1.0, ""
    for a, b, lbl in spans:
        overlap = min(b, end) - max(a, start)
        if overlap > best:
            best, label = overlap, lbl
    return label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished RAVDESS `fusionkit run` folder")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--window", type=float, default=4.0)
    ap.add_argument("--hop", type=float, default=None)
    ap.add_argument("--smooth", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="folder for the bundle and recording (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line of results here")
    args = ap.parse_args()
    hop = args.hop or args.window

    from sklearn.metrics import balanced_accuracy_score

    from fusionkit.bundle import export
    from fusionkit.pipeline.data import load_dataset
    from fusionkit.recipe import load_recipe

    work = args.work or Path(tempfile.mkdtemp(prefix="fk-timeline-"))
    work.mkdir(parents=True, exist_ok=True)
    metrics = json.loads((args.run / "metrics.json").read_text())
    fold = next(f for f in metrics["folds"] if f["fold"] == args.fold)
    held_out = set(fold["test_speakers"])
    bundle = work / "bundle"
    export(args.run, bundle, fold=str(args.fold))
    recipe = load_recipe(args.run / "recipe.yaml")
    clips = [c for c in load_dataset(recipe).clips() if c.speaker in held_out and c.label]
    rec = work / "recording.flac"
    spans = build_recording(clips, args.minutes, args.seed, rec)
    duration = spans[-1][1]

    cmd = [str(Path(sys.executable).with_name("fusionkit")), "predict", str(bundle), str(rec),
           "--window", str(args.window), "--hop", str(hop), "--smooth", str(args.smooth), "--format", "json"]
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"predict failed ({done.returncode}): {done.stderr[-2000:]}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    timeline = json.loads(done.stdout)[0]["timeline"]

    truth = [majority_label(s["start"], s["end"], spans) for s in timeline]
    pred = [s["label"] for s in timeline]
    classes = sorted(set(truth))
    result = {
        "date": date.today().isoformat(), "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "run": str(args.run), "recipe": recipe.name, "fold": args.fold, "held_out_speakers": sorted(held_out),
        "fold_uar": round(fold["uar"], 4), "clips": len(spans), "audio_s": round(duration, 1),
        "window": args.window, "hop": hop, "smooth": args.smooth, "windows": len(timeline),
        "window_accuracy": round(float(np.mean([a == b for a, b in zip(pred, truth)])), 4),
        "window_uar": round(float(balanced_accuracy_score(truth, pred)), 4),
        "chance": round(1 / len(classes), 4),
        "majority_class_rate": round(max(truth.count(c) for c in classes) / len(truth), 4),
        "predict_wall_s": round(wall, 2), "rtf": round(duration / wall, 1), "peak_rss_mb": round(peak_mb),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
