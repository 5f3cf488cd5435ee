"""The network of ``transformer`` (imports torch: imported by the head's ``network()`` only)."""

from __future__ import annotations

import torch
from torch import nn

from fusionkit.sdk.training import EncoderInput, Projector, projected_tokens


class TransformerFusion(nn.Module):
    """A small pre-norm transformer encoder over a [CLS] token and every encoder's tokens, each
    projected to ``width`` with a learned modality embedding; the [CLS] output is classified."""

    def __init__(self, specs, n_classes, width, dropout, input_dropout, layers, heads: int = 4, depth: int = 2):
        super().__init__()
        self.inputs = nn.ModuleList(EncoderInput(s, input_dropout, layers) for s in specs)
        self.proj = nn.ModuleList(Projector(s["dim"], width) for s in specs)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, n_classes)

    def forward(self, xs, masks):
        toks, ms = projected_tokens(self.inputs, self.proj, xs, masks)
        n = toks[0].shape[0]
        tokens = torch.cat([self.cls.expand(n, -1, -1), *toks], dim=1)
        mask = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=tokens.device), *ms], dim=1)
        h = self.encoder(tokens, src_key_padding_mask=~mask)
        return self.out(self.norm(h[:, 0]))
