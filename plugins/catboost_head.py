"""``catboost``: CatBoost on the concatenated pooled embeddings; saved in CatBoost's native .cbm
format, with early stopping on a validation set of whole training speakers.

Three presets. ``shallow`` (the default): trees of depth 5, otherwise as ``fast``. ``fast`` (the default until
2026-11-27): depth 6, 32 histogram bins, one thread (grid cells run side by side without oversubscribing the
cores), patience 30, and the early-stopped model kept (no refit on the whole fold). ``legacy``: the settings of
earlier releases (depth 6, 64 bins, patience 50, refit, every CPU), which give their predictions exactly, for
reproducing old tables. An option set explicitly wins over its preset.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from fusionkit.resources import threads
from fusionkit.sdk import hookimpl
from fusionkit.sdk.heads import FusionHead, HeadFileError, pooled_blocks, validation_split
from fusionkit.sdk.options import Options

PRESETS: dict[str, dict[str, Any]] = {
    "shallow": {"depth": 5, "border_count": 32, "patience": 30, "refit": False, "threads": 1},
    "fast": {"depth": 6, "border_count": 32, "patience": 30, "refit": False, "threads": 1},
    "legacy": {"depth": 6, "border_count": 64, "patience": 50, "refit": True, "threads": None},
}
"""What each preset gives the options left unset (``threads`` None: FUSIONKIT_THREADS or every CPU)."""

ALLOCATOR = {"MIMALLOC_ARENA_RESERVE": "4GiB", "MIMALLOC_PURGE_DELAY": "1000"}
"""Settings for the mimalloc inside CatBoost's library, read when it loads (values a user set win). With its defaults
(1 GiB arenas, freed memory returned after 10 ms) the large buffers CatBoost allocates and frees on every round with
``rsm`` < 1 come from the OS each time: a third to three fifths of a RAVDESS fit's CPU time went on page faults.
A 4 GiB arena (address space, not memory) and a 1-second delay keep them; predictions are the same."""


def catboost_module():
    """The ``catboost`` module, its allocator set up as :data:`ALLOCATOR` says if this is its first import."""
    for name, value in ALLOCATOR.items():
        os.environ.setdefault(name, value)
    import catboost as cb

    return cb


class CatBoostOptions(Options):
    preset: Literal["shallow", "fast", "legacy"] = Field(
        "shallow", description="shallow: depth 5, 32 bins, 1 thread, patience 30, no refit; fast: as shallow at depth "
        "6; legacy: earlier releases' settings (depth 6, 64 bins, patience 50, refit, every CPU) for reproducing old "
        "tables")
    iterations: int = Field(600, ge=1, description="maximum boosting rounds")
    depth: int | None = Field(None, ge=1, le=16, description="tree depth (default: the preset's: shallow 5, fast and "
                              "legacy 6)")
    learning_rate: float = Field(0.08, gt=0)
    l2_leaf_reg: float = Field(3.0, ge=0)
    rsm: float = Field(0.1, gt=0, le=1, description="share of features considered per split (speeds up wide inputs)")
    border_count: int | None = Field(None, ge=2, le=255, description="histogram bins per feature (default: the "
                                     "preset's)")
    class_weight: bool = Field(True, description="auto_class_weights=Balanced")
    early_stopping: bool = Field(True, description="hold out training speakers and keep the best iteration")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of training speakers held out when early stopping")
    patience: int | None = Field(None, ge=1, description="rounds without validation improvement before stopping "
                                 "(default: the preset's)")
    refit: bool | None = Field(None, description="after early stopping, refit on the whole training fold for the best "
                               "number of rounds (default: the preset's)")
    threads: int | None = Field(None, ge=1, description="threads (default: the preset's: fast 1, legacy "
                                "FUSIONKIT_THREADS or every CPU)")

    def setting(self, name: str) -> Any:
        """The option ``name`` if it was set, else its preset's value."""
        value = getattr(self, name)
        return PRESETS[self.preset][name] if value is None else value


class CatBoostHead(FusionHead):
    """Early fusion for trees: every encoder's pooled vector concatenated, CatBoost MultiClass."""

    name = "catboost"
    description = "CatBoost on concatenated pooled embeddings (native .cbm model)"
    Options = CatBoostOptions
    requires: ClassVar[tuple[str, ...]] = ("catboost",)
    arrays_file = None  # the model is saved as model.cbm

    def _model(self, iterations: int):
        o = self.options
        return catboost_module().CatBoostClassifier(
            iterations=iterations, depth=o.setting("depth"), learning_rate=o.learning_rate, l2_leaf_reg=o.l2_leaf_reg,
            rsm=o.rsm, border_count=o.setting("border_count"), loss_function="MultiClass",
            auto_class_weights="Balanced" if o.class_weight else None, random_seed=self.seed,
            thread_count=o.setting("threads") or threads(), verbose=False, allow_writing_files=False,
        )

    def fit_threads(self) -> int | None:
        return self.options.setting("threads")

    def _matrix(self, X) -> np.ndarray:
        return np.concatenate(pooled_blocks(X, self.encoders), axis=1).astype(np.float32)

    def _fit(self, X, y, groups):
        o = self.options
        M = self._matrix(X)
        self.width = M.shape[1]
        self.best_iteration = o.iterations
        if o.early_stopping:
            tr, va = validation_split(y, groups, o.val_fraction, self.seed)
            if len(np.unique(y[tr])) == len(self.present):
                model = self._model(o.iterations)
                model.fit(M[tr], y[tr], eval_set=(M[va], y[va]), early_stopping_rounds=o.setting("patience"),
                          use_best_model=True)
                self.best_iteration = int(model.get_best_iteration() or 0) + 1
                if not o.setting("refit"):
                    self.model = model
                    return
        self.model = self._model(self.best_iteration)
        self.model.fit(M, y)

    def _predict_proba(self, X):
        M = self._matrix(X)
        if M.shape[1] != self.width:
            raise ValueError(f"catboost head: fitted on {self.width} concatenated features, got {M.shape[1]}")
        return self.model.predict_proba(M)

    def _state(self, directory):
        self.model.save_model(str(directory / "model.cbm"), format="cbm")
        return {"width": self.width, "best_iteration": self.best_iteration}, {}

    def _restore(self, config, arrays, directory):
        self.width = int(config["width"])
        self.best_iteration = int(config["best_iteration"])
        path = directory / "model.cbm"
        if not path.exists():
            raise HeadFileError(f"{path}: missing (was the head saved into this folder?)")
        self.model = catboost_module().CatBoostClassifier()
        self.model.load_model(str(path), format="cbm")


@hookimpl
def register_fusions(register):
    register(CatBoostHead)
