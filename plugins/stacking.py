"""``stacking``: one base head per encoder; a logistic-regression meta-classifier learns to
combine their out-of-fold probabilities (speaker-grouped inner folds of the training fold)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from fusionkit.sdk import hookimpl
from fusionkit.sdk.ensemble import PerEncoderHead, base_probas, fit_bases, out_of_fold, validate_base
from fusionkit.sdk.heads import macro_recall
from fusionkit.sdk.options import Options
from fusionkit_plugins.linear_head import LinearHead, LinearOptions


class StackingOptions(Options):
    base: str = Field("linear", description="fusion head fitted on each encoder alone")
    base_options: dict[str, Any] = Field(default_factory=dict, description="options of the base head")
    inner_folds: int = Field(5, ge=2, description="speaker-grouped inner folds for the out-of-fold probabilities")
    meta_input: Literal["proba", "log"] = Field("log",
                                                description="meta-classifier reads probabilities or log-probabilities")
    meta_C: float = Field(0.1, gt=0, description="inverse L2 strength of the meta logistic regression")
    class_weight: Literal["balanced", "none"] = Field("balanced", description="class weighting of the meta-classifier")

    @model_validator(mode="after")
    def _base_valid(self):
        validate_base(self.base, self.base_options)
        return self


class StackingHead(PerEncoderHead):
    """Stacked generalisation over per-encoder heads."""

    name = "stacking"
    description = "per-encoder heads + logistic-regression meta-classifier on out-of-fold probabilities"
    Options = StackingOptions
    requires: ClassVar[tuple[str, ...]] = ("sklearn",)

    def _meta_options(self) -> LinearOptions:
        o = self.options
        return LinearOptions(C=o.meta_C, class_weight=o.class_weight, block_weighting="none")

    def _meta_inputs(self, probas: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.options.meta_input == "log":
            return {e: np.log(np.clip(p, 1e-6, 1.0)) for e, p in probas.items()}
        return dict(probas)

    def _fit(self, X, y, groups):
        o = self.options
        names = self.present_names
        oof = {e: out_of_fold(o.base, o.base_options, X[e], y, names, groups, o.inner_folds, self.seed, e)
               for e in self.encoders}
        self.scores = {e: macro_recall(y, p) for e, p in oof.items()}
        self.meta = LinearHead(self._meta_options(), self.seed)
        self.meta.fit(self._meta_inputs(oof), y, names, groups)
        self.bases = fit_bases(o.base, o.base_options, X, y, names, groups, self.seed)

    def _predict_proba(self, X):
        return self.meta.predict_proba(self._meta_inputs(base_probas(self.bases, X)))

    def _state(self, directory):
        self.meta.save(directory / "meta")
        return super()._state(directory)

    def _restore(self, config, arrays, directory):
        super()._restore(config, arrays, directory)
        self.meta = LinearHead.load(directory / "meta")


@hookimpl
def register_fusions(register):
    register(StackingHead)
