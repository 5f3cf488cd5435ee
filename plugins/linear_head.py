"""``linear``: standardise each encoder (training fold statistics), concatenate, regularised
logistic regression (scikit-learn, lbfgs). Saved as safetensors (coefficients, intercept,
scaler statistics) + JSON (label map, options); probabilities are computed with numpy from
those arrays, so a reloaded head reproduces them exactly."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.heads import (
    Standardizer, check_names, check_width, encoder_names, load_arrays, pooled_blocks,
    present_classes, read_config, save_arrays, softmax, write_config,
)
from fusionkit.sdk.base import FusionHead, Options


class LinearOptions(Options):
    C: float = Field(1.0, gt=0, description="inverse L2 regularisation strength")
    max_iter: int = Field(2000, ge=10, description="lbfgs iterations")
    tol: float = Field(1e-4, gt=0, description="lbfgs stopping tolerance")
    class_weight: Literal["balanced", "none"] = Field("balanced", description="weight classes inversely to their frequency")
    block_weighting: Literal["none", "equal"] = Field(
        "equal", description="'equal' scales each encoder's standardised block by 1/sqrt(width), so every "
                             "encoder carries the same total variance whatever its dimensionality")


class LinearHead(FusionHead):
    """Early fusion with a linear model: per-encoder z-scores, concatenation, logistic regression."""

    name = "linear"
    description = "standardised concatenation + L2 logistic regression (safetensors + JSON)"
    Options = LinearOptions
    requires: ClassVar[tuple[str, ...]] = ("sklearn",)

    # -- features
    def _design(self, X: dict) -> np.ndarray:
        check_names(X, self.encoders)
        blocks = pooled_blocks(X, self.encoders)
        cols = []
        for name, block, scaler, w in zip(self.encoders, blocks, self.scalers, self.block_scale):
            check_width(name, block, len(scaler.mean))
            cols.append(scaler.transform(block) * w)
        return np.concatenate(cols, axis=1)

    # -- FusionHead
    def fit(self, X, y, classes, groups=None):
        from sklearn.linear_model import LogisticRegression

        o = self.options
        y = np.asarray(y)
        self.classes = list(classes)
        self.present = present_classes(y, len(self.classes))
        self.encoders = encoder_names(X)
        blocks = pooled_blocks(X, self.encoders)
        self.scalers = [Standardizer().fit(b) for b in blocks]
        widths = [b.shape[1] for b in blocks]
        self.block_scale = [1.0 / np.sqrt(d) if o.block_weighting == "equal" else 1.0 for d in widths]
        if len(self.encoders) == 1:
            self.block_scale = [1.0]
        Z = self._design(X)
        if len(self.present) == 1:  # a one-class fold: nothing to learn, predict that class
            self.coef = np.zeros((1, Z.shape[1]))
            self.intercept = np.zeros(1)
            return
        model = LogisticRegression(
            C=o.C, max_iter=o.max_iter, tol=o.tol, solver="lbfgs",
            class_weight="balanced" if o.class_weight == "balanced" else None,
        )
        model.fit(Z, y)
        self.coef = model.coef_.astype(np.float64)
        self.intercept = model.intercept_.astype(np.float64)

    def decision(self, X: dict) -> np.ndarray:
        return self._design(X) @ self.coef.T + self.intercept

    def predict_proba(self, X):
        z = self.decision(X)
        n = z.shape[0]
        if len(self.present) == 1:
            p = np.ones((n, 1))
        elif len(self.present) == 2:
            p1 = 1.0 / (1.0 + np.exp(-z[:, 0]))
            p = np.stack([1.0 - p1, p1], axis=1)
        else:
            p = softmax(z)
        out = np.zeros((n, len(self.classes)))
        out[:, self.present] = p
        return out

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        arrays = {"coef": self.coef, "intercept": self.intercept,
                  "block_scale": np.asarray(self.block_scale, dtype=np.float64)}
        for i, scaler in enumerate(self.scalers):
            arrays.update(scaler.arrays(f"scaler{i}"))
        write_config(directory, {
            "plugin": self.name, "classes": self.classes, "present": self.present.tolist(),
            "encoders": self.encoders, "widths": [len(s.mean) for s in self.scalers],
            "options": self.options.model_dump(mode="json"), "seed": self.seed,
        })
        save_arrays(directory, arrays)

    @classmethod
    def load(cls, directory: Path, options, seed: int = 0):
        directory = Path(directory)
        config = read_config(directory, cls.name)
        arrays = load_arrays(directory)
        head = cls(options, seed)
        head.classes = list(config["classes"])
        head.present = np.asarray(config["present"], dtype=np.int64)
        head.encoders = list(config["encoders"])
        head.scalers = [Standardizer.from_arrays(arrays, f"scaler{i}") for i in range(len(head.encoders))]
        head.block_scale = arrays["block_scale"].tolist()
        head.coef, head.intercept = arrays["coef"], arrays["intercept"]
        return head


@hookimpl
def register_fusions(register):
    register(LinearHead)
