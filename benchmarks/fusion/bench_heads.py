"""Benchmark fusion heads through ``fusionkit run``: UAR mean/std over folds, fit time, model size.

Each recipe is run exactly as ``fusionkit run RECIPE --out RUNS/<name>`` would (encoders read
through the cache, one head fitted and saved per fold). Afterwards the saved fold heads are
reloaded with the head class's ``load`` and their test-fold probabilities compared with
``predictions.csv`` (the "reload" column). ``--single`` adds, for every recipe, a run of each of
its encoders alone with the same head (the single-encoder reference). One JSON line per run.

    FUSIONKIT_CACHE_DIR=/tmp/fk-fusion .venv/bin/python benchmarks/fusion/bench_heads.py \\
        benchmarks/fusion/whisper-lld-*.yaml --runs /tmp/fk-fusion/runs --out benchmarks/fusion/results.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from fusionkit.pipeline.reload import saved_run_difference
from fusionkit.pipeline.run import run
from fusionkit.recipe import load_recipe
from fusionkit.registry import registry


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench(recipe_path: str, overrides: list[str], runs: Path, label: str, check_reload: bool) -> dict:
    recipe = load_recipe(recipe_path, overrides)
    run_dir = runs / label
    t = time.perf_counter()
    metrics = run(recipe, run_dir, recipe_source=recipe_path)
    wall = time.perf_counter() - t
    folds = metrics["folds"]
    sizes = [dir_bytes(d) for d in sorted((run_dir / "models").iterdir()) if d.is_dir()]
    return {
        "label": label, "recipe": recipe.name, "head": recipe.fusion.plugin, "fusion_options": recipe.fusion.options,
        "encoders": [e.key for e in recipe.encoders], "n_clips": metrics["n_clips"], "n_folds": len(folds),
        "uar": metrics["uar"], "uar_std": metrics["uar_std"], "uar_folds": [round(f["uar"], 4) for f in folds],
        "fit_s_per_fold": metrics["timing"]["fit_seconds"] / len(folds),
        "model_kb": float(np.mean(sizes)) / 1024, "wall_s": wall,
        "reload_max_diff": saved_run_difference(run_dir) if check_reload else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="+")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--head", action="append", default=[], dest="heads",
                    help="run each recipe with this fusion head instead of its own (repeatable; default options)")
    ap.add_argument("--single", action="store_true", help="also run each encoder of each recipe alone (same head)")
    ap.add_argument("--no-reload", action="store_true", help="skip the reload-and-compare check")
    ap.add_argument("--runs", required=True, help="folder for the run directories")
    ap.add_argument("--out", required=True, help="JSON-lines file to append results to")
    args = ap.parse_args(argv)
    out, runs = Path(args.out), Path(args.runs)
    out.parent.mkdir(parents=True, exist_ok=True)
    registry()
    for path in args.recipes:
        variants = [(None, list(args.overrides))] + [
            (h, [*args.overrides, f"fusion.plugin={h}", "fusion.options={}"]) for h in args.heads]
        if args.heads:
            variants = variants[1:]
        for head, overrides in variants:
            recipe = load_recipe(path, overrides)
            name = recipe.name if head is None else f"{recipe.name}/{head}"
            _jobs(path, recipe, name, overrides, args, runs, out)
    return 0


def _jobs(path, recipe, name, base_overrides, args, runs: Path, out: Path) -> None:
    jobs = [(name, list(base_overrides))]
    if args.single:
        for enc in recipe.encoders:
            keep = [enc.model_dump(mode="json")]
            jobs.append((f"{name}[{enc.key}-only]", [*base_overrides, f"encoders={json.dumps(keep)}"]))
    for label, overrides in jobs:
        row = bench(path, overrides, runs, label.replace("/", "-"), not args.no_reload)
        row["label"] = label
        print(f"{label:50s} UAR {row['uar']:.3f} ± {row['uar_std']:.3f}  fit {row['fit_s_per_fold']:.1f} s/fold  "
              f"{row['model_kb']:.0f} KiB  reload max |diff| {row['reload_max_diff']}", flush=True)
        with out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(main())
