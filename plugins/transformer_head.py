"""``transformer``: a small transformer encoder over every encoder's tokens (torch)."""

from __future__ import annotations

from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.neural import NeuralHead
from fusionkit_plugins.self_attention import AttentionOptions


class TransformerOptions(AttentionOptions):
    depth: int = Field(2, ge=1, le=8, description="transformer layers")


class TransformerHead(NeuralHead):
    """[CLS] + all encoders' tokens (projected, with a learned modality embedding) through a
    pre-norm transformer encoder; the [CLS] output is classified."""

    name = "transformer"
    description = "small transformer over all encoders' tokens with modality embeddings (torch, safetensors)"
    Options = TransformerOptions
    network = "transformer"

    def network_options(self):
        return {"heads": self.options.heads, "depth": self.options.depth}


@hookimpl
def register_fusions(register):
    register(TransformerHead)
