"""``ridge``: ridge regression on standardised, concatenated pooled embeddings (a regression head).

One linear model per target. With ``alphas`` listing several strengths, the strength is
chosen per fold by an inner speaker-grouped cross-validation on the training speakers
(mean CCC over targets), so the test speakers are never looked at.
Saved as safetensors (weights, standardisation) plus JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.features import concat_pooled
from fusionkit.sdk.base import Options
from fusionkit.sdk.regression import RegressionHead


class RidgeOptions(Options):
    alphas: list[float] = Field(default_factory=lambda: [1.0, 10.0, 100.0, 1000.0],
                                description="L2 strengths tried; one value fixes it", min_length=1)
    inner_folds: int = Field(3, ge=2, description="speaker-grouped folds that choose the strength")


def fit_ridge(X: np.ndarray, Y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form ridge on centred data: (weights (D, T), intercept (T,))."""
    xm, ym = X.mean(axis=0), Y.mean(axis=0)
    Xc, Yc = X - xm, Y - ym
    n, d = Xc.shape
    if d <= n:
        W = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(d), Xc.T @ Yc)
    else:  # dual form: cheaper when features outnumber clips
        W = Xc.T @ np.linalg.solve(Xc @ Xc.T + alpha * np.eye(n), Yc)
    return W, ym - xm @ W


class RidgeHead(RegressionHead):
    name = "ridge"
    description = "ridge regression per target (arousal, valence, ...) on standardised pooled embeddings"
    Options = RidgeOptions

    def _standardise(self, X) -> np.ndarray:
        return ((concat_pooled(X) - self.mean) / self.scale).astype(np.float64)

    def _choose_alpha(self, Z: np.ndarray, Y: np.ndarray, groups: np.ndarray | None) -> float:
        from fusionkit.metrics import ccc

        alphas = self.options.alphas
        if len(alphas) == 1 or groups is None or len(set(groups)) < self.options.inner_folds:
            return float(alphas[0])
        from sklearn.model_selection import GroupKFold

        scores = np.zeros(len(alphas))
        for tr, va in GroupKFold(n_splits=self.options.inner_folds).split(Z, Y, groups):
            for i, a in enumerate(alphas):
                W, b = fit_ridge(Z[tr], Y[tr], a)
                P = Z[va] @ W + b
                scores[i] += np.mean([ccc(Y[va, j], P[:, j]) for j in range(Y.shape[1])])
        return float(alphas[int(np.argmax(scores))])

    def fit(self, X, Y, targets, groups=None):
        self.targets = list(targets)
        raw = concat_pooled(X).astype(np.float64)
        self.mean = raw.mean(axis=0)
        self.scale = np.where(raw.std(axis=0) > 1e-8, raw.std(axis=0), 1.0)
        Z = (raw - self.mean) / self.scale
        Y = np.asarray(Y, dtype=np.float64).reshape(len(Z), len(self.targets))
        self.alpha = self._choose_alpha(Z, Y, groups)
        self.W, self.b = fit_ridge(Z, Y, self.alpha)

    def predict(self, X) -> np.ndarray:
        return self._standardise(X) @ self.W + self.b

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file({"W": self.W, "b": self.b, "mean": self.mean, "scale": self.scale}, str(directory / "ridge.safetensors"))
        (directory / "head.json").write_text(json.dumps(
            {"plugin": self.name, "task": self.task, "targets": self.targets, "alpha": self.alpha,
             "options": self.options.model_dump(), "seed": self.seed}, indent=2))

    @classmethod
    def load(cls, directory: Path, options, seed: int = 0) -> "RidgeHead":
        from safetensors.numpy import load_file

        meta = json.loads((directory / "head.json").read_text())
        arrays = load_file(str(directory / "ridge.safetensors"))
        head = cls(options, seed)
        head.targets, head.alpha = meta["targets"], meta["alpha"]
        head.W, head.b, head.mean, head.scale = arrays["W"], arrays["b"], arrays["mean"], arrays["scale"]
        return head


@hookimpl
def register_fusions(register):
    register(RidgeHead)
