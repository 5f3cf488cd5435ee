"""``w2v-bert``: wav2vec2-BERT (conformer on 80-bin log-mel fbank, 16 kHz), every layer pooled and cached.

Features come from the checkpoint's ``SeamlessM4TFeatureExtractor`` (fbank, per-utterance
mel-bin normalisation over real frames, 2 frames stacked per step) with its attention
mask, which the model always receives; pooling covers each clip's real steps only.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit_plugins.hf_layered import LayeredEncoder, LayeredOptions


class W2VBertOptions(LayeredOptions):
    model: str = Field("facebook/w2v-bert-2.0", description="Wav2Vec2-BERT checkpoint with its SeamlessM4T feature "
                                                            "extractor")


class W2VBertEncoder(LayeredEncoder):
    """Wav2Vec2-BERT 2.0 (Seamless) conformer encoder states."""

    name = "w2v-bert"
    description = "wav2vec2-BERT (w2v-bert-2.0) conformer hidden states on fbank, every layer pooled (transformers)"
    Options = W2VBertOptions
    version = "1"

    def load_model(self, path: str):
        from transformers import SeamlessM4TFeatureExtractor

        from fusionkit.sdk.torch_models import load_config, load_pretrained

        trust = self.options.trust_remote_code
        config = load_config(path, trust)
        if config.model_type != "wav2vec2-bert":
            raise ValueError(f"model: {self.options.model} is a '{config.model_type}' model, not wav2vec2-bert (use "
                             f"the wav2vec2 or whisper encoder)")
        model = load_pretrained("Wav2Vec2BertModel", path, trust)
        try:
            fe = SeamlessM4TFeatureExtractor.from_pretrained(path)
        except OSError:
            raise ValueError(f"model: {self.options.model} has no preprocessor_config.json (the SeamlessM4T feature "
                             f"extractor)") from None
        if fe.sampling_rate != self.sample_rate:
            raise ValueError(f"model: {self.options.model} expects {fe.sampling_rate} Hz audio; only 16 kHz models "
                             f"are supported")
        return fe, model

    def min_samples(self) -> int:
        return 800  # two 25 ms fbank frames (10 ms hop), i.e. one stacked step

    def forward(self, signals: list[np.ndarray]):
        batch = self.feature_extractor(
            signals, sampling_rate=self.sample_rate, padding=True, return_attention_mask=True, return_tensors="pt",
        )
        device = next(self.model.parameters()).device
        mask = batch["attention_mask"].to(device)
        out = self.model(
            input_features=batch["input_features"].to(device=device, dtype=self.dtype),
            attention_mask=mask, output_hidden_states=True,
        )
        return out.hidden_states, [int(n) for n in mask.sum(1)]


@hookimpl
def register_encoders(register):
    register(W2VBertEncoder)
