"""The network of ``self-attention`` (imports torch: imported by the head's ``network()`` only)."""

from __future__ import annotations

import torch
from torch import nn

from fusionkit.sdk.training import EncoderInput, Projector, masked_mean


class SelfAttentionFusion(nn.Module):
    """One token per encoder (projected to ``width``), multi-head scaled dot-product attention
    across the tokens, then a classifier on the concatenated attended tokens."""

    def __init__(self, specs, n_classes, width, dropout, input_dropout, layers, heads: int = 4):
        super().__init__()
        self.inputs = nn.ModuleList(EncoderInput(s, input_dropout, layers) for s in specs)
        self.proj = nn.ModuleList(Projector(s["dim"], width) for s in specs)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(2 * width, width))
        self.norm2 = nn.LayerNorm(width)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(width * len(specs), n_classes))

    def forward(self, xs, masks):
        tokens = torch.stack([p(masked_mean(*inp(x, m))) for inp, p, x, m in zip(self.inputs, self.proj, xs, masks)],
                             dim=1)
        h = self.norm(tokens + self.attn(tokens, tokens, tokens, need_weights=False)[0])
        h = self.norm2(h + self.ffn(h))
        return self.out(h.flatten(1))
