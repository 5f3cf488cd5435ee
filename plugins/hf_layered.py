"""Shared base of the transformers audio encoders that cache every layer (``wav2vec2``, ``w2v-bert``).

Not a plugin itself (no entry point): it resolves the model reference, loads on a
device, cuts long audio into chunks, pads length-sorted sub-batches, pools every
layer over each clip's real frames (:mod:`fusionkit.sdk.layers`) and merges the chunks
of a clip back into one set of statistics. A subclass says how to load its model
and how to run one padded batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from fusionkit.sdk.base import Encoder, LayerChoice, Options, Pooling
from fusionkit.sdk.layers import (
    finish_stats,
    layer_indices,
    merge_stats,
    pool_layers,
    select_layers,
    sequence_key,
    sequences_for,
    trainable_blocks,
)
from fusionkit.sdk.torch_models import Precision

log = logging.getLogger("fusionkit")


class LayeredOptions(Options):
    """Options shared by the layered transformers encoders."""

    model: str = Field(..., description="model folder, hub id (from the local hub cache) or pkg:<distribution>")
    layers: LayerChoice = Field("all", description="layer index, list of indices or 'all'; 0 = output before the "
                                                   "first transformer block, -1 = last")
    pooling: Pooling = Field("mean", description="mean | mean+std | max over the clip's frames, or none (frame "
                                                 "sequence)")
    batch_size: int = Field(8, ge=1, description="clips (chunks) per forward pass, padded within a length-sorted batch")
    device: Literal["cpu", "cuda", "mps"] = Field("cpu", description="cuda/mps run in float16 (see precision)")
    precision: Precision = Field("auto", description="auto = bf16 on a CPU with native bf16 (AMX/AVX512-BF16), "
                                 "fp16 on cuda/mps, else fp32; or fp32, bf16, fp16")
    threads: int | None = Field(None, ge=1, le=256, description="torch intra-op CPU threads while encoding; null = "
                                                                "torch's default (one per core)")
    max_seconds: float = Field(30.0, gt=0.5, le=600, description="longer audio is encoded in chunks of at most this "
                                                                 "length; statistics are merged exactly")
    trust_remote_code: bool = Field(False, description="allow custom model code shipped with the checkpoint")


class LayeredEncoder(Encoder):
    """Base: ``encode_batch`` returns ``mean``/``std``/``max`` of every layer, (L+1, D) each."""

    modality = "audio"
    view_options: ClassVar[frozenset[str]] = frozenset({"layers", "pooling"})
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    sample_rate = 16000

    def __init__(self, options: LayeredOptions):
        super().__init__(options)
        self.model = None
        self.feature_extractor = None

    # ---------------------------------------------------------- identity
    @cached_property
    def model_path(self) -> str:
        """A local folder for the model (a hub id found in the local hub cache is resolved to its snapshot)."""
        from fusionkit.modelref import resolve_model

        ref = resolve_model(self.options.model)
        if Path(ref).is_dir():
            return ref
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(ref, local_files_only=True)
        except Exception:  # noqa: BLE001 - not cached locally: leave it to from_pretrained
            return ref

    def model_identity(self) -> str:
        from fusionkit.modelref import model_digest

        return model_digest(self.model_path)

    def identity(self) -> dict[str, Any]:
        from fusionkit.sdk.torch_models import precision_identity

        ident = super().identity()
        for k in ("batch_size", "threads"):  # how it runs, not what it computes (see forward_batch_size)
            ident["options"].pop(k, None)
        return precision_identity(ident, self.options.precision, self.options.device)

    # ---------------------------------------------------------- loading
    def torch_device(self):
        """The ``device`` option as a torch device; one :class:`~fusionkit.sdk.torch_models.DeviceError` if absent."""
        from fusionkit.sdk.torch_models import resolve_device

        return resolve_device(self.options.device, self.name)

    @property
    def dtype(self):
        """The torch dtype of :meth:`precision` (float16 on an accelerator, float32 on the CPU unless set).

        Hidden states are pooled in float32 whatever it is (:func:`fusionkit.sdk.layers.pool_layers`)."""
        from fusionkit.sdk.torch_models import precision_dtype

        return precision_dtype(self.precision())

    def load(self) -> None:
        if self.model is not None:
            return
        from fusionkit.sdk.torch_models import for_inference

        device = self.torch_device()
        try:
            self.feature_extractor, model = self.load_model(self.model_path)
        except OSError as exc:
            raise self._unreachable(exc) from None
        self.model = for_inference(model, device, self.dtype)
        log.info("%s: running in %s on %s", self.name, self.precision(), device)

    # ---------------------------------------------------------- fine-tuning
    fine_tunable: ClassVar[tuple[str, ...]] = ()  # model types whose blocks fusionkit_plugins.hf_top can train

    def fine_tune_blocks(self, blocks: int | None = None) -> int:
        """How many blocks after the selected hidden state a fine-tune trains, from the model's config alone."""
        return trainable_blocks(self.name, self._fine_tune_start(), blocks, self.n_layers() - 1)

    def _fine_tune_start(self) -> int:
        o = self.options
        if o.pooling != "none" or not isinstance(o.layers, int):
            raise ValueError(f"{self.name}: fine-tuning needs frames of one layer: set layers to one index and "
                             f"pooling: none")
        (start,) = self.sequence_layers()
        return start

    def trainable_top(self, blocks: int | None = None):
        """The blocks after the selected hidden state (one index, ``pooling: none``), with this model's weights."""
        from fusionkit_plugins.hf_top import trainable_top

        start = self._fine_tune_start()
        self.load()
        model = self.model
        if self.precision() != "fp32":  # its weights were cast to bf16 / fp16 for encoding: train from the stored ones
            _, model = self.load_model(self.model_path)
        return trainable_top(model, start, blocks, self.name, self.fine_tunable)

    @classmethod
    def build_top(cls, spec):
        from fusionkit_plugins.hf_top import build_top

        return build_top(spec, cls.name, cls.fine_tunable)

    def _unreachable(self, exc: OSError) -> OSError:
        """One line for a hub id that is neither cached nor downloadable (other errors unchanged)."""
        if Path(self.model_path).is_dir():
            return exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return OSError(f"model: {self.options.model}: not a local folder, not in the local hub cache, "
                       f"and not downloadable here ({first})")

    def load_model(self, path: str):
        """(feature extractor, model) from ``path``; subclasses check the model kind
        (``fusionkit.sdk.torch_models.load_config`` / ``load_pretrained`` load them)."""
        raise NotImplementedError

    def n_layers(self) -> int:
        """L+1: the number of hidden states the model returns (config.json is read directly when it
        can be, so that a run served from the cache never imports torch or transformers)."""
        if self.model is not None:
            return int(self.model.config.num_hidden_layers) + 1
        from fusionkit.sdk.torch_models import hidden_layers

        try:
            return hidden_layers(self.model_path, self.options.trust_remote_code) + 1
        except OSError as exc:
            raise self._unreachable(exc) from None

    # ---------------------------------------------------------- work
    def min_samples(self) -> int:
        """Shortest input the model takes; shorter clips are zero-padded to it."""
        return 400

    def forward(self, signals: list[np.ndarray]) -> tuple[Sequence[Any], list[int]]:
        """Run one padded batch: (hidden states, L+1 tensors (B, T, D); real frames per item)."""
        raise NotImplementedError

    def chunks(self, x: np.ndarray) -> list[np.ndarray]:
        """Equal chunks of at most ``max_seconds``, each at least :meth:`min_samples` long."""
        x = np.asarray(x, dtype=np.float32)
        if len(x) < self.min_samples():
            x = np.pad(x, (0, self.min_samples() - len(x)))
        limit = int(self.options.max_seconds * self.sample_rate)
        n = max(1, math.ceil(len(x) / limit))
        size = math.ceil(len(x) / n)
        return [x[i : i + size] for i in range(0, len(x), size)]

    def forward_batch_size(self) -> int:
        """Chunks per forward pass: ``batch_size``, or 1 where padding would change a clip's result."""
        return self.batch_size()

    def sequence_layers(self) -> list[int]:
        return layer_indices(self.options.layers, self.n_layers()) if self.options.pooling == "none" else []

    def encode_batch(self, inputs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        from fusionkit.sdk.torch_models import inference

        self.load()
        items = [(i, c) for i, x in enumerate(inputs) for c in self.chunks(x)]
        order = sorted(range(len(items)), key=lambda k: -len(items[k][1]))
        stats: list[dict | None] = [None] * len(items)
        seqs: list[dict | None] = [None] * len(items)
        seq_layers = self.sequence_layers()
        size = self.forward_batch_size()
        with inference(self.options.threads):
            for start in range(0, len(order), size):
                group = order[start : start + size]
                hidden, lengths = self.forward([items[k][1] for k in group])
                pooled = pool_layers(hidden, lengths)
                frames = sequences_for(hidden, lengths, seq_layers) if seq_layers else [{}] * len(group)
                for k, p, s in zip(group, pooled, frames):
                    stats[k], seqs[k] = p, s
        out = []
        for i in range(len(inputs)):
            mine = [k for k, (j, _) in enumerate(items) if j == i]  # chunk order = time order
            arrays = finish_stats(merge_stats([stats[k] for k in mine]))
            for layer in seq_layers:
                key = sequence_key(layer)
                arrays[key] = np.concatenate([seqs[k][key] for k in mine], axis=0)
            out.append(arrays)
        return out

    # ---------------------------------------------------------- selection
    def required_keys(self) -> set[str]:
        """Also checks ``layers`` against the model (from its config) before anything is encoded."""
        chosen = layer_indices(self.options.layers, self.n_layers())
        seq = {sequence_key(i) for i in chosen} if self.options.pooling == "none" else set()
        return seq | {"mean", "std", "max"}

    def select(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return select_layers(arrays, self.options.layers, self.options.pooling)

    def is_sequence(self) -> bool:
        return self.options.pooling == "none"
