"""The network of ``lstm`` (imports torch: imported by the head's ``network()`` only)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fusionkit.sdk.training import EncoderInput, masked_mean


class AttentivePool(nn.Module):
    """A learned score per frame, softmax over the real frames, weighted sum."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim // 2 or 1), nn.Tanh(), nn.Linear(dim // 2 or 1, 1))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.einsum("nt,ntd->nd", torch.softmax(scores, dim=1), h)


class Branch(nn.Module):
    """One encoder: a packed bidirectional LSTM over its frames, then masked mean or attentive pooling."""

    def __init__(self, dim: int, hidden: int, num_layers: int, dropout: float, pool: str):
        super().__init__()
        self.lstm = nn.LSTM(dim, hidden, num_layers=num_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.pool = AttentivePool(2 * hidden) if pool == "attention" else None
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(dim=1).clamp_min(1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        h, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        h = self.drop(h)
        return masked_mean(h, mask) if self.pool is None else self.pool(h, mask)


class SequenceLSTM(nn.Module):
    """Per encoder a bidirectional LSTM branch; pooled branches concatenated and classified."""

    def __init__(self, specs, n_classes, width, dropout, input_dropout, layers, *, num_layers: int, pool: str):
        super().__init__()
        self.inputs = nn.ModuleList(EncoderInput(s, input_dropout, layers) for s in specs)
        self.branches = nn.ModuleList(Branch(s["dim"], width, num_layers, dropout, pool) for s in specs)
        self.classifier = nn.Sequential(nn.Linear(2 * width * len(specs), width), nn.ReLU(), nn.Dropout(dropout),
                                        nn.Linear(width, n_classes))

    def forward(self, xs, masks):
        pooled = [branch(*inp(x, m)) for inp, branch, x, m in zip(self.inputs, self.branches, xs, masks)]
        return self.classifier(torch.cat(pooled, dim=1))
