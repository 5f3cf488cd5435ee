"""whisper encoder plugin on a tiny random transformers checkpoint: log-mel, states, layers, pooling, cache."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("transformers")

from whisper_fixtures import TINY, tiny_whisper, voice  # noqa: E402

from fusionkit.pipeline.encode import clip_digests, encode_clips  # noqa: E402
from fusionkit.sdk.base import Clip  # noqa: E402
from fusionkit.sdk.layers import LayerError  # noqa: E402
from fusionkit_plugins.whisper import WhisperEncoderPlugin, WhisperOptions  # noqa: E402
from fusionkit_plugins.whisper_mel import LogMel  # noqa: E402

L, D = TINY["encoder_layers"], TINY["d_model"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


def make(model_dir, **kw) -> WhisperEncoderPlugin:
    return WhisperEncoderPlugin(WhisperOptions(model=str(model_dir), **kw))


def hf_states(model_dir, x: np.ndarray):
    """Reference: feature extractor (30 s padding) + transformers encoder with output_hidden_states."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    fe = WhisperFeatureExtractor.from_pretrained(model_dir)
    feats = fe(x, sampling_rate=16000, return_tensors="pt").input_features
    enc = WhisperModel.from_pretrained(model_dir).get_encoder().eval()
    with torch.inference_mode():
        out = enc(feats, output_hidden_states=True)
    return feats[0].numpy(), [h[0].numpy() for h in out.hidden_states]


def test_log_mel_matches_feature_extractor(model_dir):
    from transformers import WhisperFeatureExtractor

    x = voice(2.7, seed=1)
    extractor = WhisperFeatureExtractor.from_pretrained(model_dir)
    ref = extractor(x, sampling_rate=16000, return_tensors="np").input_features[0]
    padded = LogMel(80)(x, 480000).numpy()
    assert padded.shape == ref.shape == (80, 3000)
    np.testing.assert_allclose(padded, ref, atol=2e-4)
    own = LogMel(80)(x).numpy()
    assert own.shape == (80, len(x) // 160)
    # frames whose window lies inside the signal are the same at own length
    np.testing.assert_allclose(own[:, :-2], ref[:, : own.shape[1] - 2], atol=2e-4)


def test_pad_to_30_equals_transformers_encoder(model_dir):
    x = voice(1.9, seed=2)
    _, hs = hf_states(model_dir, x)
    n = (len(x) // 160 + 1) // 2
    arrays = make(model_dir, pad_to=30).encode_batch([x])[0]
    assert arrays["mean"].shape == (L + 1, D)
    ref_mean = np.stack([h[:n].mean(0) for h in hs])
    np.testing.assert_allclose(arrays["mean"], ref_mean, atol=2e-4)
    np.testing.assert_allclose(arrays["max"], np.stack([h[:n].max(0) for h in hs]), atol=2e-4)


def test_own_length_equals_transformers_on_a_full_window(model_dir):
    x = voice(30.0, seed=3)  # exactly one window: own length == 3000 frames
    _, hs = hf_states(model_dir, x)
    enc = make(model_dir, layers="all", pooling="none")
    seq = enc.select(enc.encode_batch([x])[0])
    assert seq.shape == (1500, (L + 1) * D)
    np.testing.assert_allclose(seq, np.concatenate(hs, axis=-1), atol=5e-3)  # sequences cached as float16


def test_shapes_layers_and_pooling(model_dir):
    x = voice(1.3)
    frames = (len(x) // 160 + 1) // 2
    arrays = make(model_dir).encode_batch([x])[0]
    assert set(arrays) == {"mean", "std", "max"}
    assert make(model_dir, layers=2).select(arrays).shape == (D,)
    assert make(model_dir, layers=-1).select(arrays).shape == (D,)
    assert make(model_dir, layers=[0, 3]).select(arrays).shape == (2, D)
    assert make(model_dir, layers="all").select(arrays).shape == (L + 1, D)
    assert make(model_dir, layers=1, pooling="mean+std").select(arrays).shape == (2 * D,)
    np.testing.assert_array_equal(make(model_dir, layers=1, pooling="max").select(arrays), arrays["max"][1])
    enc = make(model_dir, layers=[1, 2], pooling="none")
    seq_arrays = enc.encode_batch([x])[0]
    assert {"seq.1", "seq.2"} <= set(seq_arrays) and "seq.0" not in seq_arrays
    assert enc.select(seq_arrays).shape == (frames, 2 * D)
    assert enc.is_sequence() and not make(model_dir).is_sequence()
    with pytest.raises(LayerError, match="layers: 7 is out of range; this model has layers 0..3"):
        make(model_dir, layers=7).select(arrays)


def test_batch_does_not_change_a_clip(model_dir):
    a, b, c = voice(0.8, seed=4), voice(2.4, seed=5), voice(1.6, seed=6)
    enc = make(model_dir, layers="all")
    alone = enc.encode_batch([a])[0]
    together = enc.encode_batch([b, a, c])[1]
    for k in ("mean", "std", "max"):
        np.testing.assert_allclose(together[k], alone[k], atol=1e-5)


def test_short_clip_vs_padded_shapes_and_difference(model_dir):
    x = voice(1.2, seed=7)
    own = make(model_dir, layers="all").encode_batch([x])[0]
    pad = make(model_dir, layers="all", pad_to=30).encode_batch([x])[0]
    assert own["mean"].shape == pad["mean"].shape == (L + 1, D)
    # layer 0 sees only convolutions + positions: equal except for the last frame's context
    assert np.abs(own["mean"][0] - pad["mean"][0]).max() < 0.05
    # attention over 28.8 s of padding changes the deeper layers
    assert np.abs(own["mean"][L] - pad["mean"][L]).max() > 1e-3


def test_long_clip_is_windowed(model_dir):
    x = voice(35.0, seed=8)
    enc = make(model_dir, layers=0, pooling="none")
    arrays = enc.encode_batch([x])[0]
    assert enc.select(arrays).shape == (1500 + (500 + 1) // 2, D)
    first = make(model_dir, layers=0, pooling="none").encode_batch([x[: 30 * 16000]])[0]
    # the first window is encoded in a batch of two here and alone there: equal up to BLAS rounding
    np.testing.assert_allclose(arrays["seq.0"][:1500].astype(np.float32), first["seq.0"].astype(np.float32),
                               rtol=2e-3, atol=2e-3)


def test_tiny_and_silent_inputs(model_dir):
    enc = make(model_dir, layers="all")
    out = enc.encode_batch([np.zeros(100, np.float32), np.zeros(16000, np.float32)])
    assert all(np.isfinite(o["mean"]).all() for o in out)


def _wavs(tmp_path, n=2):
    import soundfile as sf

    clips = []
    for i in range(n):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, voice(0.6 + 0.4 * i, seed=10 + i), 16000)
        clips.append(Clip(id=f"c{i}", path=p, label="a", speaker=f"s{i}"))
    return clips


def test_cache_hits_across_layers_and_pooling(model_dir, tmp_path):
    clips = _wavs(tmp_path)
    digests, skipped = clip_digests(clips)
    assert not skipped
    cache = tmp_path / "cache"
    first = encode_clips(make(model_dir, layers=2), clips, cache, digests)
    assert (first.computed, first.cached) == (2, 0)
    again = encode_clips(make(model_dir, layers=2), clips, cache, digests)
    assert (again.computed, again.cached) == (0, 2)
    np.testing.assert_array_equal(again.features["c1"], first.features["c1"])
    other = encode_clips(make(model_dir, layers=[1, 3], pooling="mean+std", batch_size=1), clips, cache, digests)
    assert (other.computed, other.cached) == (0, 2)
    assert other.features["c0"].shape == (2, 2 * D)
    seq = encode_clips(make(model_dir, layers=1, pooling="none"), clips, cache, digests)
    assert seq.computed == 2  # sequences were not cached yet
    seq2 = encode_clips(make(model_dir, layers=1, pooling="none"), clips, cache, digests)
    assert (seq2.computed, seq2.cached) == (0, 2)
    pooled = encode_clips(make(model_dir, layers=1), clips, cache, digests)
    assert pooled.computed == 0  # the pooled arrays survived the merge
    padded = encode_clips(make(model_dir, layers=1, pad_to=30), clips, cache, digests)
    assert padded.computed == 2  # padding changes the states: another cache entry


def test_layers_out_of_range_fail_before_encoding(model_dir, tmp_path):
    """A layer the model lacks ends the call with one line naming the encoder, before any clip is encoded
    (it used to encode every clip and then skip each one)."""
    clips = _wavs(tmp_path)
    enc = make(model_dir, layers=[1, 7])
    with pytest.raises(LayerError, match=r"^base: layers: 7 is out of range; this model has layers 0\.\.3"):
        encode_clips(enc, clips, tmp_path / "cache", clip_digests(clips)[0], label="base")
    assert enc._runner is None  # nothing loaded, nothing encoded
    assert not list((tmp_path / "cache").rglob("*.safetensors"))


def test_validate_checks_layers_against_the_model(model_dir, tmp_path):
    """``fusionkit validate`` reads the model's config: a layer it lacks is an error line and exit 2."""
    from click.testing import CliRunner

    from fusionkit.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "r", "data": {"dataset": "synthetic", "options": {"speakers": 4, "clips_per_class": 2}},
        "encoders": [{"plugin": "lld"}, {"plugin": "whisper", "name": "base",
                                          "options": {"model": str(model_dir), "layers": [1, 7]}}],
        "fusion": {"plugin": "linear"}, "split": {"kind": "speaker-kfold", "folds": 2}}))
    bad = CliRunner().invoke(main, ["validate", str(recipe)])
    assert bad.exit_code == 2
    assert bad.stderr.strip() == (f"error: {recipe}: encoders.1 (base): layers: 7 is out of range; "
                                  "this model has layers 0..3 (or -4..-1)")
    assert CliRunner().invoke(main, ["validate", str(recipe), "--no-models"]).exit_code == 0
    fixed = CliRunner().invoke(main, ["validate", str(recipe), "--set", "encoders.1.options.layers=3"])
    assert fixed.exit_code == 0, fixed.output


def test_cache_key_follows_weights_not_spelling(model_dir, tmp_path):
    a = make(model_dir)
    assert a.cache_key() == make(model_dir, layers="all", pooling="max", batch_size=3, threads=1).cache_key()
    assert a.cache_key() != make(model_dir, pad_to=10).cache_key()
    other = tiny_whisper(tmp_path / "other", seed=1)
    assert a.cache_key() != make(other).cache_key()


def test_options_validation():
    from pydantic import ValidationError

    bads = ({"pad_to": 45}, {"pad_to": 0}, {"layers": []}, {"pooling": "median"}, {"unknown": 1}, {"device": "tpu"})
    for bad in bads:
        with pytest.raises(ValidationError):
            WhisperOptions(**bad)
    assert WhisperOptions(pad_to=30).pad_to == 30


def test_not_a_whisper_checkpoint(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a Whisper checkpoint"):
        make(tmp_path).load()


def test_registered():
    from fusionkit.registry import registry

    assert registry().get("encoder", "whisper") is WhisperEncoderPlugin


def test_batched_log_mel_equals_one_by_one():
    mel = LogMel(80)
    sigs = [voice(s, seed=i) for i, s in enumerate((0.004, 0.2, 1.0, 3.7))]
    batch, frames = mel.batch(sigs)
    assert frames == [1, 20, 100, 370] and batch.shape == (4, 80, 370)
    for i, s in enumerate(sigs):
        np.testing.assert_allclose(batch[i, :, : frames[i]].numpy(), mel(s).numpy(), atol=1e-6)
        assert not batch[i, :, frames[i]:].any()
    padded, pframes = mel.batch(sigs[:2], 480000)
    assert pframes == [3000, 3000]
    np.testing.assert_allclose(padded[1].numpy(), mel(sigs[1], 480000).numpy(), atol=1e-6)


def test_pool_batch_equals_pool_layers():
    import torch

    from fusionkit.sdk.layers import pool_layers
    from fusionkit_plugins.whisper_model import pool_batch

    g = torch.Generator().manual_seed(0)
    layers = [torch.randn(3, 7, 5, generator=g) * 20 + 50 for _ in range(4)]
    for lengths in ([7, 3, 1], [7, 7, 7]):
        ours, ref = pool_batch(layers, lengths), pool_layers(layers, lengths)
        for a, b in zip(ours, ref):
            for k in ("mean", "std", "max", "frames"):
                np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-4, err_msg=k)
