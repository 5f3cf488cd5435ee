"""``cross-attention``: MulT-style, each encoder's sequence attends to the others' (torch)."""

from __future__ import annotations

from fusionkit.sdk import hookimpl
from fusionkit.sdk.neural import NeuralHead
from fusionkit_plugins.self_attention import AttentionOptions


class CrossAttentionHead(NeuralHead):
    """Queries from one encoder's tokens (frames, layers or a single pooled vector), keys and
    values from every other encoder's tokens; each result is mean-pooled, then classified."""

    name = "cross-attention"
    description = "MulT-style cross-modal attention between encoders' sequences (torch, safetensors)"
    Options = AttentionOptions

    def network(self, specs, n_classes):
        from fusionkit_plugins.cross_attention_network import CrossAttentionFusion

        o = self.options
        return CrossAttentionFusion(specs, n_classes, o.width, o.dropout, o.input_dropout, o.layers, heads=o.heads)


@hookimpl
def register_fusions(register):
    register(CrossAttentionHead)
