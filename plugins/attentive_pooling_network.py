"""Networks of ``attentive-pooling`` and ``weighted-layers`` over frame sequences (imports torch: imported by
the heads' ``network()`` only).

Each encoder's frames (N, T, L*D) are split back into their L layers and mixed by learned softmax weights
(:class:`LayerMix`), projected to a common width, pooled over the real frames (mean, or attentive statistics:
:class:`AttentiveStats`), and the pooled vectors of every encoder are concatenated and classified.
Pooled inputs (N, D) are one frame; layered inputs (N, L, D) are one frame of L layers.
"""

from __future__ import annotations

import torch
from torch import nn

from fusionkit.sdk.training import masked_mean


def layer_dim(spec: dict) -> int:
    """The width of one layer's frames: ``dim`` of layered inputs, ``dim / n_layers`` of frame sequences."""
    return spec["dim"] if spec["kind"] == "layers" else spec["dim"] // spec["n_layers"]


class LayerMix(nn.Module):
    """(N, T, L*D) frames -> (N, T, D): a learned softmax-weighted sum of the L layers (identity for L = 1)."""

    def __init__(self, n_layers: int):
        super().__init__()
        self.n_layers = n_layers
        self.layer_logits = nn.Parameter(torch.zeros(n_layers)) if n_layers > 1 else None

    def layer_weights(self) -> torch.Tensor | None:
        """The layers' weights (they sum to one), or None for a single layer."""
        return None if self.layer_logits is None else torch.softmax(self.layer_logits, dim=0)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if self.layer_logits is None:
            return frames
        n, t, width = frames.shape
        layered = frames.reshape(n, t, self.n_layers, width // self.n_layers)
        return torch.einsum("ntld,l->ntd", layered, self.layer_weights())


class AttentiveStats(nn.Module):
    """Attentive statistics pooling: attention-weighted mean and standard deviation over the real frames."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.score(frames).squeeze(-1).masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(logits, dim=1).unsqueeze(-1)
        mean = (alpha * frames).sum(dim=1)
        var = (alpha * frames.pow(2)).sum(dim=1) - mean.pow(2)
        return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=1)


class FrameBranch(nn.Module):
    """One encoder: layer mix, input dropout, linear projection, pooling over frames."""

    def __init__(self, spec: dict, width: int, input_dropout: float, pooling: str, attention_width: int):
        super().__init__()
        self.kind = spec["kind"]
        self.mix = LayerMix(spec["n_layers"])
        self.drop = nn.Dropout(input_dropout)
        self.proj = nn.Linear(layer_dim(spec), width)
        self.pool = AttentiveStats(width, attention_width) if pooling == "attentive" else None
        self.out_dim = 2 * width if self.pool is not None else width

    def layer_weights(self) -> torch.Tensor | None:
        return self.mix.layer_weights()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        frames = x.reshape(len(x), 1, -1) if self.kind in ("pooled", "layers") else x
        if mask is None:
            mask = torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
        h = self.proj(self.drop(self.mix(frames)))
        return masked_mean(h, mask) if self.pool is None else self.pool(h, mask)


class FramePoolNet(nn.Module):
    """Every encoder's pooled frames, concatenated, then dropout and a linear classifier."""

    def __init__(self, specs, n_classes: int, width: int, dropout: float, input_dropout: float, pooling: str,
                 attention_width: int):
        super().__init__()
        self.inputs = nn.ModuleList(FrameBranch(s, width, input_dropout, pooling, attention_width) for s in specs)
        dims = sum(b.out_dim for b in self.inputs)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(dims, n_classes))

    def forward(self, xs, masks):
        return self.classifier(torch.cat([b(x, m) for b, x, m in zip(self.inputs, xs, masks)], dim=1))
