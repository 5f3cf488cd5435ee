"""encode_clips: cache hits and misses, per-clip failures, entries an encoder cannot use."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from fusionkit.sdk.base import Clip, Encoder, Options

SR = 16000


class Stats(Encoder):
    """Mean |x| and std; ``fail_on`` makes encode_batch raise for signals of that length."""

    name = "stats"
    Options = Options
    fail_len: int | None = None
    width = 2

    def encode_batch(self, inputs):
        if self.fail_len is not None and any(len(x) == self.fail_len for x in inputs):
            raise RuntimeError("cannot handle this clip")
        return [{"features": np.array([np.abs(x).mean(), x.std()], dtype=np.float32)[: self.width]} for x in inputs]

    def select(self, arrays):
        f = arrays["features"]
        if f.shape != (2,):
            raise ValueError(f"expected 2 features, got {f.shape}")
        return f


@pytest.fixture
def clips(tmp_path):
    rng = np.random.default_rng(0)
    out = []
    for i in range(6):
        path = tmp_path / f"c{i}.wav"
        sf.write(path, rng.normal(0, 0.1 * (i + 1), SR // 2 + 100 * i).astype(np.float32), SR)
        out.append(Clip(id=f"c{i}", path=path, label="x", speaker=f"s{i % 2}"))
    return out


def encode(encoder, clips, cache):
    from fusionkit.pipeline.encode import clip_digests, encode_clips

    digests, skipped = clip_digests(clips)
    result = encode_clips(encoder, clips, cache, digests)
    return result, skipped


def test_hits_misses_and_one_failing_clip(tmp_path, clips, monkeypatch):
    monkeypatch.setenv("FUSIONKIT_PROGRESS", "0")
    enc = Stats(Options())
    enc.fail_len = SR // 2 + 300  # clip c3
    result, _ = encode(enc, clips, tmp_path / "cache")
    assert result.computed == 5 and result.cached == 0
    assert result.skipped == {"c3": "stats failed: RuntimeError: cannot handle this clip"}
    enc.fail_len = None
    result, _ = encode(enc, clips, tmp_path / "cache")
    assert (result.computed, result.cached, result.skipped) == (1, 5, {})
    np.testing.assert_allclose(result.features["c0"][1], 0.1, rtol=0.1)


def test_cached_entries_the_encoder_cannot_use_are_reencoded(tmp_path, clips, monkeypatch):
    monkeypatch.setenv("FUSIONKIT_PROGRESS", "0")
    old = Stats(Options())
    old.width = 1  # an earlier build wrote one feature per clip under the same cache key
    result, _ = encode(old, clips, tmp_path / "cache")
    assert result.computed == 0 and len(result.skipped) == 6  # its own output fails select: skipped, not cached
    assert "output unusable: ValueError: expected 2 features" in result.skipped["c0"]
    # plant such entries in the cache directly, then the fixed encoder re-encodes them
    from fusionkit.pipeline.cache import EmbeddingCache
    from fusionkit.pipeline.encode import clip_digests

    new = Stats(Options())
    digests, _ = clip_digests(clips)
    cache = EmbeddingCache(tmp_path / "cache", new.cache_key())
    for d in digests.values():
        cache.put(d, {"features": np.zeros(1, dtype=np.float32)})
    result, _ = encode(new, clips, tmp_path / "cache")
    assert (result.computed, result.cached, result.skipped) == (6, 0, {})
    result, _ = encode(new, clips, tmp_path / "cache")
    assert (result.computed, result.cached) == (0, 6)


def test_unexpected_decoder_error_skips_only_that_clip(tmp_path, clips, monkeypatch):
    from fusionkit.pipeline import featurize as featurize_mod  # where clips are decoded

    monkeypatch.setenv("FUSIONKIT_PROGRESS", "0")
    real = featurize_mod.load_audio

    def flaky(path, sr):
        if str(path).endswith("c2.wav"):
            raise MemoryError("decoder ran out of memory")
        return real(path, sr)

    monkeypatch.setattr(featurize_mod, "load_audio", flaky)
    result, _ = encode(Stats(Options()), clips, tmp_path / "cache")
    assert result.computed == 5
    assert result.skipped == {"c2": "cannot decode (MemoryError: decoder ran out of memory)"}
