"""hf-text on tiny random BERT / RoBERTa / T5 models saved to disk and loaded through the plugin."""

from __future__ import annotations

import logging

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from text_fixtures import tiny_bert, tiny_roberta, tiny_t5  # noqa: E402

from fusionkit.pipeline.encode import encode_clips  # noqa: E402
from fusionkit.sdk.base import Clip  # noqa: E402
from fusionkit_plugins.hf_text import HFTextEncoder, HFTextOptions  # noqa: E402

BUILDERS = {"bert": (tiny_bert, 2), "roberta": (tiny_roberta, 3), "t5": (tiny_t5, 2)}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def model_dir(request, tmp_path_factory):
    build, blocks = BUILDERS[request.param]
    return build(tmp_path_factory.mktemp(request.param)), blocks, request.param


def encoder(path, **kw) -> HFTextEncoder:
    enc = HFTextEncoder(HFTextOptions(model=str(path), **kw))
    enc.load()
    return enc


def test_every_layer_pooled_and_selected(model_dir):
    path, blocks, kind = model_dir
    enc = encoder(path, layers="all")
    if kind == "t5":
        assert type(enc.model).__name__ == "T5EncoderModel"
    (arrays,) = enc.encode_batch(["kids are talking by the door"])
    assert arrays["cls"].shape == (blocks + 1, 16) and arrays["mean"].shape == (blocks + 1, 16)
    assert enc.select(arrays).shape == (blocks + 1, 16)
    last = HFTextEncoder(HFTextOptions(model=str(path), pooling="cls", layers=-1)).select(arrays)
    np.testing.assert_array_equal(last, arrays["cls"][-1])
    two = HFTextEncoder(HFTextOptions(model=str(path), layers=[0, -1])).select(arrays)
    assert two.shape == (2, 16)
    assert not np.allclose(arrays["cls"][-1], arrays["mean"][-1])


def test_mean_pooling_ignores_padding(model_dir):
    path, _, _ = model_dir
    enc = encoder(path, pooling="mean")
    short = "I am so happy today"
    (alone,) = enc.encode_batch([short])
    padded, _ = enc.encode_batch([short, "dogs are sitting by the door and kids are talking by the door"])
    np.testing.assert_allclose(alone["mean"], padded["mean"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(alone["cls"], padded["cls"], rtol=1e-4, atol=1e-5)
    assert alone["tokens"][0] < padded["tokens"][0] + 1  # real tokens counted, not padding


def test_sequences_only_for_pooling_none(model_dir):
    path, blocks, _ = model_dir
    enc = encoder(path, pooling="none", layers=[1, -1])
    assert enc.is_sequence()
    assert enc.required_keys() == {"seq.1", f"seq.{blocks}"}
    short, longer = enc.encode_batch(["the meeting is at noon", "what a lovely surprise the meeting is at noon"])
    n_short = int(short["tokens"][0])
    assert short["seq.1"].shape == (n_short, 16)
    assert enc.select(short).shape == (n_short, 32)
    pooled = encoder(path)
    (plain,) = pooled.encode_batch(["the meeting is at noon"])
    assert not any(k.startswith("seq.") for k in plain)
    np.testing.assert_allclose(short[f"seq.{blocks}"].mean(axis=0), plain["mean"][-1], rtol=1e-4, atol=1e-5)


def test_truncation_is_counted_and_logged(tmp_path, caplog):
    path = tiny_roberta(tmp_path / "roberta")  # 18 positions, offset by pad id 0 + 1 -> 17 tokens at most
    enc = encoder(path, max_length=64)
    assert enc.limit == 17
    long_text = " ".join(["kids are talking by the door"] * 5)
    with caplog.at_level(logging.WARNING, logger="fusionkit"):
        out = enc.encode_batch([long_text, "hello"])
    assert enc.truncated == 1
    assert out[0]["tokens"].tolist() == [17, 32]  # 30 words + <s> </s>, cut to what the positions allow
    assert any("1 of 2 texts" in r.getMessage() for r in caplog.records)


def test_cache_hits_and_view_options(tmp_path):
    path = tiny_bert(tmp_path / "bert")
    clips = [Clip(id=f"c{i}", path=None, label="x", speaker="s", text=t)
             for i, t in enumerate(["kids are talking by the door", "I am so happy today", "what a lovely surprise"])]
    clips.append(Clip(id="empty", path=None, label="x", speaker="s", text=None))
    cache = tmp_path / "cache"
    first = encode_clips(HFTextEncoder(HFTextOptions(model=str(path))), clips, cache, {})
    assert (first.computed, first.cached) == (3, 0)
    assert first.skipped == {"empty": "no transcript"}
    # pooling and layers are view options: a new view of the same cache entries
    view = HFTextEncoder(HFTextOptions(model=str(path), pooling="cls", layers="all", batch_size=1))
    second = encode_clips(view, clips, cache, {})
    assert (second.computed, second.cached) == (0, 3)
    assert second.features["c0"].shape == (3, 16)
    # max_length changes what is encoded: another cache key
    assert HFTextEncoder(HFTextOptions(model=str(path), max_length=8)).cache_key() != view.cache_key()
    # sequences are not in the pooled entries: pooling none encodes again, then hits
    seq = HFTextEncoder(HFTextOptions(model=str(path), pooling="none"))
    assert encode_clips(seq, clips, cache, {}).computed == 3
    assert encode_clips(HFTextEncoder(HFTextOptions(model=str(path), pooling="none")), clips, cache, {}).cached == 3


def test_bad_layer_is_one_clear_error(tmp_path):
    path = tiny_bert(tmp_path / "bert")
    enc = encoder(path, layers=7)
    (arrays,) = enc.encode_batch(["hello"])
    with pytest.raises(ValueError, match="layers: 7 is out of range"):
        enc.select(arrays)


def test_bad_layer_fails_before_encoding(tmp_path):
    from fusionkit.sdk.layers import LayerError

    enc = HFTextEncoder(HFTextOptions(model=str(tiny_bert(tmp_path / "bert")), layers=[0, 9]))
    clips = [Clip(id="c0", path=None, label="a", speaker="s", text="hello")]
    with pytest.raises(LayerError, match="^bert: layers: 9 is out of range"):
        encode_clips(enc, clips, tmp_path / "cache", {}, label="bert")
    assert enc.model is None  # nothing loaded, nothing encoded


def test_missing_model_folder_named(tmp_path):
    enc = HFTextEncoder(HFTextOptions(model=str(tmp_path / "nope")))
    with pytest.raises(Exception, match="nope"):
        enc.load()
