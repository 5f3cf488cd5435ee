"""``wav2vec2``: wav2vec2, HuBERT, WavLM and data2vec-audio checkpoints, every layer pooled and cached.

Loaded through transformers' ``AutoFeatureExtractor`` + ``AutoModel``. Models whose
feature encoder uses layer norm (``feat_extract_norm == "layer"``, or whose feature
extractor returns an attention mask) get an attention mask, so padding a clip in a
batch does not change its vector; pooling always covers only the clip's real frames
(``model._get_feat_extract_output_lengths``).

Models that padding changes even with a mask (group-norm feature encoders, which take
no mask; data2vec-audio, whose stacked positional convolutions leak padded frames into
real ones) run one chunk per forward pass unless ``batch_unmasked`` is set, so a clip's
cached features never depend on its batch neighbours.
"""

from __future__ import annotations

import inspect

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit_plugins.hf_layered import LayeredEncoder, LayeredOptions

# model types whose outputs for real frames do not change with masked padding, given a
# layer-norm feature encoder (checked in tests)
MASK_EXACT = frozenset({"wav2vec2", "hubert", "wavlm", "unispeech", "unispeech-sat"})


class Wav2Vec2Options(LayeredOptions):
    model: str = Field("facebook/wav2vec2-base", description="wav2vec2 / HuBERT / WavLM / data2vec-audio checkpoint")
    batch_unmasked: bool = Field(
        False, description="also batch models whose output changes with padding (group-norm base models, "
                           "data2vec-audio): "
        "faster, but a clip's features then depend slightly on its batch neighbours")


class Wav2Vec2Encoder(LayeredEncoder):
    """Self-supervised speech transformers with a convolutional feature encoder on raw 16 kHz audio."""

    name = "wav2vec2"
    description = "wav2vec2 / HuBERT / WavLM / data2vec-audio hidden states, every layer pooled (transformers)"
    Options = Wav2Vec2Options
    version = "1"
    uses_mask: bool = True
    padding_invariant: bool = True
    receptive_field: int = 400
    fine_tunable = ("wav2vec2", "hubert", "data2vec-audio")  # WavLM's blocks also need its relative position bias

    def load_model(self, path: str):
        from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor

        from fusionkit.sdk.torch_models import load_config, load_pretrained

        trust = self.options.trust_remote_code
        config = load_config(path, trust)
        model = load_pretrained("AutoModel", path, trust)
        if not hasattr(model, "_get_feat_extract_output_lengths") or not hasattr(config, "conv_kernel"):
            raise ValueError(
                f"model: {self.options.model} is a '{config.model_type}' model, not a wav2vec2-family one "
                "(wav2vec2, HuBERT, WavLM, data2vec-audio); use the w2v-bert or whisper encoder for those"
            )
        try:
            fe = AutoFeatureExtractor.from_pretrained(path, trust_remote_code=trust)
        except (OSError, ValueError):  # checkpoints without preprocessor_config.json
            fe = Wav2Vec2FeatureExtractor(
                feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                return_attention_mask=config.feat_extract_norm == "layer",
            )
        if getattr(fe, "sampling_rate", 16000) != self.sample_rate:
            raise ValueError(f"model: {self.options.model} expects {fe.sampling_rate} Hz audio; only 16 kHz models "
                             f"are supported")
        layer_norm = getattr(config, "feat_extract_norm", "") == "layer"
        self.uses_mask = bool(getattr(fe, "return_attention_mask", False)) or layer_norm
        # a group-norm first conv normalises over time, so padding shifts it even with a mask
        self.padding_invariant = (self.uses_mask and config.model_type in MASK_EXACT
                                  and getattr(config, "feat_extract_norm", "") == "layer")
        self.receptive_field = _receptive_field(config.conv_kernel, config.conv_stride)
        return fe, model

    def min_samples(self) -> int:
        return self.receptive_field

    def forward_batch_size(self) -> int:
        return self.batch_size() if self.padding_invariant or self.options.batch_unmasked else 1

    def frame_lengths(self, sample_lengths: list[int]) -> list[int]:
        import torch

        fn = self.model._get_feat_extract_output_lengths
        kwargs = {"add_adapter": False} if "add_adapter" in inspect.signature(fn).parameters else {}
        return [int(n) for n in fn(torch.tensor(sample_lengths), **kwargs)]

    def forward(self, signals: list[np.ndarray]):
        batch = self.feature_extractor(
            signals, sampling_rate=self.sample_rate, padding=True, return_attention_mask=True, return_tensors="pt",
        )
        device = next(self.model.parameters()).device
        kwargs = {"input_values": batch["input_values"].to(device=device, dtype=self.dtype)}
        if self.uses_mask:
            kwargs["attention_mask"] = batch["attention_mask"].to(device)
        out = self.model(**kwargs, output_hidden_states=True)
        return out.hidden_states, self.frame_lengths([len(s) for s in signals])


def _receptive_field(kernels, strides) -> int:
    """Samples one output frame of the convolutional feature encoder sees."""
    field, jump = 1, 1
    for k, s in zip(kernels, strides):
        field += (k - 1) * jump
        jump *= s
    return field


@hookimpl
def register_encoders(register):
    register(Wav2Vec2Encoder)
