"""``xgboost``: gradient-boosted trees on the concatenated pooled embeddings; saved in XGBoost's JSON format.

Three presets. ``narrow`` (the default): each tree sees 20 % of the features and 32 histogram bins, one thread
(grid cells run side by side without oversubscribing the cores), and early stopping on a validation set of whole
training speakers, then a refit on the whole training fold for the best number of rounds. ``fast``: the same with
half the features per tree and 64 bins (the default of 2026-11-26). ``legacy``: the settings of earlier releases
(256 bins, half the features, every round, every CPU), which give their predictions exactly, for reproducing old
tables. An option set explicitly wins over its preset.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from fusionkit.resources import threads
from fusionkit.sdk import hookimpl
from fusionkit.sdk.features import concat_pooled
from fusionkit.sdk.heads import FusionHead, HeadFileError, validation_split
from fusionkit.sdk.options import Options

PRESETS: dict[str, dict[str, Any]] = {
    "narrow": {"colsample_bytree": 0.2, "max_bin": 32, "early_stopping": True, "n_jobs": 1},
    "fast": {"colsample_bytree": 0.5, "max_bin": 64, "early_stopping": True, "n_jobs": 1},
    "legacy": {"colsample_bytree": 0.5, "max_bin": 256, "early_stopping": False, "n_jobs": None},
}
"""What each preset gives the options left unset (``n_jobs`` None: FUSIONKIT_THREADS or every CPU)."""


class XGBoostOptions(Options):
    preset: Literal["narrow", "fast", "legacy"] = Field(
        "narrow", description="narrow: 20% of the features per tree, 32 bins, 1 thread, early stopping on training "
                              "speakers; fast: the same with 50% and 64 bins; legacy: earlier releases' settings (50%, "
                              "256 bins, all rounds, every CPU) for reproducing old tables")
    n_estimators: int = Field(400, ge=1, description="boosting rounds (the most, with early stopping)")
    max_depth: int = Field(4, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float | None = Field(None, gt=0, le=1, description="share of the features each tree sees "
                                           "(default: the preset's)")
    min_child_weight: float = Field(1.0, ge=0)
    reg_lambda: float = Field(1.0, ge=0)
    class_weight: bool = Field(True, description="weight clips inversely to their class frequency")
    max_bin: int | None = Field(None, ge=2, le=1024, description="histogram bins per feature (default: the preset's)")
    early_stopping: bool | None = Field(None, description="hold out training speakers and stop when their loss has "
                                        "not improved for `patience` rounds (default: the preset's)")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of training speakers held out when early stopping")
    patience: int = Field(30, ge=1, description="rounds without validation improvement before stopping")
    refit: bool = Field(True, description="after early stopping, refit on the whole training fold for the best "
                                          "number of rounds")
    multi_strategy: Literal["one_output_per_tree", "multi_output_tree"] = Field(
        "one_output_per_tree", description="one tree per class and round, or one multi-output tree per round "
                                           "(slower and less accurate on RAVDESS LLD statistics)")
    n_jobs: int | None = Field(None, ge=1, description="threads (default: the preset's: 1, legacy "
                                                       "FUSIONKIT_THREADS or every CPU)")

    def setting(self, name: str) -> Any:
        """The option ``name`` if it was set, else its preset's value."""
        value = getattr(self, name)
        return PRESETS[self.preset][name] if value is None else value


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-clip weights n / (k * count of its class) over the k classes in ``y`` (earlier releases' weights)."""
    counts = np.bincount(y)
    return (len(y) / (np.count_nonzero(counts) * np.maximum(counts, 1)))[y]


class XGBoostHead(FusionHead):
    """Early fusion for trees: concatenate every encoder's pooled vector, fit XGBoost."""

    name = "xgboost"
    description = "XGBoost on concatenated pooled embeddings (native JSON model)"
    Options = XGBoostOptions
    requires: ClassVar[tuple[str, ...]] = ("xgboost",)
    arrays_file = None  # the model is saved as model.json

    def _model(self, n_estimators: int | None = None, **extra: Any):
        import xgboost as xgb

        o = self.options
        kwargs: dict[str, Any] = {}
        if o.preset != "legacy" or o.max_bin is not None:
            kwargs["max_bin"] = o.setting("max_bin")
        if o.multi_strategy != "one_output_per_tree":
            kwargs["multi_strategy"] = o.multi_strategy
        return xgb.XGBClassifier(
            n_estimators=n_estimators or o.n_estimators, max_depth=o.max_depth, learning_rate=o.learning_rate,
            subsample=o.subsample, colsample_bytree=o.setting("colsample_bytree"), min_child_weight=o.min_child_weight,
            reg_lambda=o.reg_lambda, n_jobs=o.setting("n_jobs") or threads(), random_state=self.seed,
            tree_method="hist", **kwargs, **extra,
        )

    def fit_threads(self) -> int | None:
        return self.options.setting("n_jobs")

    def _weights(self, y: np.ndarray) -> np.ndarray | None:
        return balanced_weights(y) if self.options.class_weight else None

    def _fit(self, X, y, groups):
        o = self.options
        M = concat_pooled(X)
        self.best_iteration = o.n_estimators
        if o.setting("early_stopping"):
            tr, va = validation_split(y, groups, o.val_fraction, self.seed)
            if len(np.unique(y[tr])) == len(self.present):
                metric = "mlogloss" if len(self.present) > 2 else "logloss"  # XGBoost fits 2 classes as binary
                model = self._model(early_stopping_rounds=o.patience, eval_metric=metric)
                weight_va = self._weights(y[va])
                model.fit(M[tr], y[tr], sample_weight=self._weights(y[tr]), eval_set=[(M[va], y[va])],
                          sample_weight_eval_set=None if weight_va is None else [weight_va], verbose=False)
                self.best_iteration = int(model.best_iteration) + 1
                if not o.refit:
                    self.model = model
                    return
        self.model = self._model(self.best_iteration)
        self.model.fit(M, y, sample_weight=self._weights(y))

    def _predict_proba(self, X):
        return self.model.predict_proba(concat_pooled(X))

    def _state(self, directory):
        self.model.save_model(str(directory / "model.json"))
        return {"best_iteration": self.best_iteration}, {}

    def _restore(self, config, arrays, directory):
        path = directory / "model.json"
        if not path.exists():
            raise HeadFileError(f"{path}: missing (was the head saved into this folder?)")
        self.best_iteration = int(config.get("best_iteration", self.options.n_estimators))
        self.model = self._model()
        self.model.load_model(str(path))


@hookimpl
def register_fusions(register):
    register(XGBoostHead)
