"""``concat-ffn``: standardise each encoder, concatenate, a feed-forward network (torch)."""

from __future__ import annotations

from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.neural import NeuralHead, NeuralOptions


class ConcatFFNOptions(NeuralOptions):
    depth: int = Field(1, ge=1, le=4, description="hidden layers of the MLP")


class ConcatFFNHead(NeuralHead):
    """Early fusion: per-encoder z-scores (layers: learned weighted sum; sequences: mean) -> MLP."""

    name = "concat-ffn"
    description = "standardised concatenation + feed-forward network (torch, safetensors)"
    Options = ConcatFFNOptions

    def network(self, specs, n_classes):
        from fusionkit_plugins.concat_ffn_network import ConcatFFN

        o = self.options
        return ConcatFFN(specs, n_classes, o.width, o.dropout, o.input_dropout, o.layers, depth=o.depth)


@hookimpl
def register_fusions(register):
    register(ConcatFFNHead)
