"""wav2vec2 / HuBERT / WavLM / data2vec-audio / Wav2Vec2-BERT encoders on tiny random models.

Each model is built from a config, saved with its feature extractor into a tmp folder
and loaded through the plugin's real loading path (``model`` = that folder).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from ssl_fixtures import HIDDEN, KINDS, LAYERS, tiny_ssl, tiny_w2v_bert, voiced  # noqa: E402

from fusionkit.pipeline.encode import encode_clips  # noqa: E402
from fusionkit.sdk.base import Clip  # noqa: E402
from fusionkit.sdk.layers import LayerError  # noqa: E402
from fusionkit_plugins.w2v_bert import W2VBertEncoder, W2VBertOptions  # noqa: E402
from fusionkit_plugins.wav2vec2 import Wav2Vec2Encoder, Wav2Vec2Options  # noqa: E402

ALL_KINDS = sorted(KINDS) + ["w2v-bert"]
MODEL_CLASS = {**{k: v[0] for k, v in KINDS.items()}, "w2v-bert": "Wav2Vec2BertModel"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl-models")
    out = {kind: tiny_ssl(kind, root / kind) for kind in KINDS}
    out["w2v-bert"] = tiny_w2v_bert(root / "w2v-bert")
    return out


def make(kind: str, path, **kw):
    if kind == "w2v-bert":
        return W2VBertEncoder(W2VBertOptions(model=str(path), **kw))
    return Wav2Vec2Encoder(Wav2Vec2Options(model=str(path), **kw))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_layer_pooled_and_selected(models, kind):
    enc = make(kind, models[kind])
    enc.load()
    assert type(enc.model).__name__ == MODEL_CLASS[kind]
    assert not enc.model.training
    (arrays,) = enc.encode_batch([voiced(1.2)])
    assert set(arrays) == {"mean", "std", "max"}
    for key in ("mean", "std", "max"):
        assert arrays[key].shape == (LAYERS + 1, HIDDEN) and arrays[key].dtype == np.float32
        assert np.all(np.isfinite(arrays[key]))
    assert np.all(arrays["std"] >= 0) and np.all(arrays["max"] >= arrays["mean"] - 1e-6)
    assert enc.select(arrays).shape == (LAYERS + 1, HIDDEN)  # default: all layers, mean
    sel = lambda **kw: make(kind, models[kind], **kw).select(arrays)  # noqa: E731
    np.testing.assert_array_equal(sel(layers=-1), arrays["mean"][-1])
    np.testing.assert_array_equal(sel(layers=0, pooling="max"), arrays["max"][0])
    assert sel(layers=1, pooling="mean+std").shape == (2 * HIDDEN,)
    assert sel(layers=[0, -1], pooling="mean+std").shape == (2, 2 * HIDDEN)
    assert not np.allclose(arrays["mean"][0], arrays["mean"][-1])
    with pytest.raises(LayerError, match="out of range"):
        sel(layers=LAYERS + 1)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_padding_in_a_batch_does_not_change_a_clip(models, kind):
    enc = make(kind, models[kind], batch_size=4)
    short, longer = voiced(0.45, f0=220, seed=1), voiced(1.6, f0=120, seed=2)
    (alone,) = enc.encode_batch([short])
    batched = enc.encode_batch([longer, short, voiced(1.0, seed=3)])
    for key in ("mean", "std", "max"):
        np.testing.assert_allclose(batched[1][key], alone[key], rtol=1e-4, atol=1e-5)
    exact = kind in ("wav2vec2-layer", "hubert", "wavlm", "w2v-bert")
    # models that padding would change run one chunk per forward pass
    assert enc.forward_batch_size() == (4 if exact else 1)
    if kind != "w2v-bert":
        assert enc.uses_mask == KINDS[kind][1]


@pytest.mark.parametrize("kind", ["wav2vec2-group", "hubert", "w2v-bert"])
def test_pooling_covers_only_real_frames(models, kind):
    enc = make(kind, models[kind], pooling="none", layers=[0, -1], batch_size=2)
    x = voiced(0.8, seed=4)
    arrays = enc.encode_batch([x, voiced(2.0, seed=5)])[0]
    seq0, seq_last = arrays["seq.0"], arrays[f"seq.{LAYERS}"]
    if kind == "w2v-bert":
        expected = enc.feature_extractor([x], sampling_rate=16000, return_tensors="np")["attention_mask"].sum()
    else:
        expected = enc.frame_lengths([len(x)])[0]
    assert seq0.shape == seq_last.shape == (expected, HIDDEN)
    np.testing.assert_allclose(arrays["mean"][0], seq0.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(arrays["std"][-1], seq_last.std(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(arrays["max"][-1], seq_last.max(axis=0), rtol=1e-5, atol=1e-6)
    assert enc.is_sequence() and enc.select(arrays).shape == (expected, 2 * HIDDEN)


@pytest.mark.parametrize("kind", ["wav2vec2-layer", "w2v-bert"])
def test_long_audio_is_chunked_and_merged_exactly(models, kind):
    enc = make(kind, models[kind], max_seconds=1.0, pooling="none", layers="all")
    x = voiced(2.5, seed=6)
    chunks = enc.chunks(x)
    assert len(chunks) == 3 and max(map(len, chunks)) <= 16000 and sum(map(len, chunks)) == len(x)
    (arrays,) = enc.encode_batch([x])
    pieces = [enc.encode_batch([c])[0] for c in enc.chunks(x)]
    for layer in range(LAYERS + 1):
        seq = arrays[f"seq.{layer}"]
        assert len(seq) == sum(len(p[f"seq.{layer}"]) for p in pieces)
        np.testing.assert_allclose(arrays["mean"][layer], seq.mean(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(arrays["std"][layer], seq.std(axis=0), rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(arrays["max"][layer], seq.max(axis=0), rtol=1e-6)


@pytest.mark.parametrize("kind", ["wav2vec2-group", "w2v-bert"])
def test_clip_shorter_than_the_receptive_field(models, kind):
    (arrays,) = make(kind, models[kind]).encode_batch([voiced(0.005)])
    assert arrays["mean"].shape == (LAYERS + 1, HIDDEN) and np.all(np.isfinite(arrays["mean"]))


def _clips(tmp_path, n=4):
    import soundfile as sf

    clips = []
    for i in range(n):
        path = tmp_path / f"c{i}.wav"
        sf.write(path, voiced(0.4 + 0.3 * i, f0=110 + 20 * i, seed=i), 16000)
        clips.append(Clip(id=f"c{i}", path=path, label="x", speaker=f"s{i % 2}"))
    return clips


@pytest.mark.parametrize("kind", ["wavlm", "w2v-bert"])
def test_cache_hits_and_layer_changes_encode_nothing(models, kind, tmp_path):
    from fusionkit.pipeline.encode import clip_digests

    clips = _clips(tmp_path)
    digests, skipped = clip_digests(clips)
    assert not skipped
    cache = tmp_path / "cache"
    run = lambda **kw: encode_clips(make(kind, models[kind], **kw), clips, cache, digests)  # noqa: E731
    first = run(layers="all")
    assert first.computed == 4 and first.cached == 0
    again = run(layers="all", batch_size=1)  # batch size is not part of the identity
    assert again.computed == 0 and again.cached == 4
    for cid in first.features:
        np.testing.assert_array_equal(first.features[cid], again.features[cid])
    other = run(layers=-1, pooling="mean+std")
    assert other.computed == 0 and other.features["c0"].shape == (2 * HIDDEN,)
    seq = run(layers=1, pooling="none")  # sequences are not cached yet: encoded once
    assert seq.computed == 4 and seq.features["c3"].ndim == 2
    assert run(layers=1, pooling="none").computed == 0
    assert run(layers=2, pooling="none").computed == 4  # another layer's sequence
    assert run(layers="all", pooling="max").computed == 0  # statistics kept alongside


def test_model_identity_follows_the_weights(models, tmp_path):
    a = make("hubert", models["hubert"])
    b = make("hubert", tiny_ssl("hubert", tmp_path / "other", seed=1))
    assert a.cache_key() != b.cache_key()
    assert a.cache_key() == make("hubert", models["hubert"], layers=0, pooling="max").cache_key()
    assert a.cache_key() != make("hubert", models["hubert"], max_seconds=10).cache_key()
    assert a.cache_key() == make("hubert", models["hubert"], threads=1, batch_size=2).cache_key()


def test_threads_option_is_restored(models):
    import torch

    before = torch.get_num_threads()
    one = make("wav2vec2-layer", models["wav2vec2-layer"], threads=1).encode_batch([voiced(0.5)])[0]
    assert torch.get_num_threads() == before
    default = make("wav2vec2-layer", models["wav2vec2-layer"]).encode_batch([voiced(0.5)])[0]
    np.testing.assert_allclose(one["mean"], default["mean"], rtol=1e-4, atol=1e-5)


def test_wrong_kind_of_model_is_one_clear_error(models, tmp_path):
    import transformers as tf

    bert = tmp_path / "bert"
    tf.BertModel(tf.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=37, vocab_size=50)).save_pretrained(bert)
    with pytest.raises(ValueError, match="'bert' model, not a wav2vec2-family one"):
        make("hubert", bert).load()
    with pytest.raises(ValueError, match="'hubert' model, not wav2vec2-bert"):
        make("w2v-bert", models["hubert"]).load()
    from fusionkit.modelref import ModelRefError

    with pytest.raises(ModelRefError, match="no such model folder"):
        make("hubert", tmp_path / "missing" / "model").model_identity()


def test_options_are_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Wav2Vec2Options(pooling="median")
    with pytest.raises(ValidationError):
        Wav2Vec2Options(device="tpu")
    with pytest.raises(ValidationError):
        W2VBertOptions(unknown=1)
    with pytest.raises(ValidationError, match="non-empty without repeats"):
        Wav2Vec2Options(layers=[1, 1])
    assert Wav2Vec2Options(layers=[1, 3]).layers == [1, 3]


def test_registered_as_plugins():
    from fusionkit.registry import registry

    reg = registry()
    assert reg.get("encoder", "wav2vec2") is Wav2Vec2Encoder
    assert reg.get("encoder", "w2v-bert") is W2VBertEncoder


def test_layers_out_of_range_fail_before_encoding(models, tmp_path):
    clips = _clips(tmp_path, n=1)
    from fusionkit.pipeline.encode import clip_digests

    enc = make("wavlm", models["wavlm"], layers=[0, LAYERS + 1])
    with pytest.raises(LayerError, match=f"layers: {LAYERS + 1} is out of range"):
        encode_clips(enc, clips, tmp_path / "cache", clip_digests(clips)[0])
    assert enc.model is None  # nothing was loaded or encoded


def test_cache_hits_need_neither_torch_nor_transformers(models, tmp_path):
    """A run served from the cache must not pay for importing the model stack."""
    import subprocess
    import sys
    import textwrap

    from fusionkit.pipeline.encode import clip_digests

    clips = _clips(tmp_path, n=2)
    digests = clip_digests(clips)[0]
    assert encode_clips(make("hubert", models["hubert"]), clips, tmp_path / "cache", digests).computed == 2
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from fusionkit.pipeline.encode import encode_clips
        from fusionkit.sdk.base import Clip
        from fusionkit_plugins.wav2vec2 import Wav2Vec2Encoder, Wav2Vec2Options
        clips = [Clip(id=c, path=Path(p), label="x", speaker="s") for c, p in {[(c.id, str(c.path)) for c in clips]!r}]
        enc = Wav2Vec2Encoder(Wav2Vec2Options(model={str(models["hubert"])!r}, layers=-1, pooling="max"))
        res = encode_clips(enc, clips, Path({str(tmp_path / "cache")!r}), {digests!r})
        assert (res.computed, res.cached) == (0, 2), (res.computed, res.cached)
        heavy = [m for m in ("torch", "transformers") if m in sys.modules]
        assert not heavy, heavy
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_uncached_hub_id_is_one_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail at once, no network retries
    enc = make("hubert", "nobody-fusionkit/no-such-model")
    with pytest.raises(OSError, match="nobody-fusionkit/no-such-model: not a local folder, not in the local hub cache"):
        enc.required_keys()


REAL_MODELS = {"wav2vec2": ["microsoft/wavlm-base-plus", "facebook/wav2vec2-base", "facebook/hubert-base-ls960"],
               "w2v-bert": ["facebook/w2v-bert-2.0"]}


@pytest.mark.slow
@pytest.mark.corpus
@pytest.mark.parametrize("plugin", sorted(REAL_MODELS))
def test_real_checkpoint_on_ravdess(plugin):
    """Only where a real checkpoint is in the local hub cache and the corpus is next to the project."""
    from conftest import corpus

    from fusionkit.audio import load_audio

    root = corpus("ravdess")
    hub = pytest.importorskip("huggingface_hub")
    found = None
    for ref in REAL_MODELS[plugin]:
        try:
            found = hub.snapshot_download(ref, local_files_only=True)
            break
        except Exception:  # noqa: BLE001 - not cached here
            continue
    if found is None:
        pytest.skip(f"none of {REAL_MODELS[plugin]} is in the local hub cache")
    files = sorted(root.glob("Actor_01/*.flac"))[:3]
    signals = [load_audio(f) for f in files]
    enc = make("w2v-bert" if plugin == "w2v-bert" else "hubert", found, batch_size=3)
    batched = enc.encode_batch(signals)
    n = enc.n_layers()
    for arrays in batched:
        assert arrays["mean"].shape[0] == n and np.all(np.isfinite(arrays["mean"]))
    alone = enc.encode_batch(signals[-1:])[0]
    np.testing.assert_allclose(batched[-1]["mean"], alone["mean"], rtol=1e-3, atol=1e-4)
