"""``cnn``: 1-D convolutions over frame sequences (LLD frames, log-mel, encoder states), masked global
pooling, a classifier (torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from fusionkit.sdk import hookimpl
from fusionkit.sdk.neural import NeuralHead, NeuralOptions


class CNNOptions(NeuralOptions):
    width: int = Field(64, ge=4, le=1024, description="channels of every conv block")
    blocks: int = Field(3, ge=1, le=8, description="conv blocks (conv -> norm -> ReLU -> dropout)")
    kernel: int = Field(5, ge=1, le=31, description="kernel size in frames (odd)")
    norm: Literal["batch", "layer"] = Field("batch", description="batch norm over channels, or layer norm per frame")
    pool: Literal["mean", "max", "mean+max"] = Field("mean+max", description="masked global pooling over time")
    max_frames: int = Field(200, ge=1, description="longer sequences are average-pooled in time to this length")

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"kernel must be odd (frames keep their positions), got {v}")
        return v


class CNNHead(NeuralHead):
    """Per encoder a stack of 1-D conv blocks over time with masked global pooling, then a classifier."""

    name = "cnn"
    description = "1-D CNN over frame sequences, masked global pooling (torch, safetensors)"
    Options = CNNOptions

    def network(self, specs, n_classes):
        from fusionkit_plugins.cnn_head_network import SequenceCNN

        o = self.options
        return SequenceCNN(specs, n_classes, o.width, o.dropout, o.input_dropout, o.layers, blocks=o.blocks,
                           kernel=o.kernel, norm=o.norm, pool=o.pool)


@hookimpl
def register_fusions(register):
    register(CNNHead)
