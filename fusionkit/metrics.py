"""Classification metrics. UAR is the mean recall over the classes present in the fold's test set."""

from __future__ import annotations

import numpy as np

DEFINITIONS = {
    "uar": "unweighted average recall: mean over classes of recall, over the classes present in the fold's test labels",
    "wa": "weighted accuracy: fraction of test clips labelled correctly",
    "macro_f1": "mean F1 over the classes present in the fold's test labels",
    "weighted_f1": "F1 per class weighted by its test support",
    "uar_pooled": "UAR over all folds' predictions taken together",
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


def summarize(values: list[float]) -> dict:
    """Mean, standard deviation (n-1) and a 95% t-interval of the mean."""
    a = np.asarray(values, dtype=float)
    n = len(a)
    mean = float(a.mean()) if n else float("nan")
    std = float(a.std(ddof=1)) if n > 1 else 0.0
    if n > 1:
        from scipy import stats

        half = float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n))
    else:
        half = 0.0
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}
