"""The network of ``concat-ffn`` (imports torch: imported by the head's ``network()`` only)."""

from __future__ import annotations

import torch
from torch import nn

from fusionkit.sdk.training import EncoderInput, masked_mean


class ConcatFFN(nn.Module):
    """Pooled (or layer-weighted) vectors of every encoder, concatenated, then an MLP."""

    def __init__(self, specs, n_classes, width, dropout, input_dropout, layers, depth: int = 1):
        super().__init__()
        self.inputs = nn.ModuleList(EncoderInput(s, input_dropout, layers) for s in specs)
        dims = sum(s["dim"] for s in specs)
        hidden: list[nn.Module] = []
        for i in range(depth):
            hidden += [nn.Linear(dims if i == 0 else width, width), nn.GELU(), nn.Dropout(dropout)]
        self.mlp = nn.Sequential(*hidden, nn.Linear(width, n_classes))

    def forward(self, xs, masks):
        pooled = [masked_mean(*inp(x, m)) for inp, x, m in zip(self.inputs, xs, masks)]
        return self.mlp(torch.cat(pooled, dim=1))
