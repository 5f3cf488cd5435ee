"""``egemaps``: openSMILE functionals (eGeMAPS v02 by default, ComParE 2016, ...) through the ``opensmile`` package.

The openSMILE binary ships inside the ``opensmile`` wheel, so this runs offline. Each
clip's signal goes through ``Smile.process_signal``; the result is one vector of
functionals (88 for eGeMAPS v02, 6373 for ComParE 2016). The features are raw:
the fusion heads standardise them, fitted on the training folds only.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Encoder, Options

FeatureSetName = Literal[
    "eGeMAPSv02", "eGeMAPSv01b", "GeMAPSv01b", "ComParE_2016", "emobase", "IS09", "IS10", "IS11", "IS12", "IS13",
]
# openSMILE's own sizes, for the docs and for checking what comes back
EXPECTED_SIZE = {"eGeMAPSv02": 88, "eGeMAPSv01b": 88, "GeMAPSv01b": 62, "ComParE_2016": 6373, "emobase": 988}


class EGeMAPSOptions(Options):
    feature_set: FeatureSetName = Field("eGeMAPSv02", description="openSMILE feature set (functionals)")
    workers: int = Field(2, ge=1, le=64,
                         description="clips processed in parallel threads (openSMILE runs outside the GIL)")
    batch_size: int = Field(32, ge=1, description="clips handed to encode_batch at a time")


class EGeMAPSEncoder(Encoder):
    """Geneva Minimalistic (extended) Acoustic Parameter Set and other openSMILE functionals."""

    name = "egemaps"
    modality = "audio"
    description = "openSMILE functionals: eGeMAPS v02 (88) by default, or ComParE 2016 (6373) and others"
    Options = EGeMAPSOptions
    requires: ClassVar[tuple[str, ...]] = ("opensmile",)
    version = "1"
    sample_rate = 16000

    def __init__(self, options: EGeMAPSOptions):
        super().__init__(options)
        self.smile = None

    def model_identity(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"opensmile-{version('opensmile')}"
        except PackageNotFoundError:
            return "opensmile-?"

    def identity(self):
        ident = super().identity()
        for k in ("workers", "batch_size"):  # how it is run, not what it computes
            ident["options"].pop(k, None)
        return ident

    def load(self) -> None:
        if self.smile is not None:
            return
        import opensmile

        self.smile = opensmile.Smile(
            feature_set=opensmile.FeatureSet[self.options.feature_set],
            feature_level=opensmile.FeatureLevel.Functionals,
        )

    def feature_names(self) -> list[str]:
        self.load()
        return list(self.smile.feature_names)

    def features(self, x: np.ndarray) -> dict[str, np.ndarray]:
        # openSMILE needs a few frames; very short clips are zero-padded to 0.1 s
        x = np.asarray(x, dtype=np.float32)
        if len(x) < self.sample_rate // 10:
            x = np.pad(x, (0, self.sample_rate // 10 - len(x)))
        values = self.smile.process_signal(x, self.sample_rate).to_numpy(dtype=np.float32)
        if values.shape[0] != 1:
            raise RuntimeError(f"openSMILE returned {values.shape[0]} rows of functionals for one clip")
        expected = EXPECTED_SIZE.get(self.options.feature_set)
        if expected is not None and values.shape[1] != expected:
            raise RuntimeError(f"openSMILE {self.options.feature_set}: {values.shape[1]} features, expected {expected}")
        return {"features": np.nan_to_num(values[0], nan=0.0, posinf=0.0, neginf=0.0)}

    def encode_batch(self, inputs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        self.load()
        if self.options.workers > 1 and len(inputs) > 1:
            with ThreadPoolExecutor(min(self.options.workers, len(inputs))) as pool:
                return list(pool.map(self.features, inputs))
        return [self.features(x) for x in inputs]


@hookimpl
def register_encoders(register):
    register(EGeMAPSEncoder)
