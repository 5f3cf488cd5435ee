"""Scores of one fold, and their summary over folds and seeds.

Classification: UAR is the mean recall over the classes present in the fold's test labels
(a class absent from a fold's test set has no recall there and is not counted as 0).
Regression: the concordance correlation coefficient (CCC) per target, with Pearson r,
RMSE and MAE beside it.
"""

from __future__ import annotations

import numpy as np

DEFINITIONS = {
    "uar": "unweighted average recall: mean over classes of recall, over the classes present in the fold's test labels",
    "wa": "weighted accuracy: fraction of test clips labelled correctly",
    "macro_f1": "mean F1 over the classes present in the fold's test labels",
    "weighted_f1": "F1 per class weighted by its test support",
    "uar_pooled": "UAR over all folds' predictions taken together",
}
REGRESSION_DEFINITIONS = {
    "ccc": "concordance correlation coefficient 2*cov(y, p) / (var(y) + var(p) + (mean(y) - mean(p))^2), "
           "population moments, per target; 'ccc' alone is the mean over targets",
    "pearson": "Pearson correlation of prediction and truth, per target",
    "rmse": "root mean squared error, per target, in the target's units",
    "mae": "mean absolute error, per target",
    "ccc_pooled": "CCC over all folds' predictions taken together (mean over targets)",
}


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    present = np.unique(y_true)
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))
    support = cm.sum(axis=1)
    recall = np.divide(np.diag(cm), support, out=np.zeros(n_classes), where=support > 0)
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(n_classes), zero_division=0
    )
    return {
        "uar": float(recall[present].mean()),
        "wa": float((y_true == y_pred).mean()),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0)),
        "per_class": {
            "precision": p.tolist(),
            "recall": r.tolist(),
            "f1": f.tolist(),
            "support": support.tolist(),
        },
        "confusion": cm.tolist(),
    }


INTERVAL_NOTE = ("the 95% interval treats the fold (x seed) scores as independent samples; they are not (folds "
                 "share training speakers, seeds re-score the same test clips), so it understates the uncertainty")


def metric_range(key: str) -> tuple[float, float]:
    """The values a per-fold score can take: [0, 1] for recalls, accuracies and F1, [-1, 1] for correlations."""
    if key.startswith(("ccc", "pearson")):
        return -1.0, 1.0
    if key.startswith(("rmse", "mae")):
        return 0.0, float("inf")
    return 0.0, 1.0


def summarize(values: list[float], bounds: tuple[float, float] | None = None) -> dict:
    """Mean, standard deviation (n-1) and a 95% t-interval of the mean, clipped to ``bounds`` when given.

    The interval treats the values as independent samples (see INTERVAL_NOTE).
    """
    a = np.asarray(values, dtype=float)
    n = len(a)
    mean = float(a.mean()) if n else float("nan")
    std = float(a.std(ddof=1)) if n > 1 else 0.0
    if n > 1:
        from scipy import stats

        half = float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n))
    else:
        half = 0.0
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"mean": mean, "std": std, "ci95": [low, high], "n": n}


def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Lin's concordance correlation coefficient (population moments); 0 when both are constant."""
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    mt, mp = t.mean(), p.mean()
    cov = ((t - mt) * (p - mp)).mean()
    denom = t.var() + p.var() + (mt - mp) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if t.std() == 0 or p.std() == 0:
        return 0.0
    return float(np.corrcoef(t, p)[0, 1])


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, targets: list[str]) -> dict:
    """Per-target CCC, Pearson r, RMSE, MAE for (N, T) arrays; ``ccc`` is their mean CCC."""
    y_true = np.asarray(y_true, dtype=float).reshape(len(y_true), len(targets))
    y_pred = np.asarray(y_pred, dtype=float).reshape(len(y_pred), len(targets))
    out: dict = {}
    for j, name in enumerate(targets):
        t, p = y_true[:, j], y_pred[:, j]
        out[f"ccc_{name}"] = ccc(t, p)
        out[f"pearson_{name}"] = pearson(t, p)
        out[f"rmse_{name}"] = float(np.sqrt(((t - p) ** 2).mean()))
        out[f"mae_{name}"] = float(np.abs(t - p).mean())
    out["ccc"] = float(np.mean([out[f"ccc_{n}"] for n in targets]))
    return out


def _speaker_bootstrap(y_true, predictions: list, groups, n_boot: int, seed: int
                       ) -> tuple[list[float], list[np.ndarray], int]:
    """Pooled UAR of each of ``predictions`` (labels for the same clips) on all clips, and on ``n_boot`` resamples
    that draw whole ``groups`` (speakers) with replacement, the same draws for every prediction; and the number
    of groups. Vectorised: per (group, true class) counts, each resample a weight vector over the groups."""
    y = np.asarray(y_true)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    classes, yi = np.unique(y, return_inverse=True)
    n_groups, n_classes = int(g.max()) + 1, len(classes)
    cell = g * n_classes + yi
    size = n_groups * n_classes
    total = np.bincount(cell, minlength=size).reshape(n_groups, n_classes).astype(float)
    rights = [np.bincount(cell, weights=(np.asarray(p) == y), minlength=size).reshape(n_groups, n_classes)
              for p in predictions]

    def uar(weights: np.ndarray, right: np.ndarray) -> np.ndarray:
        n = weights @ total
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(n > 0, (weights @ right) / np.where(n > 0, n, 1), np.nan)
        return np.nanmean(recall, axis=-1)

    ones = np.ones(n_groups)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_boot).astype(float)
    return [float(uar(ones, r)) for r in rights], [uar(weights, r) for r in rights], n_groups


def uar_difference(y_true, pred_a, pred_b, groups, n_boot: int = 2000, seed: int = 0) -> dict:
    """Pooled UAR of predictions ``a`` minus that of ``b`` on the same clips, with a 95% percentile interval and a
    two-sided p-value from a bootstrap that resamples whole ``groups`` (speakers) with replacement.

    Resampling speakers rather than clips keeps each speaker's clips together, as the speaker-independent
    protocol treats them (scipy's ``bootstrap`` resamples single observations only). Returns ``diff``,
    ``ci95`` ([low, high]), ``p`` and ``groups`` (how many were resampled).
    """
    (a, b), (boot_a, boot_b), n_groups = _speaker_bootstrap(y_true, [pred_a, pred_b], groups, n_boot, seed)
    boot = boot_a - boot_b
    low, high = (float(x) for x in np.percentile(boot, [2.5, 97.5]))
    p = float(min(1.0, max(2 * min(np.mean(boot <= 0), np.mean(boot >= 0)), 1 / n_boot)))  # not below 1/n_boot
    return {"diff": a - b, "ci95": [low, high], "p": p, "groups": n_groups}


def uar_interval(y_true, predicted, groups, n_boot: int = 2000, seed: int = 0) -> dict | None:
    """A 95% percentile interval of the pooled UAR from a bootstrap of whole ``groups`` (test speakers): how far
    the figure could move with other test speakers of the same kind (not with other training speakers), without
    the t-interval's assumption that fold scores are independent.
    ``{"uar", "ci95", "groups", "resamples"}``; None with fewer than 2 groups (nothing to resample)."""
    if len(set(np.asarray(groups).tolist())) < 2:
        return None
    (value,), (boot,), n_groups = _speaker_bootstrap(y_true, [predicted], groups, n_boot, seed)
    low, high = (float(x) for x in np.nanpercentile(boot, [2.5, 97.5]))
    return {"uar": value, "ci95": [low, high], "groups": n_groups, "resamples": n_boot}


def seed_order(seed: str) -> tuple:
    """Sort key of a seed read from a predictions.csv: whole numbers by value, then anything else."""
    return (0, int(seed), seed) if seed.lstrip("-").isdigit() else (1, 0, seed)


def paired_uar_difference(a: dict, b: dict, min_shared: float = 0.9) -> dict | None:
    """:func:`uar_difference` of two runs' predictions on the test clips both labelled: ``a`` and ``b`` map
    (clip id, seed) to (true label, speaker, predicted label), as a predictions.csv reads.

    Both are first restricted to the seeds they share (a run with seeds 0 and 1 against one with seed 0 compares
    seed 0); the result's ``seeds`` lists them. None where they share no seed, or where fewer than ``min_shared``
    of the larger side's rows on those seeds are shared (the two did not label the same clips)."""
    seeds = {s for _, s in a} & {s for _, s in b}
    a = {k: v for k, v in a.items() if k[1] in seeds}
    b = {k: v for k, v in b.items() if k[1] in seeds}
    shared = sorted(set(a) & set(b))
    if not shared or len(shared) < min_shared * max(len(a), len(b)):
        return None
    true, speaker = zip(*((a[k][0], a[k][1]) for k in shared))
    return {**uar_difference(true, [a[k][2] for k in shared], [b[k][2] for k in shared], speaker),
            "seeds": sorted(seeds, key=seed_order)}
