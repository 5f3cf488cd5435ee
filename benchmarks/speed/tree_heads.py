"""Paired timing of a recipe's tree head under two presets (``legacy`` vs ``fast``), fold by fold, in one process.

    FUSIONKIT_CACHE_DIR=/work/fkcache python benchmarks/speed/tree_heads.py benchmarks/ravdess/lld-xgboost.yaml \
        --set data.root=../shared/data/ravdess --folds 2 --out benchmarks/speed/tree_heads.jsonl

The embeddings come from the cache (the encode stage runs first, as in ``fusionkit run``); then for each of the
first ``--folds`` folds the head is fitted with every preset in turn (the order alternates from fold to fold), so
both see the same machine load. Wall and CPU seconds of each fit and the fold's UAR are printed; one JSON line
with the totals, their ratio and the mean UARs goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s), and whether it computes bf16 natively."""
    from fusionkit.sdk.torch_models import native_cpu_bf16

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({'native' if native_cpu_bf16() else 'no native'} bf16)"


def variant(name: str) -> dict:
    """Head options of a variant: ``PRESET`` or ``PRESET:OPTION=VALUE,...`` (values read as YAML)."""
    import yaml

    preset, _, rest = name.partition(":")
    options = {"preset": preset}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key] = yaml.safe_load(value)
    return options


def main(argv: list[str] | None = None) -> dict:
    from fusionkit.metrics import classification_metrics
    from fusionkit.pipeline.data import normalize
    from fusionkit.pipeline.folds import fold_inputs, plan_folds
    from fusionkit.pipeline.run import prepare
    from fusionkit.recipe import load_recipe, plugin_options

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="recipe override (repeatable)")
    ap.add_argument("--folds", type=int, default=0, help="time only the first N folds (0: all)")
    ap.add_argument("--presets", nargs="+", default=["legacy", "fast"],
                    help="presets or variants, e.g. fast:refit=false (options after the colon)")
    ap.add_argument("--out", type=Path, help="append one JSON line here")
    args = ap.parse_args(argv)

    recipe = load_recipe(args.recipe, args.sets)
    prep = normalize(recipe, prepare(recipe))
    y = np.array([prep.classes.index(c.label) for c in prep.clips])
    speakers = np.array([c.speaker for c in prep.clips])
    folds = plan_folds(recipe, prep)
    folds = folds[: args.folds] if args.folds else folds
    totals = {p: {"wall_s": 0.0, "cpu_s": 0.0, "uar": []} for p in args.presets}
    for n, (seed, fold) in enumerate(folds):
        order = args.presets if n % 2 == 0 else args.presets[::-1]
        for preset in order:
            cls, options = plugin_options("fusion", recipe.fusion.plugin, {**recipe.fusion.options, **variant(preset)})
            head = cls(options, seed=seed)
            wall, cpu = time.perf_counter(), time.process_time()
            head.fit(fold_inputs(prep, fold.train), y[fold.train], prep.classes, speakers[fold.train])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            proba = head.predict_proba(fold_inputs(prep, fold.test))
            uar = classification_metrics(y[fold.test], proba.argmax(axis=1), len(prep.classes))["uar"]
            rounds = getattr(head, "best_iteration", None)
            print(f"fold {fold.index} {preset:7s} wall {wall:7.1f} s  cpu {cpu:7.1f} s  rounds {rounds}  "
                  f"UAR {uar:.3f}", flush=True)
            t = totals[preset]
            t["wall_s"] += wall
            t["cpu_s"] += cpu
            t["uar"].append(uar)
    first, last = args.presets[0], args.presets[-1]
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "recipe": args.recipe, "sets": args.sets,
        "head": recipe.fusion.plugin, "options": recipe.fusion.options, "cpu": cpu_model(),
        "folds": [int(f.index) for _, f in folds],
        "presets": {p: {"wall_s": round(t["wall_s"], 1), "cpu_s": round(t["cpu_s"], 1),
                        "uar_mean": round(float(np.mean(t["uar"])), 4), "uar": [round(u, 4) for u in t["uar"]]}
                    for p, t in totals.items()},
        "wall_ratio": round(totals[first]["wall_s"] / max(totals[last]["wall_s"], 1e-9), 2),
        "cpu_ratio": round(totals[first]["cpu_s"] / max(totals[last]["cpu_s"], 1e-9), 2),
    }
    print(json.dumps(record))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    return record


if __name__ == "__main__":
    main()
