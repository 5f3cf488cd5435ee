"""Per-layer pooling and selection for layered encoders (wav2vec2-family, wav2vec2-BERT, whisper, ...).

A layered encoder caches, for every clip, statistics of EVERY layer's frames
(``mean``, ``std``, ``max``: arrays of shape (L+1, D), index 0 being the layer
before the first transformer block, exactly as ``output_hidden_states`` orders
them). Which layers and which pooling the recipe wants is then a cheap
:func:`select_layers` on the cached arrays, so changing ``layers`` or
``pooling`` encodes nothing.

Sequences (``pooling: none``) are too big to keep for every layer: they are
cached per requested layer under :func:`sequence_key` (``seq.<layer>``).

Typical use inside an encoder::

    stats = pool_layers(out.hidden_states, frame_lengths)   # one dict per batch item
    merged = merge_stats([stats[i] for i in chunks_of_clip]) # long clips encoded in chunks
    arrays = finish_stats(merged)                            # {"mean", "std", "max"}
    features = select_layers(arrays, options.layers, options.pooling)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

STAT_KEYS = ("mean", "std", "max")
SEQUENCE_PREFIX = "seq."


class LayerError(ValueError):
    """A ``layers`` / ``pooling`` choice the cached arrays cannot satisfy; the message is one line."""


def sequence_key(layer: int) -> str:
    """Cache key of one layer's frame sequence (T, D)."""
    return f"{SEQUENCE_PREFIX}{layer}"


def layer_indices(layers: Any, n_layers: int) -> list[int]:
    """Normalise an ``int | list[int] | "all"`` choice to non-negative indices into ``n_layers`` layers.

    Negative indices count from the end (-1 is the last layer).
    """
    if layers == "all":
        return list(range(n_layers))
    chosen = [layers] if isinstance(layers, int) else list(layers)
    if not chosen:
        raise LayerError("layers: empty list; name at least one layer, or use 'all'")
    out = []
    for i in chosen:
        j = i + n_layers if i < 0 else i
        if not 0 <= j < n_layers:
            raise LayerError(f"layers: {i} is out of range; "
                             f"this model has layers 0..{n_layers - 1} (or -{n_layers}..-1)")
        out.append(j)
    return out


def trainable_blocks(plugin: str, start: int, count: int | None, n_blocks: int) -> int:
    """How many blocks after layer ``start`` a fine-tune trains (``count``; None: up to the last of ``n_blocks``);
    a ``ValueError`` in one line when there is no such block or ``count`` overruns the model."""
    if not 0 <= start < n_blocks:
        raise ValueError(f"{plugin}: fine-tuning trains the blocks after the selected layer, which must be "
                         f"0..{n_blocks - 1} (layer {start} leaves no block to train)")
    count = n_blocks - start if count is None else count
    if not 1 <= count <= n_blocks - start:
        raise ValueError(f"{plugin}: blocks: {count} does not fit: layer {start} has {n_blocks - start} block(s) "
                         f"above it")
    return count


def pool_layers(hidden_states: Sequence[Any], lengths: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """Statistics of every layer over each item's real frames only.

    ``hidden_states``: L+1 tensors (torch or numpy) of shape (B, T, D), padded frames
    at the end; ``lengths``: the number of real frames of each of the B items.
    Returns B dicts with ``mean``, ``std``, ``max`` (L+1, D) float32 and ``frames`` (1,),
    which :func:`merge_stats` uses to combine chunks of one clip.
    """
    import torch

    h = torch.stack([torch.as_tensor(x) for x in hidden_states]).float()  # (L+1, B, T, D)
    _, B, T, _ = h.shape
    n = torch.as_tensor(list(lengths), dtype=torch.long).clamp(min=1, max=T)
    mask = (torch.arange(T)[None, :] < n[:, None]).to(h.device)  # (B, T)
    m = mask[None, :, :, None].to(h.dtype)
    count = n.to(h.device, h.dtype)[None, :, None]
    mean = (h * m).sum(2) / count
    var = (((h - mean[:, :, None, :]) * m) ** 2).sum(2) / count
    big = torch.finfo(h.dtype).max
    mx = h.masked_fill(~mask[None, :, :, None], -big).amax(2)
    mean, std, mx = (t.cpu().numpy() for t in (mean, var.clamp(min=0).sqrt(), mx))
    return [
        {"mean": mean[:, b], "std": std[:, b], "max": mx[:, b], "frames": np.array([int(n[b])], dtype=np.float32)}
        for b in range(B)
    ]


def merge_stats(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Combine the statistics of consecutive chunks of one clip (frame-weighted, exact)."""
    if len(parts) == 1:
        return parts[0]
    w = np.array([float(p["frames"][0]) for p in parts])
    total = w.sum()
    means = np.stack([p["mean"] for p in parts]).astype(np.float64)
    sq = np.stack([p["std"].astype(np.float64) ** 2 + p["mean"].astype(np.float64) ** 2 for p in parts])
    mean = np.tensordot(w, means, axes=1) / total
    var = np.maximum(np.tensordot(w, sq, axes=1) / total - mean**2, 0.0)
    return {
        "mean": mean.astype(np.float32),
        "std": np.sqrt(var).astype(np.float32),
        "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
        "frames": np.array([total], dtype=np.float32),
    }


def finish_stats(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays worth caching: ``mean``, ``std``, ``max`` as contiguous float32."""
    return {k: np.ascontiguousarray(stats[k], dtype=np.float32) for k in STAT_KEYS}


def n_layers_of(arrays: dict[str, np.ndarray]) -> int:
    """How many layers (L+1) the cached arrays hold."""
    for k in STAT_KEYS:
        if k in arrays:
            return int(arrays[k].shape[0])
    seq = [int(k[len(SEQUENCE_PREFIX):]) for k in arrays if k.startswith(SEQUENCE_PREFIX)]
    if seq:
        return max(seq) + 1
    raise LayerError("cached arrays hold no layer statistics")


def select_layers(arrays: dict[str, np.ndarray], layers: Any, pooling: str) -> np.ndarray:
    """Pick the recipe's layers and pooling from cached per-layer arrays.

    - one layer (int): a vector (D,) — or (2D,) for ``mean+std`` — or, for ``none``, a sequence (T, D);
    - several layers (list or ``"all"``): (n_layers, D) (``mean+std``: (n_layers, 2D));
      for ``none`` the chosen layers' frames are concatenated along features: (T, n_layers*D).
    """
    if pooling == "none":
        n = n_layers_of(arrays) if any(k in arrays for k in STAT_KEYS) else None
        idx = layer_indices(layers, n) if n is not None else list(layers if isinstance(layers, list) else [layers])
        missing = [sequence_key(i) for i in idx if sequence_key(i) not in arrays]
        if missing:
            raise LayerError(f"pooling none: cached arrays lack {', '.join(missing)}; re-encode with pooling: none")
        seqs = [arrays[sequence_key(i)] for i in idx]
        return seqs[0] if len(seqs) == 1 else np.concatenate(seqs, axis=-1)
    idx = layer_indices(layers, n_layers_of(arrays))
    if pooling == "mean+std":
        stack = np.concatenate([arrays["mean"], arrays["std"]], axis=-1)
    elif pooling in ("mean", "std", "max"):
        stack = arrays[pooling]
    else:
        raise LayerError(f"pooling: unknown value '{pooling}' (mean, mean+std, max, none)")
    out = stack[idx]
    return out[0] if isinstance(layers, int) else out


def sequences_for(
    hidden_states: Sequence[Any], lengths: Sequence[int], layers: Sequence[int]
) -> list[dict[str, np.ndarray]]:
    """Each item's real frames (T_b, D) of the given layers, keyed by :func:`sequence_key`."""
    out = []
    for b, n in enumerate(lengths):
        out.append({
            sequence_key(i): np.ascontiguousarray(np.asarray(_numpy(hidden_states[i][b, : int(n)]), dtype=np.float32))
            for i in layers
        })
    return out


def _numpy(x: Any) -> np.ndarray:
    return x.float().cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)
