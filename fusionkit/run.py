"""``fusionkit run``: dataset -> encoders (cached) -> folds -> fusion head per fold -> metrics and report."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from fusionkit.cache import atomic_write_text, default_cache_dir
from fusionkit.encode import clip_digests, encode_clips
from fusionkit.interfaces import Clip
from fusionkit.labels import apply_labels
from fusionkit.metrics import DEFINITIONS, classification_metrics, summarize
from fusionkit.plugins import registry
from fusionkit.progress import bar
from fusionkit.recipe import Recipe, dump, plugin_options
from fusionkit.splits import make_folds

log = logging.getLogger("fusionkit")
HEADLINE = ("uar", "wa", "macro_f1", "weighted_f1")


@dataclass
class Prepared:
    """Everything before the folds: clips that every encoder could take, their features, the counts."""

    clips: list[Clip]
    classes: list[str]
    features: dict[str, dict[str, np.ndarray]]  # encoder name -> clip id -> features
    sequences: dict[str, bool]
    skipped: dict[str, str]
    embeddings: dict
    partitions: dict[str, str] | None
    encode_seconds: float


def default_run_dir(recipe: Recipe) -> Path:
    return Path("runs") / f"{recipe.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def build_encoders(recipe: Recipe) -> dict[str, object]:
    out = {}
    for spec in recipe.encoders:
        cls, options = plugin_options("encoder", spec.plugin, spec.options)
        out[spec.key] = cls(options)
    return out


def load_dataset(recipe: Recipe):
    cls, options = plugin_options("dataset", recipe.data.dataset, recipe.data.options)
    return cls(recipe.data.root, options)


def prepare(recipe: Recipe, run_dir: Path | None = None) -> Prepared:
    """Read the corpus and encode (or fetch from the cache) every clip with every encoder."""
    dataset = load_dataset(recipe)
    clips, classes = apply_labels(dataset.clips(), recipe.data.labels)
    if not clips:
        raise ValueError(f"dataset '{recipe.data.dataset}' at {recipe.data.root} yielded no labelled clips")
    log.info("%d clips, %d classes: %s", len(clips), len(classes), ", ".join(classes))
    encoders = build_encoders(recipe)
    cache_root = recipe.cache.dir or default_cache_dir()
    skipped: dict[str, str] = {}
    digests: dict[str, str] = {}
    if any(e.modality == "audio" for e in encoders.values()):
        digests, skipped = clip_digests(clips)
    if any(e.modality == "text" for e in encoders.values()) and recipe.text.source == "asr":
        from fusionkit.transcripts import transcribe_clips

        skipped.update(transcribe_clips(clips, recipe.text, digests, cache_root, run_dir))
    features, sequences, counts = {}, {}, {}
    start = time.perf_counter()
    for name, encoder in encoders.items():
        result = encode_clips(encoder, clips, cache_root, digests, label=name)
        for cid, reason in result.skipped.items():
            skipped.setdefault(cid, f"{name}: {reason}")
        features[name] = result.features
        sequences[name] = encoder.is_sequence()
        counts[name] = {"computed": result.computed, "cached": result.cached, "seconds": round(result.seconds, 2)}
        log.info("%s: %d embeddings computed, %d from cache (%.1f s)", name, result.computed, result.cached, result.seconds)
    usable = [c for c in clips if c.id not in skipped and all(c.id in f for f in features.values())]
    classes = [k for k in classes if any(c.label == k for c in usable)]
    embeddings = {
        "computed": sum(c["computed"] for c in counts.values()),
        "cached": sum(c["cached"] for c in counts.values()),
        "per_encoder": counts,
        "cache_dir": str(cache_root),
    }
    return Prepared(usable, classes, features, sequences, skipped, embeddings, dataset.partitions(),
                    time.perf_counter() - start)


def stack(feats: dict[str, np.ndarray], ids: list[str], sequence: bool):
    rows = [feats[i] for i in ids]
    return rows if sequence else np.stack(rows).astype(np.float32)


def fold_inputs(prep: Prepared, idx: np.ndarray) -> dict:
    ids = [prep.clips[i].id for i in idx]
    return {name: stack(f, ids, prep.sequences[name]) for name, f in prep.features.items()}


def run(recipe: Recipe, run_dir: Path | None = None, recipe_source: str = "") -> dict:
    """Run the recipe and write its outputs into ``run_dir``; return metrics.json's content."""
    run_dir = Path(run_dir or default_run_dir(recipe))
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.yaml", dump(recipe))
    t0 = time.perf_counter()
    prep = prepare(recipe, run_dir)
    classes = prep.classes
    y_all = np.array([classes.index(c.label) for c in prep.clips])
    groups_all = np.array([c.speaker for c in prep.clips])
    fusion_cls, fusion_options = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)
    fold_rows, pred_rows = [], []
    fit_seconds = 0.0
    seeds = recipe.run_seeds()
    plan = [(s, f) for s in seeds for f in make_folds(prep.clips, recipe.split, s, prep.partitions)]
    for seed, fold in bar(plan, desc=f"fitting {recipe.fusion.plugin}", unit="fold"):
        if len(fold.test) == 0 or len(fold.train) == 0:
            log.warning("fold %d has an empty side; skipped", fold.index)
            continue
        head = fusion_cls(fusion_options, seed=seed)
        t = time.perf_counter()
        head.fit(fold_inputs(prep, fold.train), y_all[fold.train], classes, groups_all[fold.train])
        fit_seconds += time.perf_counter() - t
        proba = head.predict_proba(fold_inputs(prep, fold.test))
        pred = proba.argmax(axis=1)
        m = classification_metrics(y_all[fold.test], pred, len(classes))
        tag = f"seed{seed}-fold{fold.index}" if len(seeds) > 1 else f"fold{fold.index}"
        head.save(run_dir / "models" / tag)
        fold_rows.append({"seed": seed, "fold": fold.index, "test_speakers": fold.test_speakers,
                          "test_size": int(len(fold.test)), "train_size": int(len(fold.train)), **m})
        for i, p, pr in zip(fold.test, pred, proba):
            clip = prep.clips[i]
            pred_rows.append([clip.id, seed, fold.index, clip.speaker, clip.label, classes[p], *[f"{v:.6f}" for v in pr]])
    if not fold_rows:
        raise ValueError("no fold could be evaluated")
    metrics = _metrics(recipe, prep, fold_rows, pred_rows, classes, fit_seconds, time.perf_counter() - t0)
    _write_predictions(run_dir / "predictions.csv", pred_rows, classes)
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    from fusionkit.report import write_report

    write_report(run_dir, metrics)
    return metrics


def _metrics(recipe, prep, fold_rows, pred_rows, classes, fit_seconds, total_seconds) -> dict:
    out: dict = {"recipe": recipe.name}
    summary = {k: summarize([f[k] for f in fold_rows]) for k in HEADLINE}
    for k in HEADLINE:
        out[k] = summary[k]["mean"]
        out[f"{k}_std"] = summary[k]["std"]
    y_true = np.array([classes.index(r[4]) for r in pred_rows])
    y_pred = np.array([classes.index(r[5]) for r in pred_rows])
    pooled = classification_metrics(y_true, y_pred, len(classes))
    out["uar_pooled"] = pooled["uar"]
    out["summary"] = summary
    out["classes"] = classes
    out["pooled"] = pooled
    out["folds"] = fold_rows
    out["skipped"] = [{"clip": cid, "reason": r} for cid, r in sorted(prep.skipped.items())]
    out["embeddings"] = prep.embeddings
    out["n_clips"] = len(prep.clips)
    out["protocol"] = {
        "corpus": recipe.data.dataset,
        "root": str(recipe.data.root) if recipe.data.root else None,
        "classes": classes,
        "label_map": recipe.data.labels.map,
        "include": recipe.data.labels.include,
        "split": recipe.split.model_dump(mode="json"),
        "folds": len({f["fold"] for f in fold_rows}),
        "seeds": recipe.run_seeds(),
        "speaker_independent": recipe.split.kind != "random",
        "scoring": "each fold is scored over the classes present in its test labels; "
                   "headline figures are the mean over folds (and seeds); uar_pooled pools all predictions",
        "metrics": DEFINITIONS,
        "encoders": [e.model_dump(mode="json") for e in recipe.encoders],
        "fusion": recipe.fusion.model_dump(mode="json"),
    }
    out["timing"] = {"encode_seconds": round(prep.encode_seconds, 2), "fit_seconds": round(fit_seconds, 2),
                     "total_seconds": round(total_seconds, 2)}
    return out


def _write_predictions(path: Path, rows, classes) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["clip_id", "seed", "fold", "speaker", "true", "predicted", *[f"p_{c}" for c in classes]])
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def results_table(metrics: dict) -> str:
    s = metrics["summary"]
    lines = [
        f"{'metric':<12} {'mean':>7} {'std':>7}   95% CI",
        *[f"{k:<12} {s[k]['mean']:7.3f} {s[k]['std']:7.3f}   [{s[k]['ci95'][0]:.3f}, {s[k]['ci95'][1]:.3f}]" for k in HEADLINE],
        f"{'uar_pooled':<12} {metrics['uar_pooled']:7.3f}",
    ]
    return "\n".join(lines)
