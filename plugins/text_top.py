"""Trainable blocks of a BERT-style text encoder for fine-tuning (``fine-tune`` head): the layers after a cached
hidden state, run on that state's token sequence. Imports torch and transformers: imported by the ``hf-text``
encoder's fine-tuning methods only.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

# encoders whose blocks are ``model.encoder.layer`` and take (hidden states, additive attention mask) alone
SUPPORTED = ("bert", "roberta", "xlm-roberta", "camembert", "electra")


class TextTop(nn.Module):
    """Encoder layers on a hidden state's tokens (B, T, D) with a (B, T) mask of real tokens."""

    def __init__(self, layers: nn.ModuleList):
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        add = torch.zeros(mask.shape[0], 1, 1, mask.shape[1], dtype=x.dtype, device=x.device)
        add.masked_fill_(~mask[:, None, None, :], torch.finfo(x.dtype).min)
        for layer in self.layers:
            out = layer(x, attention_mask=add)
            x = out[0] if isinstance(out, tuple) else out
        return x


def top_spec(model, start: int, count: int | None) -> dict[str, Any]:
    """The JSON spec of ``model``'s layers after hidden state ``start`` (``count`` of them; None: up to the last)."""
    kind = getattr(model.config, "model_type", "")
    if kind not in SUPPORTED or not hasattr(getattr(model, "encoder", None), "layer"):
        raise ValueError(f"hf-text: fine-tuning supports BERT-style encoders ({', '.join(SUPPORTED)}); "
                         f"model_type {kind!r} is not one")
    n = len(model.encoder.layer)
    if not 0 <= start < n:
        raise ValueError(f"hf-text: fine-tuning trains the layers after the selected hidden state, which must be "
                         f"0..{n - 1} (state {start} leaves no layer to train)")
    count = n - start if count is None else count
    if not 1 <= count <= n - start:
        raise ValueError(f"hf-text: blocks: {count} does not fit: state {start} has {n - start} layer(s) above it")
    return {"config": json.loads(model.config.to_json_string()), "start": start, "count": count}


def build_top(spec: dict[str, Any]) -> TextTop:
    """A :class:`TextTop` with fresh weights from a :func:`top_spec` spec."""
    from transformers import AutoConfig, AutoModel

    values = dict(spec["config"])
    kind = values.pop("model_type")
    if kind not in SUPPORTED:
        raise ValueError(f"hf-text: fine-tuned layers of model_type {kind!r} cannot be rebuilt")
    config = AutoConfig.for_model(kind, **{**values, "num_hidden_layers": int(spec["count"])})
    return TextTop(nn.ModuleList(AutoModel.from_config(config).encoder.layer))


def trainable_top(model, start: int, count: int | None) -> tuple[TextTop, dict[str, Any]]:
    """(a :class:`TextTop` holding ``model``'s layers after hidden state ``start``, in float32; its spec)."""
    spec = top_spec(model, start, count)
    top = build_top(spec)
    for mine, theirs in zip(top.layers, model.encoder.layer[start : start + spec["count"]]):
        mine.load_state_dict(theirs.state_dict())
    return top.float().train(), spec
