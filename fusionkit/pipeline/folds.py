"""The folds stage of a run: per (seed, fold) a fresh fusion head is fitted on the training side,
scored on the test side and saved under ``run_dir/models/<fold_tag>``.

Both tasks go through one loop: classification heads give class probabilities (scored by UAR, WA,
F1), regression heads give target values (scored by CCC per target). Every test prediction is
kept, as arrays, in one :class:`Predictions`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionkit.blame import blame
from fusionkit.fileio import atomic_write_text
from fusionkit.metrics import classification_metrics, regression_metrics
from fusionkit.pipeline.data import Prepared
from fusionkit.pipeline.encode import build_encoders
from fusionkit.pipeline.splits import (
    MIN_TRAIN_CLIPS,
    Fold,
    cross_corpus_fold,
    make_folds,
    speaker_overlap,
    thin_classes,
)
from fusionkit.progress import bar
from fusionkit.recipe import Recipe, plugin_options

log = logging.getLogger("fusionkit")


class FoldWorkerError(RuntimeError):
    """A process fitting folds side by side ended without a result (killed, out of memory, crashed)."""


def fold_tag(seed: int, fold_index: int, seeds: list[int]) -> str:
    """Folder name of a fold's saved head under ``run_dir/models``."""
    return f"seed{seed}-fold{fold_index}" if len(seeds) > 1 else f"fold{fold_index}"


def stack(feats: dict[str, np.ndarray], ids: list[str], sequence: bool) -> np.ndarray | list[np.ndarray]:
    """One encoder's features of ``ids``: an (N, D) float32 matrix, or a list of frame sequences."""
    rows = [feats[i] for i in ids]
    return rows if sequence else np.stack(rows).astype(np.float32)


def fold_inputs(prep: Prepared, idx: np.ndarray) -> dict:
    """A head's input for the clips at ``idx``: encoder name -> their features."""
    ids = [prep.clips[i].id for i in idx]
    return {name: stack(f, ids, prep.sequences[name]) for name, f in prep.features.items()}


def training_side(prep: Prepared, idx: np.ndarray) -> tuple[dict, np.ndarray]:
    """A head's training input for the clips at ``idx`` with their augmented copies (``augment``), and for each
    row the index of its clip (a copy takes its clip's label and speaker)."""
    if not prep.copies:
        return fold_inputs(prep, idx), np.asarray(idx)
    ids = [prep.clips[i].id for i in idx]
    rows = list(idx)
    for i in idx:
        extra = prep.copies.get(prep.clips[i].id, [])
        ids += extra
        rows += [i] * len(extra)
    return {name: stack(f, ids, prep.sequences[name]) for name, f in prep.features.items()}, np.asarray(rows)


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


@dataclass
class Predictions:
    """Every test prediction of a run, one row per (seed, fold, test clip), in fitting order.

    Classification: ``true`` and ``predicted`` are class indices into ``outputs`` (the classes)
    and ``proba`` the (N, C) probabilities. Regression: ``true`` and ``predicted`` are (N, T)
    values of ``outputs`` (the targets) and ``proba`` is None.
    """

    task: str
    outputs: list[str]
    clip_ids: np.ndarray
    seeds: np.ndarray
    folds: np.ndarray
    speakers: np.ndarray
    true: np.ndarray
    predicted: np.ndarray
    proba: np.ndarray | None = None

    def header(self) -> list[str]:
        """predictions.csv's column names."""
        if self.task == "regression":
            return ["clip_id", "seed", "fold", "speaker", *[f"true_{t}" for t in self.outputs],
                    *[f"pred_{t}" for t in self.outputs]]
        return ["clip_id", "seed", "fold", "speaker", "true", "predicted", *[f"p_{c}" for c in self.outputs]]

    def rows(self) -> list[list]:
        """predictions.csv's rows: labels as names, numbers with 6 decimals."""
        base = zip(self.clip_ids.tolist(), self.seeds.tolist(), self.folds.tolist(), self.speakers.tolist())
        if self.task == "regression":
            return [[*b, *[f"{v:.6f}" for v in t], *[f"{v:.6f}" for v in p]]
                    for b, t, p in zip(base, self.true, self.predicted)]
        names = self.outputs
        return [[*b, names[t], names[p], *[f"{v:.6f}" for v in pr]]
                for b, t, p, pr in zip(base, self.true.tolist(), self.predicted.tolist(), self.proba)]

    def write_csv(self, path: Path) -> None:
        """Write predictions.csv (atomically)."""
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.header())
        writer.writerows(self.rows())
        atomic_write_text(path, buf.getvalue())


@dataclass
class Fitted:
    """What the fold loop gives: one row of scores per fold, every prediction, the seconds spent fitting (summed
    over folds) and how many folds were fitted at once."""

    fold_rows: list[dict]
    predictions: Predictions
    fit_seconds: float
    workers: int = 1
    reused: int = 0  # folds taken from an earlier run into the same folder (finished_fold)


def fit_folds(recipe: Recipe, prep: Prepared, run_dir: Path) -> Fitted:
    """Fit, score and save a fresh head per (seed, fold); folds with an empty side are skipped.

    With more than one fold worker (``engine.fold_workers``, see :func:`fold_workers`) the folds are fitted
    side by side, each in its own process with its share of the threads; the figures are those of one by one.
    """
    regression = recipe.task.kind == "regression"
    outputs = list(recipe.task.targets) if regression else list(prep.classes)
    y = prep.targets if regression else np.array([prep.classes.index(c.label) for c in prep.clips])
    speakers = np.array([c.speaker for c in prep.clips])
    labels = np.array([str(c.label) for c in prep.clips])
    seeds = recipe.run_seeds()
    planned = []
    for seed, fold in plan_folds(recipe, prep):
        if len(fold.test) == 0 or len(fold.train) == 0:
            log.warning("fold %d has an empty side; skipped", fold.index)
            continue
        tag = fold_tag(seed, fold.index, seeds)
        thin = {} if regression else warn_thin(fold, labels, outputs, tag)
        planned.append((seed, fold, thin, warn_same_audio(fold, prep, tag)))
    if not planned:
        raise ValueError("no fold could be evaluated")
    dirs = [run_dir / "models" / fold_tag(seed, fold.index, seeds) for seed, fold, _, _ in planned]
    keys = fold_keys(recipe, prep, [(seed, fold) for seed, fold, _, _ in planned])
    reused = {i: done for i, (d, key) in enumerate(zip(dirs, keys)) if (done := finished_fold(d, key)) is not None}
    if reused:
        log.info("%d of %d folds reused from an earlier run in %s (same recipe, clips and "
                 "embeddings); %d to fit", len(reused), len(planned), run_dir, len(planned) - len(reused))
    todo = [i for i in range(len(planned)) if i not in reused]
    workers = fold_workers(recipe, prep, len(todo))  # always 1 for a head that wants the encoders
    head_cls = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)[0]
    sources = build_encoders(recipe) if _wants_encoders(head_cls) and todo else {}

    def jobs():
        for i in todo:
            seed, fold, _, _ = planned[i]
            X, rows = training_side(prep, fold.train)
            yield FoldJob(recipe.fusion.plugin, recipe.fusion.options, seed, X, y[rows], outputs, speakers[rows],
                          fold_inputs(prep, fold.test), dirs[i], regression, keys[i])

    fold_rows: list[dict] = []
    parts: list[tuple[int, Fold, np.ndarray, np.ndarray | None]] = []
    fit_seconds = 0.0
    results = iter(_run_jobs(jobs(), workers, sources))
    for i, (seed, fold, thin, same) in enumerate(bar(planned, unit="fold", desc=f"fitting {recipe.fusion.plugin}")):
        done = reused[i] if i in reused else next(results)
        fit_seconds += done.fit_seconds
        if regression:
            scores = regression_metrics(y[fold.test], done.predicted, outputs)
        else:
            scores = classification_metrics(y[fold.test], done.predicted, len(outputs))
        fold_rows.append({**_fold_base(seed, fold, speakers), "same_audio_as_training": same,
                          "thin_train_classes": thin, **scores,
                          **({"selection": done.chosen} if done.chosen else {})})
        parts.append((seed, fold, done.predicted, done.proba))
    return Fitted(fold_rows, _predictions(recipe.task.kind, outputs, prep, y, parts), fit_seconds, workers,
                  len(reused))


@dataclass
class FoldJob:
    """What fitting one fold needs: the head (plugin name, recipe options, seed), both sides' inputs, where the
    fitted head is saved. Plain data, so that it can be handed to another process."""

    plugin: str
    options: dict
    seed: int
    X_train: dict
    y_train: np.ndarray
    outputs: list[str]
    groups: np.ndarray
    X_test: dict
    model_dir: Path
    regression: bool
    key: str = ""  # from fold_keys: what the fitted head depends on; kept beside it so that a rerun can reuse it


OUTCOME = "fold-outcome.json"
"""Written into a fold's model folder after its head: the fold's test predictions and its key (:func:`fold_keys`)."""


def fold_keys(recipe: Recipe, prep: Prepared, folds: list[tuple[int, Fold]]) -> list[str]:
    """Per (seed, fold), a digest of what its fitted head and predictions depend on: fusionkit's version, its
    source and the head's, the resolved recipe and each encoder's cache key (digested once for the run), then the seed,
    both sides' clips (ids and audio content digests) and the features themselves of a few of them (so that
    normalised and raw features, say, never share a digest)."""
    from importlib import metadata

    from fusionkit.recipe import dump

    def side(idx: np.ndarray) -> list[tuple[str, str]]:
        return [(prep.clips[i].id, prep.digests.get(prep.clips[i].id, "")) for i in idx]

    try:
        version = metadata.version("fusionkit")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = ""
    encoders = {name: e.get("cache_key") for name, e in (prep.embeddings.get("per_encoder") or {}).items()}
    run = hashlib.sha256(json.dumps({"version": version, "head_code": _head_code(recipe), "recipe": dump(recipe),
                                     "encoders": encoders}, sort_keys=True, default=str).encode())
    keys = []
    for seed, fold in folds:
        digest = run.copy()
        digest.update(json.dumps({"seed": seed, "fold": fold.index, "train": side(fold.train),
                                  "test": side(fold.test)}, default=str).encode())
        for name in sorted(prep.features):
            for i in (fold.train[0], fold.train[-1], fold.test[0]):
                digest.update(np.ascontiguousarray(prep.features[name][prep.clips[i].id], dtype=np.float32).tobytes())
        keys.append(digest.hexdigest())
    return keys


def _head_code(recipe: Recipe) -> str:
    """A digest of the code a fitted head depends on: fusionkit's own source (the SDK's training loop, the
    folds, the scoring) and the fusion head's module with its sibling modules (a plugin's network file). A head
    whose code, or fusionkit's, changed is fitted again, whatever the version string says."""
    import inspect

    package = Path(__file__).resolve().parents[1]  # fusionkit/
    head_cls = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)[0]
    files = sorted(package.rglob("*.py"))
    try:
        module = Path(inspect.getfile(head_cls))
    except TypeError:  # built without a source file: fusionkit's source and the version string
        module = None
    if module is not None:
        in_package = "." in head_cls.__module__ and module.resolve().parent != package
        files += sorted(module.parent.glob("*.py")) if in_package else [module]
    digest = hashlib.sha256()
    for path in files:
        try:
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        except OSError:
            continue
    return digest.hexdigest()


def finished_fold(model_dir: Path, key: str) -> FoldDone | None:
    """The outcome of a fold an earlier run into the same folder finished with the same key (:func:`fold_keys`); None
    when there is none (or it is unreadable: the fold is then fitted again)."""
    try:
        saved = json.loads((model_dir / OUTCOME).read_text())
        if saved.get("key") != key or not key:
            return None
        proba = None if saved["proba"] is None else np.asarray(saved["proba"], dtype=np.float64)
        predicted = np.asarray(saved["predicted"], dtype=np.float64 if saved["regression"] else np.int64)
        return FoldDone(predicted, proba, saved["chosen"], float(saved["fit_seconds"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class FoldDone:
    """One fitted fold: its test predictions (class indices or values), probabilities, what the head chose."""

    predicted: np.ndarray
    proba: np.ndarray | None
    chosen: dict | None
    fit_seconds: float


def fit_one(job: FoldJob, sources: dict | None = None, threads: int | None = None) -> FoldDone:
    """Fit a fresh head on one fold's training side, predict its test side, save the head.

    ``threads``: this process's share (a fold worker's); None keeps the caller's.
    """
    if threads is not None:
        from fusionkit.resources import limit_threads

        limit_threads(threads)
    (job.model_dir / OUTCOME).unlink(missing_ok=True)  # the folder's head is about to change
    head_cls, head_options = plugin_options("fusion", job.plugin, job.options)
    with blame("fusion head", job.plugin):
        head = head_cls(head_options, seed=job.seed)
        if _wants_encoders(head_cls):
            head.attach(sources or {})
        t = time.perf_counter()
        head.fit(job.X_train, job.y_train, job.outputs, job.groups)
    seconds = time.perf_counter() - t
    n = len(next(iter(job.X_test.values())))
    outputs = _outputs(head, job, n)
    predicted, proba = (outputs, None) if job.regression else (outputs.argmax(axis=1), outputs)
    head.save(job.model_dir)
    _check_reload(head_cls, head_options, job, outputs, n)
    chosen = head.selection() if hasattr(head, "selection") else None
    if job.key:  # last, once the head is saved: a folder holding it holds a whole fold
        atomic_write_text(job.model_dir / OUTCOME, json.dumps({
            "key": job.key, "regression": job.regression, "predicted": predicted.tolist(),
            "proba": None if proba is None else proba.tolist(), "chosen": chosen, "fit_seconds": seconds},
            default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    return FoldDone(predicted, proba, chosen, seconds)


def _outputs(head, job: FoldJob, n: int) -> np.ndarray:
    """The head's predictions of the fold's test side, checked (:func:`~fusionkit.sdk.heads.checked_outputs`)."""
    from fusionkit.sdk.heads import checked_outputs

    with blame("fusion head", job.plugin):
        values = head.predict(job.X_test) if job.regression else head.predict_proba(job.X_test)
    return checked_outputs(job.plugin, values, n, len(job.outputs), probabilities=not job.regression)


RELOAD_TOLERANCE = 1e-4
"""How far a reloaded head's outputs may be from the fitted head's (float32 storage, BLAS rounding)."""


def _check_reload(head_cls: type, options, job: FoldJob, outputs: np.ndarray, n: int) -> None:
    """Load the saved head back as a bundle will and predict the test side again: a head whose save and load lose
    state (its bundles would predict something else) is refused here, naming it, not found after export."""
    from fusionkit.sdk.heads import load_head

    with blame("fusion head", job.plugin):
        again = load_head(head_cls, job.model_dir, options, job.seed)
    reloaded = _outputs(again, job, n)
    scale = 1.0 if not job.regression else max(1.0, float(np.abs(outputs).max()))
    worst = float(np.abs(reloaded - outputs).max()) if outputs.size else 0.0
    if worst > RELOAD_TOLERANCE * scale:
        raise ValueError(f"fusion head '{job.plugin}': loaded back from {job.model_dir}, it predicts other "
                         f"{'values' if job.regression else 'probabilities'} (largest difference {worst:.3g}): "
                         "its saved state misses something its predictions use")


def _wants_encoders(head_cls: type) -> bool:
    """Whether the head fine-tunes the recipe's encoders (a head need not subclass the SDK's Head)."""
    return bool(getattr(head_cls, "wants_encoders", False))


SIDE_BY_SIDE_MIN_CLIPS = 200
"""``auto`` fits folds side by side from this many clips: below it the fits take seconds, and starting the worker
processes (about 3 s on 2 cores) would cost more than it saves."""


def fold_workers(recipe: Recipe, prep: Prepared, n_folds: int) -> int:
    """How many folds are fitted at once: ``engine.fold_workers``, or with ``auto`` (the default) the CPUs
    (FUSIONKIT_THREADS, else every CPU) divided by the threads one fit takes when the head fixes that number
    (:meth:`~fusionkit.sdk.heads.Head.fit_threads`), the features are pooled vectors, the run has at least
    :data:`SIDE_BY_SIDE_MIN_CLIPS` clips and at least the head's ``quick_fit_values`` feature values; else 1.
    Never more than the folds, and always 1 for a head that fine-tunes the recipe's encoders."""
    from fusionkit.resources import threads

    setting = recipe.engine.fold_workers if recipe.engine is not None else "auto"
    head_cls, head_options = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)
    if _wants_encoders(head_cls) or n_folds < 2 or setting == 1:
        return 1
    if setting == "auto":
        with blame("fusion head", recipe.fusion.plugin):
            per_fit = getattr(head_cls(head_options, seed=0), "fit_threads", lambda: None)()
        if per_fit is None or any(prep.sequences.values()) or len(prep.clips) < SIDE_BY_SIDE_MIN_CLIPS:
            return 1
        if feature_values(prep) < getattr(head_cls, "quick_fit_values", 0):
            return 1
        setting = threads() // per_fit
    return max(1, min(int(setting), n_folds))


def feature_values(prep: Prepared) -> int:
    """Clips x the width of their pooled features, all encoders together."""
    width = sum(int(np.size(next(iter(per_clip.values())))) for per_clip in prep.features.values() if per_clip)
    return len(prep.clips) * width


def _run_jobs(jobs, workers: int, sources: dict):
    """The :class:`FoldDone` of each job, in order: here one after the other, or in ``workers`` processes
    (joblib's loky backend) each with its share of the threads."""
    if workers == 1:
        for job in jobs:
            yield fit_one(job, sources)
        return
    from joblib import Parallel, delayed, parallel_config
    from joblib.externals.loky import get_reusable_executor
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    from fusionkit.resources import threads

    share = max(1, threads() // workers)
    try:
        with parallel_config(backend="loky", inner_max_num_threads=share):
            yield from Parallel(n_jobs=workers, return_as="generator")(
                delayed(fit_one)(job, None, share) for job in jobs)
    except TerminatedWorkerError as exc:
        codes = re.search(r"exit codes of the workers are (\{.*?\})", str(exc))
        raise FoldWorkerError(
            f"a fold worker process ended unexpectedly (exit codes {codes.group(1) if codes else 'unknown'}: killed, "
            f"out of memory or crashed); --set engine.fold_workers=1 fits one fold at a time") from None
    finally:  # no worker outlives the run (loky keeps them for reuse otherwise)
        get_reusable_executor().shutdown(wait=True)


def warn_thin(fold: Fold, labels: np.ndarray, classes: list[str], tag: str) -> dict[str, int]:
    """The classes the fold's training side lacks or nearly lacks (name -> clips), warned about in one line."""
    thin = thin_classes(fold, labels, classes)
    if thin:
        listed = ", ".join(f"{c} ({n or 'none'})" for c, n in thin.items())
        log.warning("%s: the training side has fewer than %d clips of %s; the head can hardly learn %s",
                    tag, MIN_TRAIN_CLIPS, listed, "them" if len(thin) > 1 else "it")
    return thin


def warn_same_audio(fold: Fold, prep: Prepared, tag: str) -> int:
    """How many test clips have the very audio of a training clip (the same file content under another name: a
    copy scored as if unseen), warned about in one line naming the first pair."""
    if not prep.digests:
        return 0
    trained = {}
    for i in fold.train:
        digest = prep.digests.get(prep.clips[i].id)
        if digest is not None:
            trained.setdefault(digest, prep.clips[i].id)
    same = [(prep.clips[i].id, trained[d]) for i in fold.test if (d := prep.digests.get(prep.clips[i].id)) in trained]
    if same:
        log.warning("%s: %d test clip(s) have the same audio as a training clip (e.g. %s = %s): their scores are "
                    "not those of unseen audio; remove the copies from the corpus", tag, len(same), *same[0])
    return len(same)


def _fold_base(seed: int, fold: Fold, speakers: np.ndarray) -> dict:
    return {"seed": seed, "fold": fold.index, "test_speakers": fold.test_speakers,
            "test_size": int(len(fold.test)), "train_size": int(len(fold.train)),
            "speaker_overlap": len(speaker_overlap(fold, speakers))}


def _predictions(task: str, outputs: list[str], prep: Prepared, y: np.ndarray,
                 parts: list[tuple[int, Fold, np.ndarray, np.ndarray | None]]) -> Predictions:
    """The folds' test predictions joined into one :class:`Predictions`."""
    idx = np.concatenate([fold.test for _, fold, _, _ in parts])
    ids = np.array([c.id for c in prep.clips], dtype=object)
    names = np.array([c.speaker for c in prep.clips], dtype=object)
    return Predictions(
        task=task,
        outputs=outputs,
        clip_ids=ids[idx],
        seeds=np.concatenate([np.full(len(fold.test), seed) for seed, fold, _, _ in parts]),
        folds=np.concatenate([np.full(len(fold.test), fold.index) for _, fold, _, _ in parts]),
        speakers=names[idx],
        true=y[idx],
        predicted=np.concatenate([p for _, _, p, _ in parts]),
        proba=None if task == "regression" else np.concatenate([p for *_, p in parts]),
    )
