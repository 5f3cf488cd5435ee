"""The evaluate stage of a run: metrics.json's content, for classification and regression alike.

Headline figures are the mean, sample std and 95% t-interval of the per-fold scores (folds x
seeds); the pooled figures score every prediction together; with several seeds each seed's mean
over its folds is summarised too. A seed whose predictions repeat an earlier seed's (a split and
head that do not depend on the seed) adds no evidence: it is counted once in those summaries, with
a warning, and listed under ``seeds.identical``. The protocol records how the numbers were obtained.
"""

from __future__ import annotations

import logging

import numpy as np

from fusionkit.metrics import (
    DEFINITIONS,
    INTERVAL_NOTE,
    REGRESSION_DEFINITIONS,
    classification_metrics,
    metric_range,
    regression_metrics,
    summarize,
    uar_interval,
)
from fusionkit.pipeline.data import Prepared, class_counts
from fusionkit.pipeline.folds import Fitted, Predictions
from fusionkit.pipeline.splits import MIN_TRAIN_CLIPS, natural_key
from fusionkit.recipe import Recipe

log = logging.getLogger("fusionkit")

HEADLINE = ("uar", "wa", "macro_f1", "weighted_f1")
SAME_PREDICTIONS_ATOL = 1e-9  # probabilities (regression: predicted values) this close count as the same
REGRESSION_MEASURES = ("ccc", "pearson", "rmse", "mae")


def headline_keys(recipe: Recipe) -> list[str]:
    """The per-fold scores that get a mean, std and interval; the first is the primary one."""
    if recipe.task.kind == "regression":
        return ["ccc", *[f"{m}_{t}" for t in recipe.task.targets for m in REGRESSION_MEASURES]]
    return list(HEADLINE)


def pooled_metrics(predictions: Predictions) -> dict:
    """The metrics of all predictions together (every fold and seed)."""
    if predictions.task == "regression":
        return regression_metrics(predictions.true, predictions.predicted, predictions.outputs)
    return classification_metrics(predictions.true, predictions.predicted, len(predictions.outputs))


def per_speaker(predictions: Predictions) -> list[dict]:
    """Each test speaker's scores over all of their test predictions (every seed): clips, UAR (over the classes
    that speaker has), WA; the weakest speaker first. Which speakers a model fails on is often the finding."""
    rows = []
    for speaker in sorted(set(predictions.speakers.tolist()), key=natural_key):
        mine = predictions.speakers == speaker
        m = classification_metrics(predictions.true[mine], predictions.predicted[mine], len(predictions.outputs))
        rows.append({"speaker": speaker, "clips": int(mine.sum()), "uar": m["uar"], "wa": m["wa"]})
    return sorted(rows, key=lambda r: r["uar"])


def summarize_run(recipe: Recipe, prep: Prepared, fitted: Fitted, total_seconds: float) -> dict:
    """metrics.json's content."""
    regression = recipe.task.kind == "regression"
    keys = headline_keys(recipe)
    folds = fitted.fold_rows
    out: dict = {"recipe": recipe.name, "task": recipe.task.kind}
    if regression:
        out["targets"] = recipe.task.targets
    identical = identical_seeds(fitted.predictions)
    if identical:
        log.warning("%s gave the same predictions: the split and head do not depend on the seed here; "
                    "the interval counts each distinct seed once", _seed_groups_text(identical))
    counted = distinct_rows(folds, identical)
    summary = {k: summarize([f[k] for f in counted], metric_range(k)) for k in keys}
    for k in keys:
        out[k] = summary[k]["mean"]
        out[f"{k}_std"] = summary[k]["std"]
    pooled = pooled_metrics(fitted.predictions)
    out[f"{keys[0]}_pooled"] = pooled[keys[0]]
    if not regression:
        p = fitted.predictions
        interval = uar_interval(p.true, p.predicted, p.speakers)
        if interval:
            out["uar_pooled_ci95"] = {**interval, "how": SPEAKER_BOOTSTRAP}
    out["summary"] = summary
    if len(recipe.run_seeds()) > 1:
        out["seeds"] = seed_summary(folds, keys, identical)
    out["classes"] = prep.classes
    out["pooled"] = pooled
    out["folds"] = folds
    if not regression:
        out["per_speaker"] = per_speaker(fitted.predictions)
    out["skipped"] = [{"clip": cid, "reason": r} for cid, r in sorted(prep.skipped.items())]
    out["flagged"] = [{"clip": cid, "warning": w} for cid, w in sorted(prep.flagged.items())]  # used, but odd audio
    out["embeddings"] = prep.embeddings
    out["n_clips"] = len(prep.clips)
    out["protocol"] = protocol(recipe, prep, folds)
    out["timing"] = {"encode_seconds": round(prep.encode_seconds, 2), "fit_seconds": round(fitted.fit_seconds, 2),
                     "fold_workers": fitted.workers,
                     "total_seconds": round(total_seconds, 2),
                     **({"reused_folds": fitted.reused} if fitted.reused else {})}  # their fit_seconds as first run
    return out


SPEAKER_BOOTSTRAP = ("95% percentile interval of uar_pooled from resampling whole test speakers with replacement "
                     "(each resample keeps a speaker's clips together)")

RAW_NOTE = ("the same folds and head, fitted and scored on features not normalised (normalize: none), beside the "
            "normalised figures above")


def raw_comparison(recipe: Recipe, raw: Prepared) -> dict:
    """For a cross-corpus run with ``normalize``: ``{"raw": block}``, the same folds fitted on the features before
    normalisation (headline means and stds, the pooled figure, per-class recall, per-fold scores); else ``{}``.
    The heads of this comparison are not kept."""
    if recipe.normalize == "none" or recipe.test_data is None:
        return {}
    import tempfile
    from pathlib import Path

    from fusionkit.pipeline.folds import fit_folds

    with tempfile.TemporaryDirectory(prefix="fusionkit-raw-") as tmp:
        fitted = fit_folds(recipe, raw, Path(tmp))
    keys = headline_keys(recipe)
    folds = fitted.fold_rows
    counted = distinct_rows(folds, identical_seeds(fitted.predictions))
    block: dict = {"normalize": "none", "note": RAW_NOTE}
    for k in keys:
        s = summarize([f[k] for f in counted], metric_range(k))
        block[k], block[f"{k}_std"] = s["mean"], s["std"]
    pooled = pooled_metrics(fitted.predictions)
    block[f"{keys[0]}_pooled"] = pooled[keys[0]]
    if recipe.task.kind == "classification":
        block["recall"] = dict(zip(raw.classes, pooled["per_class"]["recall"]))
    block["folds"] = [{"seed": f["seed"], "fold": f["fold"], **{k: f[k] for k in keys}} for f in folds]
    return {"raw": block}


def seed_summary(fold_rows: list[dict], keys: list[str], identical: list[list[int]] | None = None) -> dict:
    """Per seed, the mean over its folds; and over the distinct seeds, the summary of those means (run-to-run
    spread). ``identical``: groups of seeds that gave the same predictions (:func:`identical_seeds`); only the
    first of each counts over seeds, and the groups are recorded."""
    seeds = sorted({f["seed"] for f in fold_rows})
    per_seed = {str(s): {k: float(np.mean([f[k] for f in fold_rows if f["seed"] == s])) for k in keys} for s in seeds}
    repeats = _repeated(identical or [])
    over = {k: summarize([per_seed[str(s)][k] for s in seeds if s not in repeats], metric_range(k)) for k in keys}
    return {"per_seed": per_seed, "over_seeds": over, "identical": [list(g) for g in identical or []]}


def identical_seeds(predictions: Predictions) -> list[list[int]]:
    """Groups of seeds (each of two or more, in seed order) whose predictions are the same: the same clips in the
    same folds, the same predicted labels and probabilities within :data:`SAME_PREDICTIONS_ATOL` (regression: the
    same predicted values). Such seeds are one experiment repeated, not independent evidence."""
    seeds = sorted(set(predictions.seeds.tolist()))
    if len(seeds) < 2:
        return []
    views = {s: _seed_view(predictions, s) for s in seeds}
    groups: list[list[int]] = []
    for s in seeds:
        group = next((g for g in groups if _same_predictions(views[g[0]], views[s])), None)
        if group is None:
            groups.append([s])
        else:
            group.append(s)
    return [g for g in groups if len(g) > 1]


def distinct_rows(fold_rows: list[dict], identical: list[list[int]]) -> list[dict]:
    """The fold rows of the distinct seeds: those of a seed repeating an earlier seed's predictions left out."""
    repeats = _repeated(identical)
    return [f for f in fold_rows if f["seed"] not in repeats]


def _repeated(identical: list[list[int]]) -> set[int]:
    """The seeds that repeat an earlier seed's predictions (all but the first of each group)."""
    return {s for group in identical for s in group[1:]}


def _seed_view(p: Predictions, seed: int) -> tuple:
    mine = np.flatnonzero(p.seeds == seed)
    order = mine[np.lexsort((p.folds[mine].astype(str), p.clip_ids[mine].astype(str)))]
    proba = None if p.proba is None else np.asarray(p.proba[order], dtype=float)
    return p.clip_ids[order], p.folds[order], np.asarray(p.predicted[order]), proba


def _same_predictions(a: tuple, b: tuple) -> bool:
    (clips_a, folds_a, pred_a, proba_a), (clips_b, folds_b, pred_b, proba_b) = a, b
    if clips_a.shape != clips_b.shape or not (np.array_equal(clips_a, clips_b) and np.array_equal(folds_a, folds_b)):
        return False
    if pred_a.dtype.kind in "fc":  # regression: predicted values
        return pred_a.shape == pred_b.shape and bool(np.allclose(pred_a, pred_b, rtol=0, atol=SAME_PREDICTIONS_ATOL))
    if not np.array_equal(pred_a, pred_b):
        return False
    if proba_a is None or proba_b is None:
        return proba_a is None and proba_b is None
    return proba_a.shape == proba_b.shape and bool(np.allclose(proba_a, proba_b, rtol=0, atol=SAME_PREDICTIONS_ATOL))


def _seed_groups_text(identical: list[list[int]]) -> str:
    """``seeds 0 and 1`` (or ``seeds 0, 1 and 2; seeds 3 and 4``)."""
    def one(group: list[int]) -> str:
        return "seeds " + ", ".join(map(str, group[:-1])) + f" and {group[-1]}"

    return "; ".join(one(g) for g in identical)


def split_text(recipe: Recipe, prep: Prepared, n_folds: int) -> str:
    """The split in words, for the protocol and the report."""
    kind = recipe.split.kind
    if kind == "cross-corpus":
        return f"cross-corpus: train on all of {recipe.data.dataset}, test on all of {recipe.test_data.dataset}"
    speakers = len({c.speaker for c in prep.clips})
    order = " (speakers shuffled by seed)" if recipe.split.shuffle else " (naturally sorted speaker blocks)"
    placed = " (speakers shuffled by seed)" if recipe.split.shuffle else ""
    return {
        "speaker-kfold": f"{n_folds} speaker-independent folds over {speakers} speakers{order}",
        "speaker-stratified": f"{n_folds} speaker-independent folds over {speakers} speakers, class proportions "
                              f"kept close to the corpus's{placed}",
        "loso": f"leave-one-speaker-out over {speakers} speakers ({n_folds} folds)",
        "session": f"leave-one-session-out ({n_folds} sessions)",
        "predefined": f"predefined partitions: train on {', '.join(recipe.split.train)}, "
                      f"test on {', '.join(recipe.split.test)}",
        "file": f"folds from {recipe.split.file} ({n_folds} folds)",
        "random": f"{n_folds} random stratified folds: speakers LEAK between train and test",
    }[kind]


def split_record(recipe: Recipe, n_folds: int) -> dict:
    """The split as run: ``folds`` is the number of folds made (for loso, session, file... the data decides it)."""
    record = recipe.split.model_dump(mode="json")
    if recipe.split.kind not in ("speaker-kfold", "speaker-stratified", "random"):
        record["folds"] = n_folds
    return record


def protocol(recipe: Recipe, prep: Prepared, fold_rows: list[dict]) -> dict:
    """How the figures were obtained: corpora, classes or targets, split, seeds, metrics, plugins."""
    overlap = sum(f["speaker_overlap"] for f in fold_rows)
    n_folds = len({f["fold"] for f in fold_rows})
    classification = recipe.task.kind == "classification"
    out = {
        "task": recipe.task.model_dump(mode="json"),
        "corpus": recipe.data.dataset,
        "root": str(recipe.data.root) if recipe.data.root else None,
        "dataset_options": recipe.data.options,
        "test_corpus": recipe.test_data.dataset if recipe.test_data else None,
        "test_root": str(recipe.test_data.root) if recipe.test_data and recipe.test_data.root else None,
        "classes": prep.classes,
        "label_map": recipe.data.labels.map,
        "include": recipe.data.labels.include,
        "labels": prep.labels,
        "split": split_record(recipe, n_folds),
        "split_description": split_text(recipe, prep, n_folds),
        "folds": n_folds,
        "seeds": recipe.run_seeds(),
        "interval": INTERVAL_NOTE,
        "normalize": recipe.normalize,
        **({"augment": prep.augment} if prep.augment else {}),
        "n_speakers": len({c.speaker for c in prep.clips}),
        "speaker_independent": overlap == 0,
        "speaker_overlap": overlap,
        "same_audio_as_training": sum(f.get("same_audio_as_training", 0) for f in fold_rows),
        "metrics": DEFINITIONS if classification else REGRESSION_DEFINITIONS,
        "encoders": [e.model_dump(mode="json") for e in recipe.encoders],
        "fusion": recipe.fusion.model_dump(mode="json"),
    }
    chosen = [f["selection"] for f in fold_rows if f.get("selection")]
    if chosen:
        out["selection"] = {"how": chosen[0]["how"],
                            "per_fold": [{"seed": f["seed"], "fold": f["fold"],
                                          **{k: v for k, v in f["selection"].items() if k != "how"}}
                                         for f in fold_rows if f.get("selection")]}
    if classification:
        out["min_training_clips"] = MIN_TRAIN_CLIPS
        out["thin_training_classes"] = [{"seed": f["seed"], "fold": f["fold"], "classes": f["thin_train_classes"]}
                                        for f in fold_rows if f.get("thin_train_classes")]
        out["class_counts"] = class_counts(prep.train_clips, prep.classes)
        if prep.test_clips:
            out["test_class_counts"] = class_counts(prep.test_clips, prep.classes)
        out["scoring"] = ("each fold is scored over the classes present in its test labels; headline figures are "
                          "the mean over folds (and distinct seeds: a seed whose predictions repeat an earlier seed's "
                          "counts once) with the sample std and a 95% t-interval of that mean, "
                          "clipped to [0, 1]; uar_pooled scores all predictions together, its 95% interval "
                          "(uar_pooled_ci95) from resampling whole test speakers; " + INTERVAL_NOTE)
    else:
        out["scoring"] = ("each fold is scored per target; headline figures are the mean over folds (and distinct "
                          "seeds) with the sample std and a 95% t-interval (CCC's clipped to [-1, 1]); ccc_pooled "
                          "scores all predictions together; " + INTERVAL_NOTE)
    return out
