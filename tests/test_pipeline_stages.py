"""The run's stages on their own: predictions.csv from the Predictions arrays, fold tags, pooled metrics,
and the reload check over a cross-corpus run with corpus normalisation."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from core_fixtures import fk_env, small_recipe  # noqa: F401
from protocol_fakes import write_tone

from fusionkit.pipeline.evaluate import pooled_metrics
from fusionkit.pipeline.folds import Predictions, fold_tag


def classification_predictions() -> Predictions:
    return Predictions(task="classification", outputs=["angry", "calm"],
                       clip_ids=np.array(["x1", "x2", "x3"], dtype=object), seeds=np.array([0, 0, 1]),
                       folds=np.array([0, 1, 0]), speakers=np.array(["s1", "s2", "s1"], dtype=object),
                       true=np.array([0, 1, 1]), predicted=np.array([0, 0, 1]),
                       proba=np.array([[0.75, 0.25], [2 / 3, 1 / 3], [0.1, 0.9]], dtype=np.float32))


def test_classification_predictions_csv_format(tmp_path):
    classification_predictions().write_csv(tmp_path / "p.csv")
    assert (tmp_path / "p.csv").read_bytes() == (
        b"clip_id,seed,fold,speaker,true,predicted,p_angry,p_calm\r\n"
        b"x1,0,0,s1,angry,angry,0.750000,0.250000\r\n"
        b"x2,0,1,s2,calm,angry,0.666667,0.333333\r\n"
        b"x3,1,0,s1,calm,calm,0.100000,0.900000\r\n")


def test_regression_predictions_csv_format(tmp_path):
    p = Predictions(task="regression", outputs=["arousal", "valence"], clip_ids=np.array(["a", "b"], dtype=object),
                    seeds=np.array([3, 3]), folds=np.array([0, 2]), speakers=np.array(["s1", "s2"], dtype=object),
                    true=np.array([[4.5, 2.0], [1.25, 3.0]]), predicted=np.array([[4.1234567, 2.5], [1.0, -0.5]]))
    p.write_csv(tmp_path / "p.csv")
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["clip_id", "seed", "fold", "speaker", "true_arousal", "true_valence", "pred_arousal",
                     "pred_valence"],
                    ["a", "3", "0", "s1", "4.500000", "2.000000", "4.123457", "2.500000"],
                    ["b", "3", "2", "s2", "1.250000", "3.000000", "1.000000", "-0.500000"]]


def test_pooled_metrics_come_from_the_arrays():
    pooled = pooled_metrics(classification_predictions())
    assert pooled["wa"] == pytest.approx(2 / 3, abs=1e-9)
    assert pooled["uar"] == pytest.approx((1.0 + 0.5) / 2, abs=1e-9)  # angry 1/1, calm 1/2
    assert pooled["confusion"] == [[1, 0], [1, 1]]


def test_fold_tag_names_the_seed_only_with_several_seeds():
    assert fold_tag(0, 3, [0]) == "fold3"
    assert fold_tag(1, 3, [0, 1]) == "seed1-fold3"


def _corpus(folder, speakers, labels, freqs, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for s in speakers:
        for lab in labels:
            for k in range(3):
                name = f"{s}_{lab}_{k}.wav"
                write_tone(folder / name, freqs[lab] * rng.uniform(0.95, 1.05), seconds=0.3, noise=0.02,
                           seed=int(rng.integers(1 << 30)))
                rows.append({"path": name, "label": lab, "speaker": s})
    with open(folder / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder / "manifest.csv"


def test_reload_matches_a_cross_corpus_run_with_corpus_normalisation(tmp_path):
    from fusionkit.pipeline.reload import saved_run_difference
    from fusionkit.pipeline.run import run
    from fusionkit.recipe import Recipe

    freqs = {"ang": 520.0, "neu": 200.0}
    a = _corpus(tmp_path / "a", ["a1", "a2"], ["ang", "neu"], freqs, 0)
    b = _corpus(tmp_path / "b", ["b1", "b2"], ["ang", "neu"], freqs, 1)
    recipe = Recipe.model_validate({
        "name": "t", "data": {"dataset": "manifest", "root": str(a)},
        "test_data": {"dataset": "manifest", "root": str(b)}, "normalize": "corpus",
        "encoders": [{"plugin": "lld", "options": {"descriptors": ["mfcc", "rms"], "functionals": ["mean"],
                                                   "trim_db": None, "workers": 1}}],
        "fusion": {"plugin": "xgboost", "options": {"n_estimators": 10, "max_depth": 2, "n_jobs": 1}},
        "cache": {"dir": str(tmp_path / "cache")}})
    run(recipe, tmp_path / "run")
    assert (tmp_path / "run" / "models" / "fold0").is_dir()
    # predictions.csv holds 6 decimals: the reloaded heads on the normalised features agree to rounding
    assert saved_run_difference(tmp_path / "run") <= 5e-7 + 1e-9


def _seeded(predictions: Predictions, copies: dict[int, float]) -> Predictions:
    """``predictions`` (one seed) repeated once per seed in ``copies``, probabilities shifted by its value."""
    n = len(predictions.clip_ids)
    proba = np.concatenate([np.asarray(predictions.proba, dtype=float) + shift for shift in copies.values()])
    k = len(copies)
    return Predictions(task="classification", outputs=predictions.outputs, clip_ids=np.tile(predictions.clip_ids, k),
                       seeds=np.repeat(list(copies), n), folds=np.tile(predictions.folds, k),
                       speakers=np.tile(predictions.speakers, k), true=np.tile(predictions.true, k),
                       predicted=np.tile(predictions.predicted, k), proba=proba)


def test_seeds_with_the_same_predictions_are_found():
    from fusionkit.pipeline.evaluate import distinct_rows, identical_seeds

    one = classification_predictions()
    one.seeds = np.zeros(3, dtype=int)
    assert identical_seeds(_seeded(one, {0: 0.0, 1: 1e-12, 2: 1e-6, 3: 0.0})) == [[0, 1, 3]]
    assert identical_seeds(_seeded(one, {0: 0.0, 1: 1e-6})) == []
    assert identical_seeds(one) == []
    reordered = _seeded(one, {4: 0.0, 5: 0.0})
    order = np.array([0, 1, 2, 5, 4, 3])  # seed 5's rows in another order: still the same predictions
    for name in ("clip_ids", "seeds", "folds", "speakers", "true", "predicted", "proba"):
        setattr(reordered, name, getattr(reordered, name)[order] if name != "seeds" else reordered.seeds)
    assert identical_seeds(reordered) == [[4, 5]]
    other_label = _seeded(one, {0: 0.0, 1: 0.0})
    other_label.predicted[-1] = 0
    assert identical_seeds(other_label) == []
    rows = [{"seed": s, "fold": f} for s in (0, 1, 2, 3) for f in (0, 1)]
    assert distinct_rows(rows, [[0, 1, 3]]) == [{"seed": 0, "fold": 0}, {"seed": 0, "fold": 1},
                                                {"seed": 2, "fold": 0}, {"seed": 2, "fold": 1}]


def test_a_repeated_seed_does_not_narrow_the_interval(tmp_path, fk_env, caplog):
    """linear (deterministic) on an unshuffled speaker-kfold split: seeds 0 and 1 give the same predictions, so the
    headline summary, the grid's fold count and the reports count them once, with one warning."""
    import json
    import logging

    from fusionkit.bench import run_cell
    from fusionkit.cli.tables import results_table
    from fusionkit.pipeline.run import run
    from fusionkit.recipe import Recipe

    raw = small_recipe(fusion={"plugin": "linear"}, seeds=[0, 1])
    level = logging.getLogger("fusionkit").level
    try:
        with caplog.at_level("WARNING", logger="fusionkit"):
            row = run_cell(raw, str(tmp_path / "two"))
    finally:
        logging.getLogger("fusionkit").setLevel(level)
    assert row["status"] == "done", row["error"]
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    one = run(Recipe.model_validate(small_recipe(fusion={"plugin": "linear"}, seeds=[0])), tmp_path / "one")
    told = [r.getMessage() for r in caplog.records if "same predictions" in r.getMessage()]
    assert told == ["seeds 0 and 1 gave the same predictions: the split and head do not depend on the seed here; "
                    "the interval counts each distinct seed once"]
    assert two["seeds"]["identical"] == [[0, 1]]
    assert two["summary"] == one["summary"] and two["summary"]["uar"]["n"] == 2 == row["folds"]
    assert (two["uar"], two["uar_std"]) == (one["uar"], one["uar_std"])
    assert len(two["folds"]) == 4 and set(two["seeds"]["per_seed"]) == {"0", "1"}  # every seed's rows are kept
    assert two["seeds"]["over_seeds"]["uar"]["n"] == 1
    with open(tmp_path / "two" / "predictions.csv") as fh:
        assert {r["seed"] for r in csv.DictReader(fh)} == {"0", "1"}
    assert "seeds 0 and 1 gave the same predictions: counted once" in results_table(two)
    assert "(folds x distinct seeds: seeds 0 and 1 gave the same predictions, counted once)" in (
        tmp_path / "two" / "report.md").read_text()
