"""``late-average``: one base head per encoder, class probabilities averaged.

Weights are equal, proportional to each head's out-of-fold UAR above chance (``score``), or
searched on a simplex grid to maximise the out-of-fold UAR of the average (``search``). The
out-of-fold probabilities come from speaker-grouped inner folds of the training fold only.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from fusionkit.sdk import hookimpl
from fusionkit.sdk.ensemble import (
    PerEncoderHead,
    base_probas,
    combine,
    fit_bases,
    out_of_fold,
    simplex_grid,
    validate_base,
)
from fusionkit.sdk.heads import class_weights, macro_recall
from fusionkit.sdk.options import Options


class LateAverageOptions(Options):
    base: str = Field("linear", description="fusion head fitted on each encoder alone")
    base_options: dict[str, Any] = Field(default_factory=dict, description="options of the base head")
    weighting: Literal["equal", "score", "search"] = Field(
        "search", description="equal weights; out-of-fold UAR above chance; or grid search of the out-of-fold UAR")
    average: Literal["proba", "log", "auto"] = Field(
        "auto", description="average probabilities, or log-probabilities (geometric mean); 'auto' picks the one with "
                            "the better out-of-fold UAR (log with equal weighting)")
    inner_folds: int = Field(4, ge=2, description="speaker-grouped inner folds for the out-of-fold probabilities")
    grid_step: float = Field(0.05, gt=0, le=0.5, description="weight grid step of 'search' "
                                                          "(coarsened to 0.1 / 0.25 for 4+ / 6+ encoders)")

    @model_validator(mode="after")
    def _base_valid(self):
        validate_base(self.base, self.base_options)
        return self


def log_loss(y: np.ndarray, p: np.ndarray, weight: np.ndarray) -> float:
    w = weight[y]
    return float(-(w * np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0))).sum() / w.sum())


def search_weights(probas: list[np.ndarray], y: np.ndarray, space: str, step: float) -> tuple[np.ndarray, float]:
    """The grid weights with the best UAR (ties: lower class-balanced log loss, then nearer equal)."""
    n = len(probas)
    step = max(step, 0.1) if n >= 4 else step
    step = max(step, 0.25) if n >= 6 else step
    cw = class_weights(y, probas[0].shape[1])
    best_key, best = None, None
    for w in simplex_grid(n, step):
        p = combine(probas, w, space)
        key = (-macro_recall(y, p), round(log_loss(y, p, cw), 9), float(np.abs(w - 1.0 / n).sum()))
        if best_key is None or key < best_key:
            best_key, best = key, w
    return best, -best_key[0]


class LateAverageHead(PerEncoderHead):
    """Late fusion: a base head per encoder; a (validation-weighted) average of their probabilities."""

    name = "late-average"
    description = "one head per encoder, probabilities averaged with out-of-fold tuned weights"
    Options = LateAverageOptions
    requires: ClassVar[tuple[str, ...]] = ("sklearn",)

    def _fit(self, X, y, groups):
        o = self.options
        n = len(self.encoders)
        self.scores: dict[str, float] = {}
        self.space = "log" if o.average == "auto" else o.average
        if o.weighting == "equal" or n == 1:
            self.weights = np.full(n, 1.0 / n)
        else:
            oof = [out_of_fold(o.base, o.base_options, X[e], y, self.present_names, groups, o.inner_folds, self.seed, e)
                   for e in self.encoders]
            self.scores = {e: macro_recall(y, p) for e, p in zip(self.encoders, oof)}
            spaces = ["proba", "log"] if o.average == "auto" else [o.average]
            if o.weighting == "score":
                chance = 1.0 / len(np.unique(y))
                raw = np.array([max(self.scores[e] - chance, 1e-3) for e in self.encoders])
                self.weights = raw / raw.sum()
                fused = {s: macro_recall(y, combine(oof, self.weights, s)) for s in spaces}
                self.space = max(spaces, key=lambda s: (fused[s], s == "log"))
            else:
                found = {s: search_weights(oof, y, s, o.grid_step) for s in spaces}
                self.space = max(spaces, key=lambda s: (found[s][1], s == "log"))
                self.weights = found[self.space][0]
                fused = {s: f[1] for s, f in found.items()}
            self.scores.update({f"fused_{s}": v for s, v in fused.items()})
        self.bases = fit_bases(o.base, o.base_options, X, y, self.present_names, groups, self.seed)

    def _predict_proba(self, X):
        probas = base_probas(self.bases, X)
        return combine([probas[e] for e in self.encoders], self.weights, self.space)

    def _state(self, directory):
        config, arrays = super()._state(directory)
        return {**config, "weights": [float(w) for w in self.weights], "average": self.space}, arrays

    def _restore(self, config, arrays, directory):
        super()._restore(config, arrays, directory)
        self.weights = np.asarray(config["weights"], dtype=np.float64)
        self.space = config["average"]


@hookimpl
def register_fusions(register):
    register(LateAverageHead)
