"""Benchmark fusion heads on one recipe's encoders: UAR per fold, fit time, saved model size.

The recipe is prepared once (encoders read through the cache); then every head in HEADS (or
``--heads``) is fitted on every fold of the recipe's split, exactly as ``fusionkit run`` does,
and each encoder alone is scored with the ``linear`` head (and, with ``--single``, with every head)
as the single-encoder reference. Results are appended to a JSON-lines file.

    FUSIONKIT_CACHE_DIR=/tmp/fk-fusion .venv/bin/python benchmarks/fusion/bench_heads.py \\
        benchmarks/fusion/whisper-lld-linear.yaml --out benchmarks/fusion/results-whisper-lld.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fusionkit.metrics import classification_metrics
from fusionkit.plugins import registry
from fusionkit.recipe import load_recipe
from fusionkit.run import fold_inputs, prepare
from fusionkit.splits import make_folds

HEADS: dict[str, tuple[str, dict]] = {
    "linear": ("linear", {}),
    "concat-ffn": ("concat-ffn", {}),
    "self-attention": ("self-attention", {}),
    "cross-attention": ("cross-attention", {}),
    "transformer": ("transformer", {}),
    "xgboost": ("xgboost", {}),
    "catboost": ("catboost", {}),
    "late-average": ("late-average", {}),
    "stacking": ("stacking", {}),
}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def evaluate(prep, folds, plugin: str, options: dict, encoders: list[str], seed: int) -> dict:
    """Fit ``plugin`` on every fold using only ``encoders``; UAR per fold, fit seconds, model bytes."""
    cls = registry().get("fusion", plugin)
    opts = cls.Options.model_validate(options)
    classes = prep.classes
    y = np.array([classes.index(c.label) for c in prep.clips])
    groups = np.array([c.speaker for c in prep.clips])
    uars, fit_s, sizes = [], [], []
    for fold in folds:
        head = cls(opts, seed=seed)
        Xtr = {k: v for k, v in fold_inputs(prep, fold.train).items() if k in encoders}
        Xte = {k: v for k, v in fold_inputs(prep, fold.test).items() if k in encoders}
        t = time.perf_counter()
        head.fit(Xtr, y[fold.train], classes, groups[fold.train])
        fit_s.append(time.perf_counter() - t)
        pred = head.predict_proba(Xte).argmax(axis=1)
        uars.append(classification_metrics(y[fold.test], pred, len(classes))["uar"])
        with tempfile.TemporaryDirectory() as tmp:
            head.save(Path(tmp) / "m")
            sizes.append(dir_bytes(Path(tmp) / "m"))
    return {"uar": float(np.mean(uars)), "uar_std": float(np.std(uars, ddof=1)), "folds": [round(u, 4) for u in uars],
            "fit_s_per_fold": float(np.mean(fit_s)), "model_kb": float(np.mean(sizes)) / 1024}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--head", action="append", default=[], dest="heads",
                    help="a name from HEADS, or LABEL=plugin:{json options} (repeatable; default: every HEADS entry)")
    ap.add_argument("--single", action="store_true", help="also score every head on each encoder alone")
    ap.add_argument("--no-baseline", action="store_true", help="skip the single-encoder linear baselines")
    ap.add_argument("--out", required=True, help="JSON-lines file to append results to")
    args = ap.parse_args(argv)
    recipe = load_recipe(args.recipe, args.overrides)
    prep = prepare(recipe)
    folds = make_folds(prep.clips, recipe.split, recipe.seed, prep.partitions)
    encoders = sorted(prep.features)
    shapes = {k: np.shape(next(iter(v.values()))) for k, v in prep.features.items()}
    print(f"{len(prep.clips)} clips, {len(folds)} folds, encoders {shapes}", flush=True)
    jobs: list[tuple[str, str, dict, list[str]]] = []
    if not args.no_baseline:
        jobs += [(f"linear [{e} only]", "linear", {}, [e]) for e in encoders]
    for item in args.heads or list(HEADS):
        label, plugin, options = _parse(item)
        jobs.append((label, plugin, options, encoders))
        if args.single:
            jobs += [(f"{label} [{e} only]", plugin, options, [e]) for e in encoders]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for label, plugin, options, encs in jobs:
        t = time.perf_counter()
        res = evaluate(prep, folds, plugin, options, encs, recipe.seed)
        row = {"recipe": recipe.name, "head": label, "plugin": plugin, "options": options, "encoders": encs,
               "n_clips": len(prep.clips), "n_folds": len(folds), **res, "wall_s": time.perf_counter() - t}
        print(f"{label:40s} UAR {res['uar']:.3f} ± {res['uar_std']:.3f}  fit {res['fit_s_per_fold']:.1f} s/fold  "
              f"{res['model_kb']:.0f} KiB", flush=True)
        with out.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
    return 0


def _parse(item: str) -> tuple[str, str, dict]:
    """``name`` (from HEADS) or ``label=plugin:{"json": "options"}`` -> (label, plugin, options)."""
    if item in HEADS:
        return item, *HEADS[item]
    label, _, spec = item.partition("=")
    plugin, _, raw = spec.partition(":")
    return label, plugin, (json.loads(raw) if raw else {})


if __name__ == "__main__":
    sys.exit(main())
