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

    def network(self, specs, n_classes):
        from fusionkit_plugins.transformer_network import TransformerFusion

        o = self.options
        return TransformerFusion(specs, n_classes, o.width, o.dropout, o.input_dropout, o.layers,
                                 heads=o.heads, depth=o.depth)


@hookimpl
def register_fusions(register):
    register(TransformerHead)
