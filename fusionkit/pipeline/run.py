"""``fusionkit run``: data -> encode -> folds -> evaluate -> report.

Each stage has its module: :mod:`~fusionkit.pipeline.data` (clips, classes or targets, usable
clips, normalisation), :mod:`~fusionkit.pipeline.encode` (cached embeddings),
:mod:`~fusionkit.pipeline.augment` (perturbed copies of the training clips, when asked),
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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from fusionkit.fileio import WriteError, atomic_write_text
from fusionkit.pipeline.augment import augment
from fusionkit.pipeline.data import Prepared, keep_usable, normalize, select
from fusionkit.pipeline.encode import encode_recipe
from fusionkit.pipeline.evaluate import raw_comparison, summarize_run
from fusionkit.pipeline.folds import fit_folds
from fusionkit.pipeline.preflight import check_normalize, head_refusal, planned_split
from fusionkit.recipe import Recipe, dump, safe_name


def default_run_dir(recipe: Recipe, parent: Path = Path("runs")) -> Path:
    """A new, empty ``runs/NAME-YYYYmmdd-HHMMSS`` folder (separators in the name become '-'), created here.

    The folder is made with an exclusive mkdir, so two runs started in the same second never share one:
    the second gets ``...-HHMMSS-2`` (then ``-3``, ...).
    """
    base = f"{safe_name(recipe.name)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = parent / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{parent}: no free run folder name for {base}")


@contextmanager
def naming_write_errors(where: Path) -> Iterator[None]:
    """An OS error that names no file (e.g. a full disk while a plot or a model is saved) is raised as a
    :class:`~fusionkit.fileio.WriteError` naming ``where``."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        if exc.filename:
            raise
        raise WriteError(exc.errno or 0, exc.strerror or str(exc), str(where)) from exc


def prepare(recipe: Recipe, run_dir: Path | None = None) -> Prepared:
    """Read the corpus (and test corpus) and encode (or fetch from the cache) every clip with every encoder, and
    the training clips' augmented copies when the recipe asks for them. What the recipe cannot do with its corpus
    or encoders fails first (:mod:`fusionkit.pipeline.preflight`), before anything is encoded."""
    refusal = head_refusal(recipe)  # a head that cannot be made, or refuses the encoders as configured
    if refusal is not None:
        raise refusal
    check_normalize(recipe)
    selection = planned_split(recipe, select(recipe))
    encoded = encode_recipe(recipe, selection.clips, run_dir)
    return augment(recipe, keep_usable(recipe, selection, encoded))


def run(recipe: Recipe, run_dir: Path | None = None, recipe_source: str = "") -> dict:
    """Run the recipe and write its outputs into ``run_dir``; return metrics.json's content.

    metrics.json is written last, once everything else is in place: a folder holding it is a finished run.
    A metrics.json left in ``run_dir`` by an earlier run is removed first, so a run that fails part-way never
    leaves a folder that looks finished.
    """
    from fusionkit.pipeline.report import write_report
    from fusionkit.report_html import write_run_html

    run_dir = Path(run_dir or default_run_dir(recipe))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").unlink(missing_ok=True)
    atomic_write_text(run_dir / "recipe.yaml", dump(recipe))
    start = time.perf_counter()
    raw = prepare(recipe, run_dir)
    prep = normalize(recipe, raw)
    with naming_write_errors(run_dir / "models"):
        fitted = fit_folds(recipe, prep, run_dir)
    metrics = summarize_run(recipe, prep, fitted, time.perf_counter() - start)
    metrics.update(raw_comparison(recipe, raw))  # cross-corpus with normalize: the raw figures beside
    fitted.predictions.write_csv(run_dir / "predictions.csv")
    with naming_write_errors(run_dir):
        write_report(run_dir, metrics, fitted.predictions)
        write_run_html(run_dir, metrics)
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics
