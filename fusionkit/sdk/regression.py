"""The regression head kind: predicts continuous targets (e.g. arousal, valence) from features.

A regression head registers through ``register_fusions`` like a classifier; its class
attribute ``task = "regression"`` tells :mod:`fusionkit.pipeline.run` to take the regression path
(recipes say ``task: {kind: regression, targets: [...]}``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from fusionkit.sdk.base import Features, Options


class RegressionHead(ABC):
    """Fitted once per fold: ``Y`` is (N, T) float for the recipe's T targets."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    requires: ClassVar[tuple[str, ...]] = ()
    accepts_sequences: ClassVar[bool] = False
    task: ClassVar[str] = "regression"

    def __init__(self, options: Options, seed: int = 0):
        self.options = options
        self.seed = seed

    @abstractmethod
    def fit(self, X: dict[str, Features], Y: np.ndarray, targets: list[str], groups: np.ndarray | None = None) -> None: ...

    @abstractmethod
    def predict(self, X: dict[str, Features]) -> np.ndarray:
        """(N, len(targets)) predictions."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted head (no pickle)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, options: Options, seed: int = 0) -> "RegressionHead": ...
