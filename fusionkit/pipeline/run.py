"""``fusionkit run``: data -> encode -> folds -> evaluate -> report.

Each stage has its module: :mod:`~fusionkit.pipeline.data` (clips, classes or targets, usable
clips, normalisation), :mod:`~fusionkit.pipeline.encode` (cached embeddings),
:mod:`~fusionkit.pipeline.folds` (a head fitted per fold, the predictions),
:mod:`~fusionkit.pipeline.evaluate` (metrics.json) and :mod:`~fusionkit.pipeline.report`.

Two tasks: classification (the default; a :class:`~fusionkit.sdk.base.FusionHead` per fold,
UAR/WA/F1) and regression (``task: {kind: regression, targets: [...]}``; a
:class:`~fusionkit.sdk.heads.RegressionHead` per fold, CCC per target). With ``test_data``
the evaluation is cross-corpus: train on all of ``data``, test on all of ``test_data``, over
the classes both corpora share after their label mappings.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from fusionkit.fileio import atomic_write_text
from fusionkit.pipeline.data import Prepared, keep_usable, normalize, select
from fusionkit.pipeline.encode import encode_recipe
from fusionkit.pipeline.evaluate import summarize_run
from fusionkit.pipeline.folds import fit_folds
from fusionkit.recipe import Recipe, dump, safe_name


def default_run_dir(recipe: Recipe) -> Path:
    """``runs/NAME-YYYYmmdd-HHMMSS``: one folder under runs/ (separators in the name become '-')."""
    return Path("runs") / f"{safe_name(recipe.name)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def prepare(recipe: Recipe, run_dir: Path | None = None) -> Prepared:
    """Read the corpus (and test corpus) and encode (or fetch from the cache) every clip with every encoder."""
    selection = select(recipe)
    encoded = encode_recipe(recipe, selection.clips, run_dir)
    return keep_usable(recipe, selection, encoded)


def run(recipe: Recipe, run_dir: Path | None = None, recipe_source: str = "") -> dict:
    """Run the recipe and write its outputs into ``run_dir``; return metrics.json's content."""
    from fusionkit.pipeline.report import write_report

    run_dir = Path(run_dir or default_run_dir(recipe))
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.yaml", dump(recipe))
    start = time.perf_counter()
    prep = normalize(recipe, prepare(recipe, run_dir))
    fitted = fit_folds(recipe, prep, run_dir)
    metrics = summarize_run(recipe, prep, fitted, time.perf_counter() - start)
    fitted.predictions.write_csv(run_dir / "predictions.csv")
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    write_report(run_dir, metrics, fitted.predictions)
    return metrics
