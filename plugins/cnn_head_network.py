"""The network of ``cnn`` (imports torch: imported by the head's ``network()`` only)."""

from __future__ import annotations

import torch
from torch import nn

from fusionkit.sdk.training import EncoderInput, masked_mean


def masked_max(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the real frames of (N, T, C) tokens."""
    return tokens.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)


class ConvBlock(nn.Module):
    """Conv1d over time -> batch or layer norm -> ReLU -> dropout; padded frames are zeroed before the conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int, norm: str, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2)
        self.norm = nn.BatchNorm1d(c_out) if norm == "batch" else nn.LayerNorm(c_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (N, T, C_in), mask (N, T) -> (N, T, C_out)."""
        h = self.conv((x * mask.unsqueeze(-1).to(x.dtype)).transpose(1, 2))
        h = self.norm(h) if isinstance(self.norm, nn.BatchNorm1d) else self.norm(h.transpose(1, 2)).transpose(1, 2)
        return self.drop(torch.relu(h)).transpose(1, 2)


class SequenceCNN(nn.Module):
    """Per encoder: a stack of 1-D conv blocks over time, masked global pooling; the pooled vectors of
    every encoder are concatenated and classified."""

    def __init__(self, specs, n_classes, width, dropout, input_dropout, layers, *, blocks: int, kernel: int,
                 norm: str, pool: str):
        super().__init__()
        self.inputs = nn.ModuleList(EncoderInput(s, input_dropout, layers) for s in specs)
        self.stacks = nn.ModuleList(
            nn.ModuleList(ConvBlock(s["dim"] if i == 0 else width, width, kernel, norm, dropout) for i in range(blocks))
            for s in specs)
        self.pool = pool
        pooled = width * (2 if pool == "mean+max" else 1) * len(specs)
        self.classifier = nn.Sequential(nn.Linear(pooled, width), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(width, n_classes))

    def _pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pool == "mean":
            return masked_mean(h, mask)
        if self.pool == "max":
            return masked_max(h, mask)
        return torch.cat([masked_mean(h, mask), masked_max(h, mask)], dim=1)

    def forward(self, xs, masks):
        pooled = []
        for inp, stack, x, m in zip(self.inputs, self.stacks, xs, masks):
            h, mask = inp(x, m)
            for block in stack:
                h = block(h, mask)
            pooled.append(self._pool(h, mask))
        return self.classifier(torch.cat(pooled, dim=1))
