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
    network = "cross-attention"

    def network_options(self):
        return {"heads": self.options.heads}


@hookimpl
def register_fusions(register):
    register(CrossAttentionHead)
