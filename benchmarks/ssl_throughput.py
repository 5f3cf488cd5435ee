"""Throughput of the wav2vec2 / w2v-bert encoders on real RAVDESS clips, at real model sizes.

No pretrained weights are needed: a model of the real architecture (wav2vec2-base, WavLM base+,
HuBERT large, w2v-bert 2.0 configs) is built with random weights, saved, and loaded through the
plugin's normal path. Speed does not depend on the weight values, so the figures hold for the
pretrained checkpoints; accuracy figures need the real weights and are not produced here.

    .venv/bin/python benchmarks/ssl_throughput.py --root ../shared/data/ravdess --clips 24
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from fusionkit.audio import load_audio


def build(kind: str, folder: Path) -> Path:
    """Save a random-weight model of ``kind``'s real architecture with its feature extractor."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    if kind == "wav2vec2-base":
        model, fe = tf.Wav2Vec2Model(tf.Wav2Vec2Config()), tf.Wav2Vec2FeatureExtractor(return_attention_mask=False)
    elif kind == "wavlm-base-plus":
        model = tf.WavLMModel(tf.WavLMConfig())
        fe = tf.Wav2Vec2FeatureExtractor(return_attention_mask=True, do_normalize=False)
    elif kind == "hubert-large":
        cfg = tf.HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                              feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
        model, fe = tf.HubertModel(cfg), tf.Wav2Vec2FeatureExtractor(return_attention_mask=True)
    elif kind == "w2v-bert-2.0":
        model, fe = tf.Wav2Vec2BertModel(tf.Wav2Vec2BertConfig()), tf.SeamlessM4TFeatureExtractor()
    else:
        raise KeyError(kind)
    model.eval().save_pretrained(folder)
    fe.save_pretrained(folder)
    return folder


RUNS = [  # (label, architecture, plugin, options)
    ("wav2vec2-base, one clip per pass (default)", "wav2vec2-base", "wav2vec2", {}),
    ("wav2vec2-base, batch_unmasked, batch 8", "wav2vec2-base", "wav2vec2", {"batch_unmasked": True, "batch_size": 8}),
    ("WavLM base+, one clip per pass (default)", "wavlm-base-plus", "wav2vec2", {}),
    ("HuBERT large (masked), batch 8", "hubert-large", "wav2vec2", {"batch_size": 8}),
    ("HuBERT large (masked), batch 1", "hubert-large", "wav2vec2", {"batch_size": 1}),
    ("w2v-bert 2.0, batch 4", "w2v-bert-2.0", "w2v-bert", {"batch_size": 4}),
]


def main() -> None:
    import torch

    from fusionkit_plugins.w2v_bert import W2VBertEncoder, W2VBertOptions
    from fusionkit_plugins.wav2vec2 import Wav2Vec2Encoder, Wav2Vec2Options

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("../shared/data/ravdess"))
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--only", default="", help="run only the labels containing this text")
    ap.add_argument("--threads", type=int, default=None, help="the encoders' threads option (torch intra-op threads)")
    args = ap.parse_args()
    files = sorted(p for p in args.root.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    files = files[:: max(1, len(files) // args.clips)][: args.clips]
    signals = [load_audio(f) for f in files]
    audio_s = sum(len(s) for s in signals) / 16000
    print(f"{len(signals)} clips, {audio_s / len(signals):.2f} s mean; torch {torch.__version__}, "
          f"{args.threads or torch.get_num_threads()} threads; load average at start {os.getloadavg()[0]:.1f}")
    print("| model (random weights, real size) | options | clips/s (wall) | CPU s / clip | CPU real-time factor |")
    print("|---|---|---|---|---|")
    built: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="fk-ssl-bench-") as tmp:
        for label, arch, plugin, opts in RUNS:
            if args.only and args.only not in label:
                continue
            if arch not in built:
                built.clear()  # keep one architecture on disk at a time
                built[arch] = build(arch, Path(tmp) / arch)
            opts = {**opts, **({"threads": args.threads} if args.threads else {})}
            if plugin == "w2v-bert":
                enc = W2VBertEncoder(W2VBertOptions(model=str(built[arch]), **opts))
            else:
                enc = Wav2Vec2Encoder(Wav2Vec2Options(model=str(built[arch]), **opts))
            enc.load()
            enc.encode_batch(signals[:1])  # warm-up
            batch = 8
            ordered = sorted(signals, key=len)  # as encode_clips hands them over
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(ordered), batch):
                enc.encode_batch(ordered[i : i + batch])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            per_clip = cpu / len(signals)
            shown = ", ".join(f"{k}={v}" for k, v in opts.items()) or "defaults"
            print(f"| {label} | {shown} | {len(signals) / wall:.2f} | {per_clip:.2f} | "
                  f"{per_clip / (audio_s / len(signals)):.2f} |", flush=True)
            del enc
    print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
