"""The network of ``example-gated`` (imports torch: imported by ``GatedHead.network`` only)."""

from __future__ import annotations

import torch
from torch import nn

from fusionkit.sdk.training import EncoderInput, Projector, masked_mean


class GatedFusion(nn.Module):
    """Encoders -> one projected vector each -> per-clip gates -> gated sum -> MLP -> logits.

    ``forward(xs, masks)`` takes one tensor per encoder (in the order of ``specs``) and its mask
    (None for pooled and layered inputs), as fusionkit's training loop passes them.
    """

    def __init__(self, specs, n_classes, width, dropout, input_dropout, layers, gate: str = "sigmoid"):
        super().__init__()
        self.inputs = nn.ModuleList(EncoderInput(s, input_dropout, layers) for s in specs)  # layer weights reported
        self.proj = nn.ModuleList(Projector(s["dim"], width) for s in specs)
        self.gate = nn.Linear(width * len(specs), len(specs))
        self.softmax = gate == "softmax"
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, n_classes))

    def gates(self, h: torch.Tensor) -> torch.Tensor:
        """(N, E) gates from the (N, E, width) projections."""
        z = self.gate(h.flatten(1))
        return torch.softmax(z, dim=1) if self.softmax else torch.sigmoid(z)

    def forward(self, xs, masks):
        h = torch.stack([p(masked_mean(*inp(x, m))) for inp, p, x, m in zip(self.inputs, self.proj, xs, masks)], dim=1)
        return self.mlp((self.gates(h).unsqueeze(-1) * h).sum(dim=1))
