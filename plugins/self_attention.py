"""``self-attention``: one token per encoder, scaled dot-product attention across them (torch)."""

from __future__ import annotations

from pydantic import Field, model_validator

from fusionkit.sdk import hookimpl
from fusionkit.sdk.neural import NeuralHead, NeuralOptions


class AttentionOptions(NeuralOptions):
    heads: int = Field(4, ge=1, description="attention heads (must divide width)")

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be a multiple of heads ({self.heads})")
        return self


class SelfAttentionHead(NeuralHead):
    """Each encoder's pooled vector is projected to ``width`` (+ modality embedding); multi-head
    attention mixes the encoder tokens; a linear classifier reads the attended tokens."""

    name = "self-attention"
    description = "one token per encoder, multi-head attention across encoders (torch, safetensors)"
    Options = AttentionOptions

    def network(self, specs, n_classes):
        from fusionkit_plugins.self_attention_network import SelfAttentionFusion

        o = self.options
        return SelfAttentionFusion(specs, n_classes, o.width, o.dropout, o.input_dropout, o.layers, heads=o.heads)


@hookimpl
def register_fusions(register):
    register(SelfAttentionHead)
