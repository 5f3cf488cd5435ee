"""``linear``: standardise each encoder (training fold statistics), concatenate, regularised
logistic regression (scikit-learn, lbfgs). Saved as safetensors (coefficients, intercept,
scaler statistics) + JSON (label map, options); probabilities are computed with numpy from
those arrays, so a reloaded head reproduces them."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.heads import FusionHead, Standardizer, check_width, pooled_blocks, softmax
from fusionkit.sdk.options import Options


class LinearOptions(Options):
    C: float = Field(1.0, gt=0, description="inverse L2 regularisation strength")
    max_iter: int = Field(2000, ge=10, description="lbfgs iterations")
    tol: float = Field(1e-4, gt=0, description="lbfgs stopping tolerance")
    class_weight: Literal["balanced", "none"] = Field("balanced",
                                                      description="weight classes inversely to their frequency")
    block_weighting: Literal["none", "equal"] = Field(
        "equal", description="'equal' scales each encoder's standardised block by 1/sqrt(width), so every "
                             "encoder carries the same total variance whatever its dimensionality")
    threads: int | None = Field(1, ge=1, description="BLAS threads while fitting (null: every CPU); a second thread "
                                                     "halves no fit of this size, and with one a run fits folds side "
                                                     "by side")


class LinearHead(FusionHead):
    """Early fusion with a linear model: per-encoder z-scores, concatenation, logistic regression."""

    name = "linear"
    description = "standardised concatenation + L2 logistic regression (safetensors + JSON)"
    Options = LinearOptions
    requires: ClassVar[tuple[str, ...]] = ("sklearn",)
    # RAVDESS, 1,440 clips x 3,584 values (5.2M): 0.6 s a fold on one thread; one by one beat two worker
    # processes on 2 CPUs at every width measured (benchmarks/speed/RESULTS.md)
    quick_fit_values: ClassVar[int] = 10_000_000

    def fit_threads(self) -> int | None:
        return self.options.threads

    def _design(self, X: dict) -> np.ndarray:
        cols = []
        for name, block, scaler, w in zip(self.encoders, pooled_blocks(X, self.encoders), self.scalers,
                                          self.block_scale):
            check_width(name, block, len(scaler.mean))
            cols.append(scaler.transform(block) * w)
        return np.concatenate(cols, axis=1)

    def _fit(self, X, y, groups):
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        o = self.options
        blocks = pooled_blocks(X, self.encoders)
        self.scalers = [Standardizer().fit(b) for b in blocks]
        equal = o.block_weighting == "equal" and len(blocks) > 1
        self.block_scale = [1.0 / np.sqrt(b.shape[1]) if equal else 1.0 for b in blocks]
        model = LogisticRegression(
            C=o.C, max_iter=o.max_iter, tol=o.tol, solver="lbfgs",
            class_weight="balanced" if o.class_weight == "balanced" else None,
        )
        with threadpool_limits(limits=o.threads, user_api="blas"):
            model.fit(self._design(X), y)
        self.coef = model.coef_.astype(np.float64)
        self.intercept = model.intercept_.astype(np.float64)

    def decision(self, X: dict) -> np.ndarray:
        """Decision values: (N, 1) for two classes (the second's logit), else (N, k) logits."""
        return self._design(X) @ self.coef.T + self.intercept

    def _predict_proba(self, X):
        z = self.decision(X)
        if z.shape[1] == 1:
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            return np.stack([1.0 - p1, p1], axis=1)
        return softmax(z)

    def _state(self, directory):
        arrays = {"coef": self.coef, "intercept": self.intercept,
                  "block_scale": np.asarray(self.block_scale, dtype=np.float64)}
        for i, scaler in enumerate(self.scalers):
            arrays.update(scaler.arrays(f"scaler{i}"))
        return {"widths": [len(s.mean) for s in self.scalers]}, arrays

    def _restore(self, config, arrays, directory):
        self.scalers = [Standardizer.from_arrays(arrays, f"scaler{i}") for i in range(len(self.encoders))]
        self.block_scale = arrays["block_scale"].tolist()
        self.coef, self.intercept = arrays["coef"], arrays["intercept"]


@hookimpl
def register_fusions(register):
    register(LinearHead)
