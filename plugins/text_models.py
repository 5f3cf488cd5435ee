"""Shared by the text encoder plugins: model references, identity, devices, layer selection."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger("fusionkit")


def resolve(ref: str) -> str:
    """A local model folder for ``ref`` (path, ``pkg:<distribution>``), or a hub id unchanged."""
    from fusionkit.modelref import resolve_model

    return resolve_model(ref)


def identity(ref: str) -> str:
    """Content identity of the model ``ref`` names (a hub id is its own identity)."""
    from fusionkit.modelref import model_digest

    return model_digest(resolve(ref))


def torch_device(name: str) -> Any:
    """``cpu``, ``cuda``, ``cuda:1``, ``mps`` or ``auto`` (CUDA when available, else CPU) as a torch device."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine (use device: cpu)")
    return device


def pick_layers(stacked: np.ndarray, layers: int | list[int] | str) -> np.ndarray:
    """From (L+1, ...) per-layer arrays: one layer (...), several (k, ...), or all (L+1, ...)."""
    from fusionkit.sdk.layers import layer_indices

    idx = layer_indices(layers, stacked.shape[0])
    return stacked[idx[0]] if isinstance(layers, int) else stacked[idx]
