"""The encoder half of a Whisper model, run at each clip's own length with every layer's states.

``load_whisper_encoder`` takes a transformers checkpoint (folder or hub id) or a
CTranslate2 / faster-whisper folder (``model.bin`` + ``config.json``).
``WhisperStates.forward`` runs a batch of log-mel inputs of different lengths: the
mel frames beyond each input's length are zero (as the convolution's own zero
padding would see them), the first convolution's outputs beyond it are zeroed, and
attention never looks at another input's padding, so an input's states do not
depend on what it was batched with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def is_ct2_dir(path: Path) -> bool:
    """A CTranslate2 model folder: model.bin next to a config.json that is not a transformers config."""
    if not (path / "model.bin").is_file():
        return False
    cfg = path / "config.json"
    if not cfg.is_file():
        return True
    try:
        return "model_type" not in json.loads(cfg.read_text())
    except json.JSONDecodeError:
        return True


def load_whisper_encoder(ref: str, trust_remote_code: bool = False):
    """(WhisperEncoder in eval mode, n_mels, source kind) for a resolved model reference."""
    from fusionkit.sdk.torch_models import for_inference, load_config, load_pretrained

    path = Path(ref)
    if path.is_dir() and is_ct2_dir(path):
        from fusionkit_plugins.whisper_ct2 import load_ct2_encoder

        with _no_random_init():  # every weight is then loaded from model.bin (a missing one is refused)
            encoder, config = load_ct2_encoder(path)
        return for_inference(encoder), config.num_mel_bins, "ctranslate2"
    config = load_config(ref, trust_remote_code)
    if getattr(config, "model_type", None) != "whisper":
        raise ValueError(f"{ref}: model_type is {getattr(config, 'model_type', None)!r}, not a Whisper checkpoint")
    model = load_pretrained("WhisperModel", ref, trust_remote_code)
    encoder = model.get_encoder()
    del model
    return encoder, config.num_mel_bins, "transformers"


def _no_random_init():
    """transformers' context that skips the random initialisation of a model built only to be overwritten."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers < 5
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()


@dataclass
class BatchStates:
    """Hidden states of a batch: ``layers``, L+1 tensors (B, T, D), and each input's valid frame count."""

    layers: list
    lengths: list[int]


class WhisperStates:
    """Runs conv1/conv2, sliced positional embeddings and the blocks; keeps every layer's output.

    Layer 0 is the blocks' input (convolutions + positions), layer i the output of
    block i; the last block's output has the encoder's final layer norm applied, as
    in the states the decoder attends to.
    """

    def __init__(self, encoder, device: Any = "cpu", half: bool = False, dtype: Any = None,
                 matmul_attention: bool = False):
        """``device``: a torch device or its name; ``dtype``: the weights' and activations' torch dtype
        (default float16 where ``half``, else float32; see ``fusionkit.sdk.torch_models.resolve_precision``).
        The states are returned in float32 whatever the dtype, so pooling accumulates in float32.
        ``matmul_attention``: attention as plain matrix products (transformers' ``eager`` implementation)
        instead of the fused kernel (see ``fusionkit.sdk.torch_models.matmul_attention``)."""
        import torch

        from fusionkit.sdk.torch_models import for_inference

        self.dtype = dtype if dtype is not None else (torch.float16 if half else torch.float32)
        self.encoder = for_inference(encoder, device, self.dtype)
        if matmul_attention:
            self.encoder.set_attn_implementation("eager")
        self.device = device
        self.n_layers = len(encoder.layers)
        self.max_frames = int(encoder.config.max_source_positions) * 2

    def forward(self, mels, frames: list[int], attend: list[int] | None = None, upto: int | None = None
                ) -> BatchStates:
        """States of a batch.

        ``mels``: a (B, n_mels, T) tensor with zeros past each input's frames, or a list of
        (n_mels, T_i) tensors; ``frames``: each input's own mel frames (pooled later);
        ``attend``: frames the model sees (default ``frames``; with ``pad_to`` the padded length);
        ``upto``: run only the first ``upto`` blocks (states 0..upto, the same values as a full run's).
        """
        import torch
        import torch.nn.functional as F

        enc = self.encoder
        attend = list(attend or frames)
        if isinstance(mels, (list, tuple)):
            width = max(m.shape[1] for m in mels)
            mels = torch.stack([F.pad(m[:, :a], (0, width - min(a, m.shape[1]))) for m, a in zip(mels, attend)])
        width = mels.shape[-1]
        if width > self.max_frames:
            raise ValueError(f"an input has {width} mel frames; the model takes at most {self.max_frames}")
        batch = mels.to(self.device, self.dtype)
        if width % 2:
            batch = F.pad(batch, (0, 1))
            width += 1
        seen = torch.tensor(attend, device=self.device)
        x = F.gelu(enc.conv1(batch))
        if int(seen.min()) < width:
            x = x * (torch.arange(width, device=self.device)[None, :] < seen[:, None]).to(self.dtype)[:, None, :]
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        t2 = x.shape[1]
        x = x + enc.embed_positions.weight[:t2]
        seen2 = (seen + 1) // 2
        mask = None
        if bool((seen2 < t2).any()):
            valid = torch.arange(t2, device=self.device)[None, :] < seen2[:, None]  # (B, T)
            mask = torch.zeros(len(attend), 1, 1, t2, dtype=self.dtype, device=self.device)
            mask.masked_fill_(~valid[:, None, None, :], torch.finfo(self.dtype).min)
        states = [x]
        for i, layer in enumerate(enc.layers[:upto]):
            x = layer(x, mask)
            if isinstance(x, tuple):
                x = x[0]
            states.append(enc.layer_norm(x) if i == self.n_layers - 1 else x)
        lengths = [(f + 1) // 2 for f in frames]
        return BatchStates([h.float() for h in states], lengths)


def pool_batch(layers: list, lengths: list[int]) -> list[dict[str, np.ndarray]]:
    """Per-item mean, std, max over its first ``lengths[b]`` frames of every layer, in few passes.

    Same output as :func:`fusionkit.sdk.layers.pool_layers` (dicts of (L+1, D) arrays and
    ``frames``, ready for ``merge_stats``) without stacking the layers into one copy:
    masked sums are batched matrix products.
    """
    import torch

    B, T, _ = layers[0].shape
    device = layers[0].device
    n = torch.tensor(lengths, dtype=torch.long, device=device).clamp(min=1, max=T)
    valid = torch.arange(T, device=device)[None, :] < n[:, None]  # (B, T)
    w = (valid.float() / n[:, None].float())[:, None, :]  # (B, 1, T)
    means, stds, maxes = [], [], []
    for h in layers:
        mean = torch.bmm(w, h)  # (B, 1, D)
        c = h - mean
        c.mul_(c)
        stds.append(torch.bmm(w, c).clamp_(min=0).sqrt_()[:, 0])
        means.append(mean[:, 0])
        if bool(valid.all()):
            maxes.append(h.amax(dim=1))
        else:
            maxes.append(c.copy_(h).masked_fill_(~valid[:, :, None], float("-inf")).amax(dim=1))
    mean, std, mx = (torch.stack(x, dim=1).float().cpu().numpy() for x in (means, stds, maxes))  # (B, L+1, D)
    return [{"mean": mean[b], "std": std[b], "max": mx[b], "frames": np.array([float(n[b])], dtype=np.float32)}
            for b in range(B)]
