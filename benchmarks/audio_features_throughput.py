"""Throughput of the handcrafted audio encoders (egemaps, lld) on real RAVDESS clips.

Audio is decoded into memory first, so the figures are feature extraction only.
Both wall-clock clips/s and CPU ms per clip are reported: on a shared machine the
wall-clock figure depends on other load (printed), CPU time much less so.

    .venv/bin/python benchmarks/audio_features_throughput.py --root ../shared/data/ravdess --clips 120
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from fusionkit.audio import load_audio
from fusionkit_plugins.egemaps import EGeMAPSEncoder, EGeMAPSOptions
from fusionkit_plugins.lld import LLDEncoder, LLDOptions

CONFIGS = {
    "egemaps eGeMAPSv02, 1 worker": lambda: EGeMAPSEncoder(EGeMAPSOptions(workers=1)),
    "egemaps eGeMAPSv02, 2 workers": lambda: EGeMAPSEncoder(EGeMAPSOptions(workers=2)),
    "egemaps ComParE_2016, 2 workers": lambda: EGeMAPSEncoder(EGeMAPSOptions(feature_set="ComParE_2016", workers=2)),
    "lld (all descriptors), 1 worker": lambda: LLDEncoder(LLDOptions(workers=1)),
    "lld (all descriptors), 2 workers": lambda: LLDEncoder(LLDOptions(workers=2)),
}


def sample_files(root: Path, n: int) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not files:
        raise SystemExit(f"{root}: no .wav/.flac files")
    step = max(1, len(files) // n)
    return files[::step][:n]


def measure(make, signals: list[np.ndarray], batch: int = 32) -> tuple[float, float]:
    """(clips per wall-clock second, CPU milliseconds per clip), after one warm-up batch."""
    enc = make()
    enc.load()
    enc.encode_batch(signals[:2])  # JIT compilation, filter banks, library start-up
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(signals), batch):
        enc.encode_batch(signals[i : i + batch])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(signals) / wall, 1000 * cpu / len(signals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("../shared/data/ravdess"))
    ap.add_argument("--clips", type=int, default=120)
    ap.add_argument("--only", default="", help="run only configurations containing this text")
    args = ap.parse_args()
    files = sample_files(args.root, args.clips)
    signals = [load_audio(f, 16000) for f in files]
    seconds = sum(len(s) for s in signals) / 16000
    print(f"{len(signals)} clips, {seconds / len(signals):.2f} s mean duration; "
          f"{os.cpu_count()} CPUs, {platform.machine()}; load average at start {os.getloadavg()[0]:.1f}")
    print("| encoder | clips/s (wall) | CPU ms / clip | real-time factor (CPU) |")
    print("|---|---|---|---|")
    for name, make in CONFIGS.items():
        if args.only and args.only not in name:
            continue
        rate, cpu_ms = measure(make, signals)
        rtf = cpu_ms / 1000 / (seconds / len(signals))
        print(f"| {name} | {rate:.1f} | {cpu_ms:.0f} | {rtf:.3f} |", flush=True)
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
