"""``xgboost``: gradient-boosted trees on the concatenated pooled embeddings; saved in XGBoost's JSON format."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from fusionkit.resources import threads
from fusionkit.sdk import hookimpl
from fusionkit.sdk.features import concat_pooled
from fusionkit.sdk.heads import FusionHead, HeadFileError
from fusionkit.sdk.options import Options


class XGBoostOptions(Options):
    n_estimators: int = Field(400, ge=1)
    max_depth: int = Field(4, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.5, gt=0, le=1)
    min_child_weight: float = Field(1.0, ge=0)
    reg_lambda: float = Field(1.0, ge=0)
    class_weight: bool = Field(True, description="weight clips inversely to their class frequency")
    n_jobs: int | None = Field(None, ge=1, description="threads (default: FUSIONKIT_THREADS or every CPU)")


class XGBoostHead(FusionHead):
    """Early fusion for trees: concatenate every encoder's pooled vector, fit XGBoost."""

    name = "xgboost"
    description = "XGBoost on concatenated pooled embeddings (native JSON model)"
    Options = XGBoostOptions
    requires: ClassVar[tuple[str, ...]] = ("xgboost",)
    arrays_file = None  # the model is saved as model.json

    def _model(self):
        import xgboost as xgb

        o = self.options
        return xgb.XGBClassifier(
            n_estimators=o.n_estimators, max_depth=o.max_depth, learning_rate=o.learning_rate,
            subsample=o.subsample, colsample_bytree=o.colsample_bytree, min_child_weight=o.min_child_weight,
            reg_lambda=o.reg_lambda, n_jobs=o.n_jobs or threads(), random_state=self.seed, tree_method="hist",
        )

    def _fit(self, X, y, groups):
        weight = None
        if self.options.class_weight:
            counts = np.bincount(y)
            weight = (len(y) / (len(counts) * counts))[y]
        self.model = self._model()
        self.model.fit(concat_pooled(X), y, sample_weight=weight)

    def _predict_proba(self, X):
        return self.model.predict_proba(concat_pooled(X))

    def _state(self, directory):
        self.model.save_model(str(directory / "model.json"))
        return {}, {}

    def _restore(self, config, arrays, directory):
        path = directory / "model.json"
        if not path.exists():
            raise HeadFileError(f"{path}: missing (was the head saved into this folder?)")
        self.model = self._model()
        self.model.load_model(str(path))


@hookimpl
def register_fusions(register):
    register(XGBoostHead)
