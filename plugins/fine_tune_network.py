"""Network of the ``fine-tune`` head (imports torch: imported by the head's ``network()`` only)."""

from __future__ import annotations

import torch
from torch import nn

from fusionkit.sdk.training import masked_mean
from fusionkit_plugins.attentive_pooling_network import AttentiveStats


def mask_frames(x: torch.Tensor, mask: torch.Tensor, share: float, span: int, channels: float) -> torch.Tensor:
    """SpecAugment-style masking: about ``share`` of each clip's real frames zeroed in spans of ``span`` frames,
    and ``channels`` of the feature channels zeroed per clip (torch's seeded generator decides where)."""
    n, t, d = x.shape
    keep = torch.ones(n, t, 1, device=x.device, dtype=x.dtype)
    if share > 0:
        lengths = mask.sum(dim=1)
        for i in range(n):
            real = int(lengths[i])
            spans = int(round(share * real / span))
            for _ in range(spans):
                start = int(torch.randint(0, max(1, real - span + 1), (1,)))
                keep[i, start : start + span] = 0
    x = x * keep
    if channels > 0:
        x = x * (torch.rand(n, 1, d, device=x.device) >= channels).to(x.dtype)
    return x


class FineTuneNet(nn.Module):
    """Per encoder: its trainable blocks, then pooling over the real frames; concatenated, dropout, linear."""

    def __init__(self, tops: list[nn.Module], dims: list[int], n_classes: int, o):
        super().__init__()
        self.tops = nn.ModuleList(tops)
        self.o = o
        self.pools = nn.ModuleList(AttentiveStats(d, o.attention_width) if o.pooling == "attentive" else nn.Identity()
                                   for d in dims)
        width = sum(2 * d if o.pooling == "attentive" else d for d in dims)
        self.classifier = nn.Sequential(nn.Dropout(o.dropout), nn.Linear(width, n_classes))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """The encoder's blocks learn at ``encoder_lr``; pooling and classifier at ``lr``."""
        mine = [p for m in (self.pools, self.classifier) for p in m.parameters()]
        return [{"params": list(self.tops.parameters()), "lr": self.o.encoder_lr, "weight_decay": weight_decay},
                {"params": mine, "lr": lr, "weight_decay": weight_decay}]

    def forward(self, xs, masks):
        pooled = []
        for top, pool, x, m in zip(self.tops, self.pools, xs, masks):
            if self.training and (self.o.mask_time > 0 or self.o.mask_channels > 0):
                x = mask_frames(x, m, self.o.mask_time, self.o.mask_span, self.o.mask_channels)
            h = top(x, m)
            pooled.append(masked_mean(h, m) if isinstance(pool, nn.Identity) else pool(h, m))
        return self.classifier(torch.cat(pooled, dim=1))
