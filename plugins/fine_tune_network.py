"""Network of the ``fine-tune`` head (imports torch: imported by the head's ``network()`` only)."""

from __future__ import annotations

import numpy as np
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

    def features(self, xs, masks) -> torch.Tensor:
        """The pooled vector the classifier sees: (B, width)."""
        pooled = []
        for top, pool, x, m in zip(self.tops, self.pools, xs, masks):
            if self.training and (self.o.mask_time > 0 or self.o.mask_channels > 0):
                x = mask_frames(x, m, self.o.mask_time, self.o.mask_span, self.o.mask_channels)
            h = top(x, m)
            pooled.append(masked_mean(h, m) if isinstance(pool, nn.Identity) else pool(h, m))
        return torch.cat(pooled, dim=1)

    def forward(self, xs, masks):
        return self.classifier(self.features(xs, masks))


class ProbedFineTuneNet(FineTuneNet):
    """:class:`FineTuneNet` whose classifier starts from a linear probe of the pretrained blocks (``init: probe``):
    linear probing, then fine-tuning, which keeps the pretrained features from being pulled about by a random
    classifier's first gradients."""

    def warm_start(self, data, idx: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None) -> None:
        """Set the classifier to a logistic regression (scikit-learn, lbfgs, C = 1) on the standardised pooled
        output of the blocks as they are, over the clips ``idx``, with the loss's class weights; the
        standardisation is folded into the weights. A class without a clip among ``idx`` starts 10 below the others
        at the clips' mean."""
        from sklearn.linear_model import LogisticRegression

        self.eval()
        device = next(self.parameters()).device
        step = self.o.predict_batch
        with torch.no_grad():
            feats = [self.features(*data.batch(idx[s : s + step], device)).float().cpu()
                     for s in range(0, len(idx), step)]
        x = torch.cat(feats).double().numpy()
        labels = y[idx].numpy()
        mean, std = x.mean(axis=0), x.std(axis=0)
        std[std < 1e-8] = 1.0
        weights = None if weight is None else {k: float(weight[k]) for k in range(len(weight))}
        probe = LogisticRegression(C=1.0, max_iter=2000, class_weight=weights).fit((x - mean) / std, labels)
        coef = probe.coef_ if len(probe.classes_) > 2 else np.vstack([-probe.coef_ / 2, probe.coef_ / 2])
        bias = probe.intercept_ if len(probe.classes_) > 2 else np.array([-probe.intercept_[0] / 2,
                                                                          probe.intercept_[0] / 2])
        linear = self.classifier[-1]
        w = np.zeros((linear.out_features, x.shape[1]))
        b = np.full(linear.out_features, float(bias.min()) - 10.0)
        w[probe.classes_] = coef / std
        b[probe.classes_] = bias - (coef / std) @ mean
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
