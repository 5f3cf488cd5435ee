"""fusionkit.sdk.layers: pooling over real frames, exact chunk merging, layer/pooling selection."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from fusionkit.sdk.layers import (  # noqa: E402
    LayerError,
    finish_stats,
    layer_indices,
    merge_stats,
    pool_layers,
    select_layers,
    sequence_key,
    sequences_for,
)

rng = np.random.default_rng(0)


def test_pool_layers_ignores_padded_frames():
    L1, B, T, D = 3, 2, 7, 4
    h = rng.normal(size=(L1, B, T, D)).astype(np.float32)
    h[:, 1, 4:] = 1e6  # padding garbage after item 1's 4 real frames
    stats = pool_layers(list(h), [7, 4])
    for b, n in ((0, 7), (1, 4)):
        real = h[:, b, :n]
        np.testing.assert_allclose(stats[b]["mean"], real.mean(1), rtol=1e-5)
        np.testing.assert_allclose(stats[b]["std"], real.std(1), rtol=1e-4)
        np.testing.assert_array_equal(stats[b]["max"], real.max(1))
        assert stats[b]["frames"][0] == n


def test_merge_stats_equals_pooling_the_whole_clip():
    seq = rng.normal(size=(3, 50, 5)).astype(np.float32)  # (L+1, T, D)
    parts = [pool_layers([s[None] for s in seq[:, a:b]], [b - a])[0] for a, b in ((0, 17), (17, 40), (40, 50))]
    merged = finish_stats(merge_stats(parts))
    whole = finish_stats(pool_layers([s[None] for s in seq], [50])[0])
    for k in ("mean", "std", "max"):
        np.testing.assert_allclose(merged[k], whole[k], rtol=1e-4, atol=1e-6)
    assert set(merged) == {"mean", "std", "max"}


def test_layer_indices():
    assert layer_indices("all", 4) == [0, 1, 2, 3]
    assert layer_indices(-1, 4) == [3]
    assert layer_indices([0, -2], 4) == [0, 2]
    with pytest.raises(LayerError, match="layers: 4 is out of range; this model has layers 0..3"):
        layer_indices([1, 4], 4)
    with pytest.raises(LayerError, match="layers: -5 is out of range"):
        layer_indices(-5, 4)


def test_select_layers_shapes_and_values():
    arrays = {k: rng.normal(size=(4, 6)).astype(np.float32) for k in ("mean", "std", "max")}
    np.testing.assert_array_equal(select_layers(arrays, 2, "mean"), arrays["mean"][2])
    np.testing.assert_array_equal(select_layers(arrays, -1, "max"), arrays["max"][3])
    both = select_layers(arrays, 1, "mean+std")
    np.testing.assert_array_equal(both, np.concatenate([arrays["mean"][1], arrays["std"][1]]))
    assert select_layers(arrays, "all", "mean").shape == (4, 6)
    assert select_layers(arrays, [0, 3], "mean+std").shape == (2, 12)
    with pytest.raises(LayerError, match="unknown value"):
        select_layers(arrays, 0, "median")


def test_sequences_are_cut_to_real_frames_and_selected():
    h = [rng.normal(size=(2, 9, 3)).astype(np.float32) for _ in range(3)]
    seqs = sequences_for(h, [9, 5], [0, 2])
    assert seqs[1][sequence_key(2)].shape == (5, 3)
    np.testing.assert_array_equal(seqs[1][sequence_key(0)], h[0][1, :5])
    arrays = {**finish_stats(pool_layers(h, [9, 5])[1]), **seqs[1]}
    assert select_layers(arrays, 2, "none").shape == (5, 3)
    assert select_layers(arrays, [0, -1], "none").shape == (5, 6)
    with pytest.raises(LayerError, match="lack seq.1"):
        select_layers(arrays, 1, "none")
