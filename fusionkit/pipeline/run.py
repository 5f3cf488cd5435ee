"""``fusionkit run``: dataset(s) -> encoders (cached) -> folds -> head per fold -> metrics and report.

Two tasks: classification (the default; a :class:`~fusionkit.sdk.base.FusionHead` per fold,
UAR/WA/F1) and regression (``task: {kind: regression, targets: [...]}``; a
:class:`~fusionkit.sdk.regression.RegressionHead` per fold, CCC per target). With ``test_data``
the evaluation is cross-corpus: train on all of ``data``, test on all of ``test_data``, over
the classes both corpora share after their label mappings.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from fusionkit.fileio import atomic_write_text, default_cache_dir
from fusionkit.pipeline.encode import clip_digests, encode_clips
from fusionkit.sdk.base import Clip
from fusionkit.pipeline.labels import apply_labels, class_counts, regression_targets, target_value
from fusionkit.metrics import DEFINITIONS, REGRESSION_DEFINITIONS, classification_metrics, regression_metrics, summarize
from fusionkit.progress import bar
from fusionkit.recipe import DataSpec, Recipe, dump, plugin_options
from fusionkit.pipeline.splits import Fold, cross_corpus_fold, make_folds, speaker_overlap

log = logging.getLogger("fusionkit")
HEADLINE = ("uar", "wa", "macro_f1", "weighted_f1")


@dataclass
class Prepared:
    """Everything before the folds: clips that every encoder could take, their features, the counts.

    Cross-corpus: ``clips[:n_train]`` come from ``data`` and the rest from ``test_data``.
    Regression: ``targets`` holds the (N, T) target values of ``clips``.
    """

    clips: list[Clip]
    classes: list[str]
    features: dict[str, dict[str, np.ndarray]]  # encoder name -> clip id -> features
    sequences: dict[str, bool]
    skipped: dict[str, str]
    embeddings: dict
    partitions: dict[str, str] | None
    encode_seconds: float
    n_train: int | None = None
    targets: np.ndarray | None = None
    labels: dict = field(default_factory=dict)  # how classes were chosen, for the protocol


def default_run_dir(recipe: Recipe) -> Path:
    return Path("runs") / f"{recipe.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def build_encoders(recipe: Recipe) -> dict[str, object]:
    out = {}
    for spec in recipe.encoders:
        cls, options = plugin_options("encoder", spec.plugin, spec.options)
        out[spec.key] = cls(options)
    return out


def load_dataset(recipe: Recipe, spec: DataSpec | None = None):
    """The dataset plugin of ``spec`` (default: ``recipe.data``), with its options validated."""
    spec = spec or recipe.data
    cls, options = plugin_options("dataset", spec.dataset, spec.options)
    return cls(spec.root, options)


def _select(recipe: Recipe, spec: DataSpec, role: str, dataset) -> tuple[list[Clip], list[str]]:
    """Clips of one corpus with what the task predicts: mapped classes, or numeric targets."""
    clips = dataset.clips()
    if recipe.task.kind == "regression":
        kept, _ = regression_targets(clips, recipe.task.targets, role)
        return kept, []
    kept, classes = apply_labels(clips, spec.labels, role)
    if not kept:
        raise ValueError(f"{role}: dataset '{spec.dataset}' at {spec.root} yielded no labelled clips")
    return kept, classes


def _shared_classes(recipe: Recipe, train: list[Clip], test: list[Clip], train_classes, test_classes) -> tuple:
    """Cross-corpus classes: those both corpora have after mapping, in data's class order."""
    shared = [c for c in train_classes if c in set(test_classes)]
    info = {"train_only": [c for c in train_classes if c not in shared],
            "test_only": [c for c in test_classes if c not in shared]}
    if not shared:
        raise ValueError(f"cross-corpus: data ({', '.join(train_classes)}) and test_data ({', '.join(test_classes)}) "
                         "share no class; map them to common names in data.labels.map / test_data.labels.map")
    if info["train_only"] or info["test_only"]:
        log.warning("cross-corpus: classes left out (not in both corpora): %s",
                    ", ".join(info["train_only"] + info["test_only"]))
    return shared, info


def _unique_ids(train: list[Clip], test: list[Clip], prefix: str) -> None:
    """Give test clips whose id is also a training id a ``prefix:`` so features do not mix."""
    seen = {c.id for c in train}
    for c in test:
        if c.id in seen:
            c.id = f"{prefix}:{c.id}"


def prepare(recipe: Recipe, run_dir: Path | None = None) -> Prepared:
    """Read the corpus (and test corpus) and encode (or fetch from the cache) every clip with every encoder."""
    dataset = load_dataset(recipe)
    clips, classes = _select(recipe, recipe.data, "data", dataset)
    labels: dict = {"data": {"dataset": recipe.data.dataset, "map": recipe.data.labels.map,
                             "include": recipe.data.labels.include}}
    test: list[Clip] = []
    if recipe.test_data is not None:
        test, test_classes = _select(recipe, recipe.test_data, "test_data", load_dataset(recipe, recipe.test_data))
        labels["test_data"] = {"dataset": recipe.test_data.dataset, "map": recipe.test_data.labels.map,
                               "include": recipe.test_data.labels.include}
        if recipe.task.kind == "classification":
            classes, labels["left_out"] = _shared_classes(recipe, clips, test, classes, test_classes)
            clips = [c for c in clips if c.label in classes]
            test = [c for c in test if c.label in classes]
        _unique_ids(clips, test, recipe.test_data.dataset)
    every = clips + test
    if recipe.task.kind == "classification":
        log.info("%d clips, %d classes: %s", len(every), len(classes), ", ".join(classes))
    encoders = build_encoders(recipe)
    cache_root = recipe.cache.dir or default_cache_dir()
    skipped: dict[str, str] = {}
    digests: dict[str, str] = {}
    if any(e.modality == "audio" for e in encoders.values()):
        digests, skipped = clip_digests(every)
    if any(e.modality == "text" for e in encoders.values()) and recipe.text.source == "asr":
        from fusionkit.pipeline.transcripts import transcribe_clips

        skipped.update(transcribe_clips(every, recipe.text, digests, cache_root, run_dir))
    features, sequences, counts = {}, {}, {}
    start = time.perf_counter()
    for name, encoder in encoders.items():
        result = encode_clips(encoder, every, cache_root, digests, label=name)
        for cid, reason in result.skipped.items():
            skipped.setdefault(cid, f"{name}: {reason}")
        features[name] = result.features
        sequences[name] = encoder.is_sequence()
        counts[name] = {"computed": result.computed, "cached": result.cached, "seconds": round(result.seconds, 2),
                        "cache_key": encoder.cache_key()}
        log.info("%s: %d embeddings computed, %d from cache (%.1f s)", name, result.computed, result.cached, result.seconds)

    def ok(c: Clip) -> bool:
        return c.id not in skipped and all(c.id in f for f in features.values())

    usable_train = [c for c in clips if ok(c)]
    usable_test = [c for c in test if ok(c)]
    usable = usable_train + usable_test
    targets = None
    if recipe.task.kind == "regression":
        targets = np.array([[target_value(c, t) for t in recipe.task.targets] for c in usable], dtype=np.float64)
        classes = []
    elif recipe.test_data is not None:
        classes = [k for k in classes if any(c.label == k for c in usable_train) and any(c.label == k for c in usable_test)]
        usable_train = [c for c in usable_train if c.label in classes]
        usable_test = [c for c in usable_test if c.label in classes]
        usable = usable_train + usable_test
    else:
        classes = [k for k in classes if any(c.label == k for c in usable)]
    if not usable:
        raise ValueError(f"no clip of '{recipe.data.dataset}' could be used (all {len(every)} skipped)")
    if recipe.test_data is not None and (not usable_train or not usable_test):
        raise ValueError("cross-corpus: one side has no usable clip after skipping")
    embeddings = {
        "computed": sum(c["computed"] for c in counts.values()),
        "cached": sum(c["cached"] for c in counts.values()),
        "per_encoder": counts,
        "cache_dir": str(cache_root),
    }
    return Prepared(usable, classes, features, sequences, skipped, embeddings, dataset.partitions(),
                    time.perf_counter() - start, n_train=len(usable_train) if recipe.test_data is not None else None,
                    targets=targets, labels=labels)


def stack(feats: dict[str, np.ndarray], ids: list[str], sequence: bool):
    rows = [feats[i] for i in ids]
    return rows if sequence else np.stack(rows).astype(np.float32)


def fold_inputs(prep: Prepared, idx: np.ndarray) -> dict:
    ids = [prep.clips[i].id for i in idx]
    return {name: stack(f, ids, prep.sequences[name]) for name, f in prep.features.items()}


def plan_folds(recipe: Recipe, prep: Prepared) -> list[tuple[int, Fold]]:
    """(seed, fold) pairs: the split's folds for every seed (the folds can depend on the seed)."""
    speakers = np.array([c.speaker for c in prep.clips])
    out = []
    for seed in recipe.run_seeds():
        if prep.n_train is not None:
            folds = [cross_corpus_fold(prep.n_train, len(prep.clips) - prep.n_train, speakers)]
        else:
            folds = make_folds(prep.clips, recipe.split, seed, prep.partitions)
        out += [(seed, f) for f in folds]
    return out


def run(recipe: Recipe, run_dir: Path | None = None, recipe_source: str = "") -> dict:
    """Run the recipe and write its outputs into ``run_dir``; return metrics.json's content."""
    run_dir = Path(run_dir or default_run_dir(recipe))
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "recipe.yaml", dump(recipe))
    t0 = time.perf_counter()
    prep = prepare(recipe, run_dir)
    if recipe.normalize != "none":
        from fusionkit.pipeline.normalize import normalize_features

        test_ids = {c.id for c in prep.clips[prep.n_train:]} if prep.n_train is not None else set()
        prep.features = normalize_features(prep.features, prep.sequences, prep.clips, recipe.normalize, test_ids)
    fit = _fit_regression if recipe.task.kind == "regression" else _fit_classification
    fold_rows, pred_rows, header, fit_seconds = fit(recipe, prep, run_dir)
    if not fold_rows:
        raise ValueError("no fold could be evaluated")
    if recipe.task.kind == "regression":
        metrics = _regression_metrics(recipe, prep, fold_rows, pred_rows, fit_seconds, time.perf_counter() - t0)
    else:
        metrics = _metrics(recipe, prep, fold_rows, pred_rows, prep.classes, fit_seconds, time.perf_counter() - t0)
    _write_csv(run_dir / "predictions.csv", header, pred_rows)
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    from fusionkit.pipeline.report import write_report

    write_report(run_dir, metrics)
    return metrics


def _fold_base(seed: int, fold: Fold, speakers: np.ndarray) -> dict:
    return {"seed": seed, "fold": fold.index, "test_speakers": fold.test_speakers,
            "test_size": int(len(fold.test)), "train_size": int(len(fold.train)),
            "speaker_overlap": len(speaker_overlap(fold, speakers))}


def fold_tag(seed: int, fold_index: int, seeds: list[int]) -> str:
    """Folder name of a fold's saved head under ``run_dir/models``."""
    return f"seed{seed}-fold{fold_index}" if len(seeds) > 1 else f"fold{fold_index}"


def _fit_folds(recipe: Recipe, prep: Prepared, run_dir: Path, y: np.ndarray, outputs: list[str], evaluate):
    """The fold loop of both tasks: per fold a fresh head is fitted, scored on the test side
    (``evaluate(head, X_test, seed, fold) -> (metrics, prediction rows)``) and saved."""
    groups_all = np.array([c.speaker for c in prep.clips])
    head_cls, head_options = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)
    fold_rows, pred_rows, fit_seconds = [], [], 0.0
    seeds = recipe.run_seeds()
    for seed, fold in bar(plan_folds(recipe, prep), desc=f"fitting {recipe.fusion.plugin}", unit="fold"):
        if len(fold.test) == 0 or len(fold.train) == 0:
            log.warning("fold %d has an empty side; skipped", fold.index)
            continue
        head = head_cls(head_options, seed=seed)
        t = time.perf_counter()
        head.fit(fold_inputs(prep, fold.train), y[fold.train], outputs, groups_all[fold.train])
        fit_seconds += time.perf_counter() - t
        metrics, rows = evaluate(head, fold_inputs(prep, fold.test), seed, fold)
        head.save(run_dir / "models" / fold_tag(seed, fold.index, seeds))
        fold_rows.append({**_fold_base(seed, fold, groups_all), **metrics})
        pred_rows += rows
    return fold_rows, pred_rows, fit_seconds


def _fit_classification(recipe: Recipe, prep: Prepared, run_dir: Path):
    classes = prep.classes
    y_all = np.array([classes.index(c.label) for c in prep.clips])

    def evaluate(head, X, seed: int, fold: Fold):
        proba = head.predict_proba(X)
        pred = proba.argmax(axis=1)
        rows = [[prep.clips[i].id, seed, fold.index, prep.clips[i].speaker, prep.clips[i].label, classes[p],
                 *[f"{v:.6f}" for v in pr]] for i, p, pr in zip(fold.test, pred, proba)]
        return classification_metrics(y_all[fold.test], pred, len(classes)), rows

    fold_rows, pred_rows, fit_seconds = _fit_folds(recipe, prep, run_dir, y_all, classes, evaluate)
    header = ["clip_id", "seed", "fold", "speaker", "true", "predicted", *[f"p_{c}" for c in classes]]
    return fold_rows, pred_rows, header, fit_seconds


def _fit_regression(recipe: Recipe, prep: Prepared, run_dir: Path):
    targets = list(recipe.task.targets)
    Y = prep.targets

    def evaluate(head, X, seed: int, fold: Fold):
        P = np.asarray(head.predict(X), dtype=np.float64).reshape(len(fold.test), len(targets))
        rows = [[prep.clips[i].id, seed, fold.index, prep.clips[i].speaker,
                 *[f"{v:.6f}" for v in Y[i]], *[f"{v:.6f}" for v in p]] for i, p in zip(fold.test, P)]
        return regression_metrics(Y[fold.test], P, targets), rows

    fold_rows, pred_rows, fit_seconds = _fit_folds(recipe, prep, run_dir, Y, targets, evaluate)
    header = ["clip_id", "seed", "fold", "speaker", *[f"true_{t}" for t in targets], *[f"pred_{t}" for t in targets]]
    return fold_rows, pred_rows, header, fit_seconds


def _seed_summary(fold_rows: list[dict], keys) -> dict:
    """Per seed, the mean over its folds; and over seeds, the summary of those means (run-to-run spread)."""
    seeds = sorted({f["seed"] for f in fold_rows})
    per_seed = {str(s): {k: float(np.mean([f[k] for f in fold_rows if f["seed"] == s])) for k in keys} for s in seeds}
    over = {k: summarize([per_seed[str(s)][k] for s in seeds]) for k in keys}
    return {"per_seed": per_seed, "over_seeds": over}


def _split_text(recipe: Recipe, prep: Prepared, n_folds: int) -> str:
    kind = recipe.split.kind
    if kind == "cross-corpus":
        return f"cross-corpus: train on all of {recipe.data.dataset}, test on all of {recipe.test_data.dataset}"
    speakers = len({c.speaker for c in prep.clips})
    return {
        "speaker-kfold": f"{n_folds} speaker-independent folds over {speakers} speakers"
                         f"{' (speakers shuffled by seed)' if recipe.split.shuffle else ' (naturally sorted speaker blocks)'}",
        "loso": f"leave-one-speaker-out over {speakers} speakers ({n_folds} folds)",
        "session": f"leave-one-session-out ({n_folds} sessions)",
        "predefined": f"predefined partitions: train on {', '.join(recipe.split.train)}, test on {', '.join(recipe.split.test)}",
        "file": f"folds from {recipe.split.file} ({n_folds} folds)",
        "random": f"{n_folds} random stratified folds: speakers LEAK between train and test",
    }[kind]


def _protocol(recipe: Recipe, prep: Prepared, fold_rows: list[dict], definitions: dict) -> dict:
    overlap = sum(f["speaker_overlap"] for f in fold_rows)
    n_folds = len({f["fold"] for f in fold_rows})
    train = prep.clips[: prep.n_train] if prep.n_train is not None else prep.clips
    test = prep.clips[prep.n_train:] if prep.n_train is not None else []
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
        "split": recipe.split.model_dump(mode="json"),
        "split_description": _split_text(recipe, prep, n_folds),
        "folds": n_folds,
        "seeds": recipe.run_seeds(),
        "normalize": recipe.normalize,
        "n_speakers": len({c.speaker for c in prep.clips}),
        "speaker_independent": overlap == 0,
        "speaker_overlap": overlap,
        "metrics": definitions,
        "encoders": [e.model_dump(mode="json") for e in recipe.encoders],
        "fusion": recipe.fusion.model_dump(mode="json"),
    }
    if recipe.task.kind == "classification":
        out["class_counts"] = class_counts(train, prep.classes)
        if test:
            out["test_class_counts"] = class_counts(test, prep.classes)
        out["scoring"] = ("each fold is scored over the classes present in its test labels; headline figures are "
                          "the mean over folds (and seeds) with the sample std and a 95% t-interval of that mean; "
                          "uar_pooled scores all predictions together")
    else:
        out["scoring"] = ("each fold is scored per target; headline figures are the mean over folds (and seeds) "
                          "with the sample std and a 95% t-interval; ccc_pooled scores all predictions together")
    return out


def _metrics(recipe, prep, fold_rows, pred_rows, classes, fit_seconds, total_seconds) -> dict:
    out: dict = {"recipe": recipe.name, "task": "classification"}
    summary = {k: summarize([f[k] for f in fold_rows]) for k in HEADLINE}
    for k in HEADLINE:
        out[k] = summary[k]["mean"]
        out[f"{k}_std"] = summary[k]["std"]
    y_true = np.array([classes.index(r[4]) for r in pred_rows])
    y_pred = np.array([classes.index(r[5]) for r in pred_rows])
    pooled = classification_metrics(y_true, y_pred, len(classes))
    out["uar_pooled"] = pooled["uar"]
    out["summary"] = summary
    if len(recipe.run_seeds()) > 1:
        out["seeds"] = _seed_summary(fold_rows, HEADLINE)
    out["classes"] = classes
    out["pooled"] = pooled
    out["folds"] = fold_rows
    out["skipped"] = [{"clip": cid, "reason": r} for cid, r in sorted(prep.skipped.items())]
    out["embeddings"] = prep.embeddings
    out["n_clips"] = len(prep.clips)
    out["protocol"] = _protocol(recipe, prep, fold_rows, DEFINITIONS)
    out["timing"] = {"encode_seconds": round(prep.encode_seconds, 2), "fit_seconds": round(fit_seconds, 2),
                     "total_seconds": round(total_seconds, 2)}
    return out


def _regression_metrics(recipe, prep, fold_rows, pred_rows, fit_seconds, total_seconds) -> dict:
    targets = recipe.task.targets
    keys = ["ccc", *[f"{m}_{t}" for t in targets for m in ("ccc", "pearson", "rmse", "mae")]]
    out: dict = {"recipe": recipe.name, "task": "regression", "targets": targets}
    summary = {k: summarize([f[k] for f in fold_rows]) for k in keys}
    for k in keys:
        out[k] = summary[k]["mean"]
        out[f"{k}_std"] = summary[k]["std"]
    T = len(targets)
    true = np.array([[float(v) for v in r[4:4 + T]] for r in pred_rows])
    pred = np.array([[float(v) for v in r[4 + T:4 + 2 * T]] for r in pred_rows])
    pooled = regression_metrics(true, pred, targets)
    out["ccc_pooled"] = pooled["ccc"]
    out["summary"] = summary
    if len(recipe.run_seeds()) > 1:
        out["seeds"] = _seed_summary(fold_rows, keys)
    out["pooled"] = pooled
    out["folds"] = fold_rows
    out["skipped"] = [{"clip": cid, "reason": r} for cid, r in sorted(prep.skipped.items())]
    out["embeddings"] = prep.embeddings
    out["n_clips"] = len(prep.clips)
    out["classes"] = []
    out["protocol"] = _protocol(recipe, prep, fold_rows, REGRESSION_DEFINITIONS)
    out["timing"] = {"encode_seconds": round(prep.encode_seconds, 2), "fit_seconds": round(fit_seconds, 2),
                     "total_seconds": round(total_seconds, 2)}
    return out


def _write_csv(path: Path, header: list[str], rows) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def protocol_lines(metrics: dict) -> list[str]:
    """The protocol in a few lines, printed above the results."""
    p = metrics["protocol"]
    corpus = p["corpus"] + (f" -> {p['test_corpus']}" if p.get("test_corpus") else "")
    norm = f"; features z-scored per {p['normalize']}" if p.get("normalize", "none") != "none" else ""
    lines = [f"protocol: {corpus}; {p.get('split_description', p['split']['kind'])}; seeds {p['seeds']}{norm}"]
    if metrics.get("task") == "regression":
        lines.append(f"targets: {', '.join(metrics['targets'])} (CCC per target; ccc = their mean)")
    else:
        mapping = ", ".join(f"{k}->{v}" for k, v in (p.get("label_map") or {}).items())
        lines.append(f"classes: {', '.join(p['classes'])}" + (f" (mapped {mapping})" if mapping else ""))
    if not p.get("speaker_independent", True):
        lines.append(f"WARNING: {p.get('speaker_overlap')} speaker(s) appear in both train and test of a fold")
    lines.append("scoring: " + p["scoring"])
    return lines


def _ci_text(s: dict) -> str:
    if s["n"] < 2:
        return "n/a (one score)"
    return f"[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"


def results_table(metrics: dict) -> str:
    s = metrics["summary"]
    if metrics.get("task") == "regression":
        keys = ["ccc", *[f"ccc_{t}" for t in metrics["targets"]], *[f"pearson_{t}" for t in metrics["targets"]]]
        pooled = f"{'ccc_pooled':<16} {metrics['ccc_pooled']:7.3f}"
    else:
        keys = list(HEADLINE)
        pooled = f"{'uar_pooled':<16} {metrics['uar_pooled']:7.3f}"
    lines = [
        *protocol_lines(metrics),
        "",
        f"{'metric':<16} {'mean':>7} {'std':>7}   95% CI   (n={s[keys[0]]['n']} folds x seeds)",
        *[f"{k:<16} {s[k]['mean']:7.3f} {s[k]['std']:7.3f}   " + _ci_text(s[k]) for k in keys],
        pooled,
    ]
    if "seeds" in metrics:
        over = metrics["seeds"]["over_seeds"][keys[0]]
        lines.append(f"{keys[0]} over seeds: mean {over['mean']:.3f}, std {over['std']:.3f} "
                     f"({len(metrics['seeds']['per_seed'])} seeds, each the mean of its folds)")
    if metrics.get("task") != "regression" and metrics["classes"]:
        rec = metrics["pooled"]["per_class"]["recall"]
        lines.append("recall: " + ", ".join(f"{c} {r:.2f}" for c, r in zip(metrics["classes"], rec)))
    return "\n".join(lines)
