"""Reload a finished run's saved fold heads and compare their test-fold probabilities with
``predictions.csv``: the check that a saved model really is the model that was scored."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def saved_run_difference(run_dir: Path, cache_dir: Path | None = None) -> float:
    """Largest absolute difference between reloaded heads' probabilities and predictions.csv.

    Uses the run's own ``recipe.yaml``; features come from the embedding cache (``cache_dir``
    overrides the recipe's). predictions.csv holds 6 decimals, so an exact reload gives <= 5e-7.
    """
    from fusionkit.pipeline.data import normalize
    from fusionkit.pipeline.folds import fold_inputs, fold_tag, plan_folds
    from fusionkit.pipeline.run import prepare
    from fusionkit.recipe import load_recipe, plugin_options
    from fusionkit.sdk.heads import load_head

    run_dir = Path(run_dir)
    overrides = [f"cache.dir={cache_dir}"] if cache_dir is not None else []
    recipe = load_recipe(run_dir / "recipe.yaml", overrides)
    cls, options = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)
    prep = normalize(recipe, prepare(recipe))
    with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_clip = {(int(r["seed"]), r["clip_id"]): r for r in rows}
    seeds = recipe.run_seeds()
    worst = 0.0
    for seed, fold in plan_folds(recipe, prep):
        if len(fold.test) == 0 or len(fold.train) == 0:
            continue
        head = load_head(cls, run_dir / "models" / fold_tag(seed, fold.index, seeds), options, seed)
        proba = head.predict_proba(fold_inputs(prep, fold.test))
        saved = np.array([[float(by_clip[seed, prep.clips[i].id][f"p_{c}"]) for c in prep.classes]
                          for i in fold.test])
        worst = max(worst, float(np.abs(proba - saved).max()))
    return worst
