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
recording's duration over that time, the median of ``--repeat`` runs. ``--baseline DIR`` times another
copy of the code (DIR on PYTHONPATH holding ``fusionkit`` and ``fusionkit_plugins``, e.g. ``git archive HEAD``
unpacked with ``plugins`` linked as ``fusionkit_plugins``) in turns with this one, on the same bundle and
recording, and reports its median and the largest probability difference between the two.

Agreement: each window's label against the label of the clip that covers most of the window (window
accuracy and UAR over windows; chance is 1/8 for 8 classes).
"""

from __future__ import annotations

import argparse
import json
import os
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


def timed_predict(cmd: list[str], pythonpath: Path | None) -> tuple[list[dict], float, float]:
    """(timeline, wall seconds, CPU seconds (user + system)) of one ``fusionkit predict`` subprocess, with
    ``pythonpath`` first on its path. CPU time is the steadier figure when other jobs share the machine."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath.resolve()), *filter(None, [env.get("PYTHONPATH")])])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"predict failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return json.loads(done.stdout)[0]["timeline"], wall, cpu


def max_difference(a: list[dict], b: list[dict]) -> float:
    """The largest absolute difference between two timelines' window probabilities (they must match in windows)."""
    if [(s["start"], s["end"]) for s in a] != [(s["start"], s["end"]) for s in b]:
        raise SystemExit("the two timelines have different windows")
    return max(abs(x["probabilities"][c] - y["probabilities"][c]) for x, y in zip(a, b) for c in x["probabilities"])


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
    ap.add_argument("--repeat", type=int, default=1, help="timed runs (median reported)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="PYTHONPATH folder with another copy of fusionkit, timed in turns with this one")
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
    walls, cpus, base_walls, base_cpus, timeline, base_timeline = [], [], [], [], None, None
    for _ in range(max(1, args.repeat)):
        if args.baseline:
            base_timeline, wall, cpu = timed_predict(cmd, args.baseline)
            base_walls.append(wall)
            base_cpus.append(cpu)
        timeline, wall, cpu = timed_predict(cmd, None)
        walls.append(wall)
        cpus.append(cpu)
    wall = float(np.median(walls))
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

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
        "walls_s": [round(w, 2) for w in walls], "cpu_s": [round(c, 2) for c in cpus],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    if args.baseline:
        base = float(np.median(base_walls))
        result.update(baseline=str(args.baseline), baseline_walls_s=[round(w, 2) for w in base_walls],
                      baseline_cpu_s=[round(c, 2) for c in base_cpus],
                      cpu_speedup=round(float(np.median(base_cpus) / np.median(cpus)), 3),
                      baseline_wall_s=round(base, 2), baseline_rtf=round(duration / base, 1),
                      speedup=round(base / wall, 3), max_probability_difference=max_difference(timeline, base_timeline))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
