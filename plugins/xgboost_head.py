"""``xgboost``: gradient-boosted trees on the concatenated pooled embeddings; saved in XGBoost's JSON format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.features import concat_pooled, full_proba
from fusionkit.sdk.heads import check_names, encoder_names, present_classes
from fusionkit.sdk.base import FusionHead, Options
from fusionkit.resources import threads


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

    def _model(self):
        import xgboost as xgb

        o = self.options
        return xgb.XGBClassifier(
            n_estimators=o.n_estimators, max_depth=o.max_depth, learning_rate=o.learning_rate,
            subsample=o.subsample, colsample_bytree=o.colsample_bytree, min_child_weight=o.min_child_weight,
            reg_lambda=o.reg_lambda, n_jobs=o.n_jobs or threads(), random_state=self.seed, tree_method="hist",
        )

    def fit(self, X, y, classes, groups=None):
        self.classes = list(classes)
        self.encoders = encoder_names(X)
        self.present = present_classes(np.asarray(y), len(self.classes))  # XGBoost needs contiguous labels
        remap = {c: i for i, c in enumerate(self.present)}
        yy = np.array([remap[v] for v in y])
        weight = None
        if self.options.class_weight:
            counts = np.bincount(yy)
            weight = (len(yy) / (len(counts) * counts))[yy]
        self.model = None
        if len(self.present) == 1:  # a one-class fold: nothing to learn, predict that class
            return
        self.model = self._model()
        self.model.fit(concat_pooled(X), yy, sample_weight=weight)

    def predict_proba(self, X):
        if self.encoders is not None:
            check_names(X, self.encoders)
        if self.model is None:
            return full_proba(np.ones((len(next(iter(X.values()))), 1)), self.present, len(self.classes))
        return full_proba(self.model.predict_proba(concat_pooled(X)), self.present, len(self.classes))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.model is not None:
            self.model.save_model(str(directory / "model.json"))
        (directory / "head.json").write_text(json.dumps(
            {"plugin": self.name, "classes": self.classes, "present": self.present.tolist(), "encoders": self.encoders,
             "options": self.options.model_dump(), "seed": self.seed}, indent=2))

    @classmethod
    def load(cls, directory: Path, options, seed: int = 0):
        meta = json.loads((directory / "head.json").read_text())
        head = cls(options, seed)
        head.classes, head.present = meta["classes"], np.array(meta["present"])
        head.encoders = meta.get("encoders")
        head.model = None
        if len(head.present) > 1:
            head.model = head._model()
            head.model.load_model(str(directory / "model.json"))
        return head


@hookimpl
def register_fusions(register):
    register(XGBoostHead)
