"""Trainable blocks of a transformers encoder for fine-tuning (``fine-tune`` head): the layers after a cached hidden
state, run on that state's frames or tokens. One module serves the ``hf-text`` encoder (BERT-style models) and the
audio encoders of the wav2vec2 family (wav2vec2, HuBERT, data2vec-audio): their blocks all take (hidden states,
additive attention mask) alone. Imports torch and transformers: imported by the encoders' fine-tuning methods only.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from fusionkit.sdk.layers import trainable_blocks

# model_type -> where its blocks are (an attribute path from the base model)
BLOCKS = {
    "bert": "encoder.layer", "roberta": "encoder.layer", "xlm-roberta": "encoder.layer",
    "camembert": "encoder.layer", "electra": "encoder.layer",
    "wav2vec2": "encoder.layers", "hubert": "encoder.layers", "data2vec-audio": "encoder.layers",
}


class LayerStack(nn.Module):
    """Encoder layers on a hidden state's frames (B, T, D) with a (B, T) mask of real frames."""

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


def _blocks(model, kind: str) -> nn.ModuleList:
    found = model
    for name in BLOCKS[kind].split("."):
        found = getattr(found, name)
    return found


def _supported(kind: str, families: tuple[str, ...], plugin: str) -> None:
    if not families:
        raise ValueError(f"{plugin}: fine-tuning is not available for this encoder's models (model_type {kind!r})")
    if kind not in families:
        raise ValueError(f"{plugin}: fine-tuning supports model types {', '.join(families)}; "
                         f"model_type {kind!r} is not one")


def top_spec(model, start: int, count: int | None, plugin: str, families: tuple[str, ...]) -> dict[str, Any]:
    """The JSON spec of ``model``'s layers after hidden state ``start`` (``count`` of them; None: up to the last)."""
    kind = getattr(model.config, "model_type", "")
    _supported(kind, families, plugin)
    count = trainable_blocks(plugin, start, count, len(_blocks(model, kind)))
    return {"config": json.loads(model.config.to_json_string()), "start": start, "count": count}


def build_top(spec: dict[str, Any], plugin: str, families: tuple[str, ...]) -> LayerStack:
    """A :class:`LayerStack` with fresh weights from a :func:`top_spec` spec, in float32 (whatever dtype the
    checkpoint was saved in: its blocks are trained)."""
    from transformers import AutoConfig, AutoModel

    values = dict(spec["config"])
    kind = values.pop("model_type", "")
    _supported(kind, families, plugin)
    config = AutoConfig.for_model(kind, **{**values, "num_hidden_layers": int(spec["count"])})
    return LayerStack(nn.ModuleList(_blocks(AutoModel.from_config(config), kind))).float()


def trainable_top(model, start: int, count: int | None, plugin: str,
                  families: tuple[str, ...]) -> tuple[LayerStack, dict[str, Any]]:
    """(a :class:`LayerStack` holding ``model``'s layers after hidden state ``start``, in float32; its spec)."""
    spec = top_spec(model, start, count, plugin, families)
    top = build_top(spec, plugin, families)
    theirs = _blocks(model, spec["config"]["model_type"])[start : start + spec["count"]]
    for mine, source in zip(top.layers, theirs):
        mine.load_state_dict(source.state_dict())
    return top.train(), spec
