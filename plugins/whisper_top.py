"""Trainable Whisper encoder blocks for fine-tuning (``fine-tune`` head): the blocks after a cached layer, run on
that layer's frames. Imports torch and transformers: imported by the ``whisper`` encoder's fine-tuning methods only.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoderLayer

from fusionkit.sdk.layers import trainable_blocks


class WhisperTop(nn.Module):
    """Whisper encoder blocks on a layer's frames (B, T, D) with a (B, T) mask of real frames; the model's final
    layer norm follows when the last block run is the model's last (as in the cached states)."""

    def __init__(self, config: WhisperConfig, count: int, final_norm: bool):
        super().__init__()
        self.layers = nn.ModuleList(WhisperEncoderLayer(config) for _ in range(count))
        self.layer_norm = nn.LayerNorm(config.d_model) if final_norm else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        add = torch.zeros(mask.shape[0], 1, 1, mask.shape[1], dtype=x.dtype, device=x.device)
        add.masked_fill_(~mask[:, None, None, :], torch.finfo(x.dtype).min)
        for layer in self.layers:
            x = layer(x, add)
            if isinstance(x, tuple):
                x = x[0]
        return x if self.layer_norm is None else self.layer_norm(x)


def top_spec(encoder, start: int, count: int | None) -> dict[str, Any]:
    """The JSON spec of ``encoder``'s blocks after layer ``start`` (``count`` of them; None: up to the last)."""
    n = len(encoder.layers)
    count = trainable_blocks("whisper", start, count, n)
    return {"config": json.loads(encoder.config.to_json_string()), "start": start, "count": count,
            "final_norm": start + count == n}


def build_top(spec: dict[str, Any]) -> WhisperTop:
    """A :class:`WhisperTop` with fresh weights from a :func:`top_spec` spec, in float32 (whatever dtype the
    checkpoint was saved in: its blocks are trained)."""
    config = WhisperConfig(**spec["config"])
    config._attn_implementation = "sdpa"  # torch's fused kernel, as whisper_ct2 sets it (unset, transformers warns)
    return WhisperTop(config, int(spec["count"]), bool(spec["final_norm"])).float()


def trainable_top(encoder, start: int, count: int | None) -> tuple[WhisperTop, dict[str, Any]]:
    """(a :class:`WhisperTop` holding ``encoder``'s blocks after layer ``start``, in float32; its spec)."""
    spec = top_spec(encoder, start, count)
    top = build_top(spec)
    for mine, theirs in zip(top.layers, encoder.layers[start : start + spec["count"]]):
        mine.load_state_dict(theirs.state_dict())
    if top.layer_norm is not None:
        top.layer_norm.load_state_dict(encoder.layer_norm.state_dict())
    return top.train(), spec
