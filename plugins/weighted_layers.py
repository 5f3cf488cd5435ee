"""``weighted-layers``: the SUPERB downstream recipe over frame sequences of all layers (torch).

Per encoder: learned softmax weights over its layers, a linear projection, mean or attentive statistics
pooling over frames; the pooled vectors are concatenated and classified. The learned layer weights are in
each saved fold's ``head.json`` under ``history.layer_weights``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit_plugins.attentive_pooling import FrameHead, FrameOptions


class WeightedLayersOptions(FrameOptions):
    pooling: Literal["mean", "attentive"] = Field("mean", description="pooling over frames: mean, or attentive "
                                                                      "statistics (weighted mean and std)")


class WeightedLayersHead(FrameHead):
    """Softmax-weighted layers -> projection -> mean / attentive-statistics pooling -> linear classifier."""

    name = "weighted-layers"
    description = "learned layer weights over frame sequences, projection, pooling, classifier (torch, safetensors)"
    Options = WeightedLayersOptions
    require_layer_count = True

    def frame_pooling(self) -> str:
        return self.options.pooling


@hookimpl
def register_fusions(register):
    register(WeightedLayersHead)
