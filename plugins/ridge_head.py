"""``ridge``: ridge regression on standardised, concatenated pooled embeddings (a regression head).

One linear model per target. With ``alphas`` listing several strengths, the strength is
chosen per fold by an inner speaker-grouped cross-validation on the training speakers
(mean CCC over targets), so the test speakers are never looked at.
Saved as safetensors (weights, standardisation) plus JSON.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.features import concat_pooled
from fusionkit.sdk.heads import RegressionHead
from fusionkit.sdk.options import Options


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
    arrays_file = "ridge.safetensors"

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

    def _fit(self, X, Y, groups):
        raw = concat_pooled(X).astype(np.float64)
        self.mean = raw.mean(axis=0)
        self.scale = np.where(raw.std(axis=0) > 1e-8, raw.std(axis=0), 1.0)
        Z = (raw - self.mean) / self.scale
        self.alpha = self._choose_alpha(Z, Y, groups)
        self.W, self.b = fit_ridge(Z, Y, self.alpha)

    def _predict(self, X) -> np.ndarray:
        Z = ((concat_pooled(X) - self.mean) / self.scale).astype(np.float64)
        return Z @ self.W + self.b

    def _state(self, directory):
        return {"alpha": self.alpha}, {"W": self.W, "b": self.b, "mean": self.mean, "scale": self.scale}

    def _restore(self, config, arrays, directory):
        self.alpha = config["alpha"]
        self.W, self.b, self.mean, self.scale = arrays["W"], arrays["b"], arrays["mean"], arrays["scale"]


@hookimpl
def register_fusions(register):
    register(RidgeHead)
