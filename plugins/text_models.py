"""Shared by the text encoder plugins: model references, identity, loading arguments, devices, layer selection."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pydantic import Field

from fusionkit.sdk.base import Encoder, Options
from fusionkit.sdk.torch_models import DeviceName, Precision

log = logging.getLogger("fusionkit")


def resolve(ref: str) -> str:
    """A local model folder for ``ref`` (path, ``pkg:<distribution>``), or a hub id unchanged."""
    from fusionkit.modelref import resolve_model

    return resolve_model(ref)


def identity(ref: str) -> str:
    """Content identity of the model ``ref`` names (a hub id is its own identity)."""
    from fusionkit.modelref import model_digest

    return model_digest(resolve(ref))


class TextModelOptions(Options):
    """The options every text model encoder has besides its ``model``: where and in what precision it runs, and
    what it may load."""

    device: DeviceName = Field("cpu", description="cpu, cuda, cuda:N, mps or auto")
    precision: Precision = Field("auto", description="auto = bf16 on a CPU with native bf16 (AMX/AVX512-BF16), "
                                 "fp16 on an accelerator, else fp32; or fp32, bf16, fp16 (pooling stays fp32)")
    trust_remote_code: bool = Field(False, description="allow code shipped with the model to run")
    allow_download: bool = Field(False, description="let a hub id be downloaded; otherwise only the local Hugging "
                                                    "Face cache is used")


class TextModelEncoder(Encoder):
    """Base of the text encoders that load a model folder or hub id (``hf-text``, ``sentence-transformers``).

    Its options are :class:`TextModelOptions` with a ``model``; it keeps the
    loaded ``model`` and the model's content identity (computed once).
    """

    modality = "text"

    def __init__(self, options: Options):
        super().__init__(options)
        self.model = None
        self._identity: str | None = None

    def identity(self) -> dict[str, Any]:
        """The base identity, with the precision only where it is not fp32 (what these encoders always ran in)."""
        from fusionkit.sdk.torch_models import precision_identity

        return precision_identity(super().identity(), self.options.precision, self.options.device, legacy="fp32")

    def model_identity(self) -> str:
        if self._identity is None:
            self._identity = identity(self.options.model)
        return self._identity

    def model_path(self) -> str:
        """The resolved ``model`` reference: a local folder, or a hub id."""
        return resolve(self.options.model)

    def pretrained_kwargs(self) -> dict[str, bool]:
        """``trust_remote_code`` and ``local_files_only`` for ``from_pretrained``, from the options."""
        from fusionkit.sdk.torch_models import pretrained_kwargs

        return pretrained_kwargs(self.options.trust_remote_code, self.options.allow_download)

    def torch_device(self) -> Any:
        """The ``device`` option as a torch device; one ``DeviceError`` naming the plugin when it is not here."""
        from fusionkit.sdk.torch_models import resolve_device

        return resolve_device(self.options.device, self.name)


def pick_layers(stacked: np.ndarray, layers: int | list[int] | str) -> np.ndarray:
    """From (L+1, ...) per-layer arrays: one layer (...), several (k, ...), or all (L+1, ...)."""
    from fusionkit.sdk.layers import layer_indices

    idx = layer_indices(layers, stacked.shape[0])
    return stacked[idx[0]] if isinstance(layers, int) else stacked[idx]
