"""The network of ``cross-attention`` (imports torch: imported by the head's ``network()`` only)."""

from __future__ import annotations

import torch
from torch import nn

from fusionkit.sdk.training import CrossBlock, EncoderInput, Projector, masked_mean, projected_tokens


class CrossAttentionFusion(nn.Module):
    """Each encoder's token sequence attends to the other encoders' tokens; each attended
    sequence is mean-pooled over its frames; the pooled vectors are concatenated and classified.
    With a single encoder, it attends to itself."""

    def __init__(self, specs, n_classes, width, dropout, input_dropout, layers, heads: int = 4):
        super().__init__()
        self.inputs = nn.ModuleList(EncoderInput(s, input_dropout, layers) for s in specs)
        self.proj = nn.ModuleList(Projector(s["dim"], width) for s in specs)
        self.cross = nn.ModuleList(CrossBlock(width, heads, dropout) for _ in specs)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(width * len(specs), n_classes))

    def forward(self, xs, masks):
        toks, ms = projected_tokens(self.inputs, self.proj, xs, masks)
        pooled = []
        for i, block in enumerate(self.cross):
            others = [j for j in range(len(toks)) if j != i] or [i]
            kv = torch.cat([toks[j] for j in others], dim=1)
            kv_mask = torch.cat([ms[j] for j in others], dim=1)
            pooled.append(masked_mean(block(toks[i], kv, kv_mask), ms[i]))
        return self.out(torch.cat(pooled, dim=1))
