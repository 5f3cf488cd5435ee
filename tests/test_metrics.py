"""Metric values against hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from fusionkit.metrics import ccc, classification_metrics, pearson, regression_metrics, summarize


def test_classification_by_hand_with_an_absent_class():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 2])
    m = classification_metrics(y_true, y_pred, 4)  # class 3 never in the test labels
    assert m["confusion"] == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    # recalls 2/3, 1/2, 1 over the 3 present classes (the absent one is not counted as 0)
    assert m["uar"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["wa"] == pytest.approx(4 / 6)
    assert m["per_class"]["precision"] == pytest.approx([2 / 3, 1 / 2, 1.0, 0.0])
    assert m["per_class"]["recall"] == pytest.approx([2 / 3, 1 / 2, 1.0, 0.0])
    assert m["per_class"]["f1"] == pytest.approx([2 / 3, 1 / 2, 1.0, 0.0])
    assert m["per_class"]["support"] == [3, 2, 1, 0]
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 1 * 1) / 6)


def test_prediction_of_a_class_absent_from_the_test_labels():
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 3, 1, 1]), 4)
    assert m["uar"] == pytest.approx(0.75)
    assert m["wa"] == pytest.approx(0.75)
    # class 0: P = 1, R = 1/2, F1 = 2/3; class 1: F1 = 1; class 3 is not in the test labels
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["confusion"][0] == [1, 0, 0, 1]


def test_uar_differs_from_wa_on_imbalance():
    y_true = np.array([0] * 8 + [1] * 2)
    y_pred = np.zeros(10, dtype=int)  # always the majority class
    m = classification_metrics(y_true, y_pred, 2)
    assert m["wa"] == pytest.approx(0.8)
    assert m["uar"] == pytest.approx(0.5)


@pytest.mark.parametrize("pred, expected", [
    ([1, 2, 3, 4], 1.0),
    ([2, 3, 4, 5], 2.5 / 3.5),       # shifted by 1: cov 1.25, vars 1.25 + 1.25, bias 1
    ([2, 4, 6, 8], 5 / 12.5),        # scaled by 2: cov 2.5, vars 1.25 + 5, bias 2.5^2
    ([4, 3, 2, 1], -1.0),
    ([2.5, 2.5, 2.5, 2.5], 0.0),     # constant prediction
])
def test_ccc_by_hand(pred, expected):
    assert ccc(np.array([1, 2, 3, 4]), np.array(pred)) == pytest.approx(expected)


def test_regression_metrics_per_target():
    y = np.array([[1, 10], [2, 20], [3, 30], [4, 40]], dtype=float)
    p = np.array([[2, 10], [3, 20], [4, 30], [5, 40]], dtype=float)
    m = regression_metrics(y, p, ["arousal", "valence"])
    assert m["ccc_arousal"] == pytest.approx(2.5 / 3.5)
    assert m["ccc_valence"] == pytest.approx(1.0)
    assert m["ccc"] == pytest.approx((2.5 / 3.5 + 1) / 2)
    assert m["rmse_arousal"] == pytest.approx(1.0) and m["mae_arousal"] == pytest.approx(1.0)
    assert m["pearson_arousal"] == pytest.approx(1.0)
    assert pearson(np.array([1, 2, 3]), np.array([1, 1, 1])) == 0.0


def test_summarize_t_interval_by_hand():
    s = summarize([0.5, 0.7, 0.9])
    assert s["mean"] == pytest.approx(0.7)
    assert s["std"] == pytest.approx(0.2)  # n - 1
    half = 4.302653 * 0.2 / np.sqrt(3)  # t(0.975, df=2)
    assert s["ci95"] == pytest.approx([0.7 - half, 0.7 + half], abs=1e-5)
    assert s["n"] == 3
    one = summarize([0.8])
    assert (one["std"], one["ci95"]) == (0.0, [0.8, 0.8])


def test_uar_difference_resamples_whole_speakers():
    """Identical predictions differ by exactly 0; a clearly better cell's interval excludes 0; the interval of two
    equally good cells holds 0; a difference carried by one speaker is uncertain once speakers are resampled."""
    from fusionkit.metrics import uar_difference

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000)
    speakers = np.repeat(np.arange(20), 100)

    def noisy(accuracy):
        return np.where(rng.random(len(y)) < accuracy, y, rng.integers(0, 4, len(y)))

    good, worse, also_good = noisy(0.8), noisy(0.6), noisy(0.8)
    same = uar_difference(y, good, good, speakers)
    assert same["diff"] == 0.0 and same["ci95"] == [0.0, 0.0] and same["p"] == 1.0 and same["groups"] == 20
    clear = uar_difference(y, good, worse, speakers)
    assert 0.1 < clear["diff"] and clear["ci95"][0] > 0 and clear["p"] <= 0.001
    tie = uar_difference(y, good, also_good, speakers)
    assert tie["ci95"][0] < 0 < tie["ci95"][1] and tie["p"] > 0.05
    one = good.copy()
    one[speakers == 0] = y[speakers == 0]  # better only on speaker 0: +5 points on 1/20 of the clips
    lucky = uar_difference(y, one, good, speakers)
    assert lucky["diff"] > 0 and lucky["ci95"][0] == 0.0  # resamples without speaker 0 show no difference


def _predictions(seeds, right_every: int) -> dict:
    """(clip id, seed) -> (true, speaker, predicted) for 40 clips of 4 speakers, wrong on every ``right_every``-th."""
    return {(f"c{i}", str(s)): (f"l{i % 2}", f"spk{i % 4}", f"l{(i + (i % right_every == 0)) % 2}")
            for s in seeds for i in range(40)}


def test_paired_uar_difference_compares_the_seeds_both_runs_share():
    """A run with seeds 0 and 1 against a seed-0 run on the same clips: compared on seed 0, and says so; runs
    with no seed in common, or other clips, are not compared."""
    from fusionkit.metrics import paired_uar_difference, uar_difference

    two, one = _predictions([0, 1], 3), _predictions([0], 5)
    d = paired_uar_difference(two, one)
    assert d is not None and d["seeds"] == ["0"]
    shared = sorted(one)
    expected = uar_difference([one[k][0] for k in shared], [two[k][2] for k in shared],
                              [one[k][2] for k in shared], [one[k][1] for k in shared])
    assert d["diff"] == pytest.approx(expected["diff"]) and d["ci95"] == pytest.approx(expected["ci95"])
    assert paired_uar_difference(_predictions([10, 2], 3), _predictions([2, 10, 3], 5))["seeds"] == ["2", "10"]
    assert paired_uar_difference(two, _predictions([7], 5)) is None  # no seed in common
    other_clips = {(f"x{c}", s): v for (c, s), v in one.items()}
    assert paired_uar_difference(two, other_clips) is None


def test_uar_interval_resamples_whole_speakers():
    """Two speakers, one always right and one always wrong: resampling speakers gives every UAR from 0 to 1
    (resampling clips would stay near 0.5); perfect predictions give [1, 1]; one speaker has nothing to resample."""
    from fusionkit.metrics import uar_interval

    y = np.tile([0, 1], 50)
    speakers = np.repeat(["a", "b"], 50)
    half = np.where(speakers == "a", y, 1 - y)
    split = uar_interval(y, half, speakers)
    assert split["uar"] == 0.5 and split["ci95"] == [0.0, 1.0] and split["groups"] == 2
    assert uar_interval(y, y, speakers)["ci95"] == [1.0, 1.0]
    assert uar_interval(y, half, np.repeat("a", 100)) is None
