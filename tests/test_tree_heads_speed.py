"""The tree heads' presets: ``legacy`` gives earlier releases' predictions, ``fast`` and ``narrow`` stop early on
speakers, XGBoost's ``narrow`` (its default) samples fewer features and bins."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

xgb = pytest.importorskip("xgboost")
catboost = pytest.importorskip("catboost")

from fusionkit.sdk.heads import validation_split  # noqa: E402
from fusionkit_plugins import catboost_head, xgboost_head  # noqa: E402
from fusionkit_plugins.catboost_head import CatBoostHead, CatBoostOptions  # noqa: E402
from fusionkit_plugins.xgboost_head import XGBoostHead, XGBoostOptions  # noqa: E402

CLASSES = ["angry", "calm", "happy"]


@pytest.fixture(scope="module")
def data():
    """10 speakers x 3 classes x 6 clips, 24 features with a class signal and a speaker offset; 2 test speakers."""
    rng = np.random.default_rng(0)
    n_spk, per = 10, 6
    y = np.tile(np.repeat(np.arange(3), per), n_spk)
    speakers = np.repeat([f"s{i}" for i in range(n_spk)], 3 * per)
    offset = rng.normal(0, 0.5, (n_spk, 24))[np.repeat(np.arange(n_spk), 3 * per)]
    X = rng.normal(0, 1, (len(y), 24)) + offset
    X[:, :4] += y[:, None] * 0.8
    train = ~np.isin(speakers, ["s8", "s9"])
    return {"a": X[:, :16].astype(np.float32), "b": X[:, 16:].astype(np.float32)}, y, speakers, train


def split(X, mask):
    return {k: v[mask] for k, v in X.items()}


def earlier_xgboost(X, y, seed, **o):
    """The model earlier releases fitted (their ``_model`` and ``_fit``, defaults and all)."""
    M = np.concatenate([X["a"], X["b"]], axis=1)
    counts = np.bincount(y)
    model = xgb.XGBClassifier(n_estimators=o["n_estimators"], max_depth=4, learning_rate=0.05, subsample=0.8,
                              colsample_bytree=0.5, min_child_weight=1.0, reg_lambda=1.0, n_jobs=1,
                              random_state=seed, tree_method="hist")
    return model.fit(M, y, sample_weight=(len(y) / (len(counts) * counts))[y])


def test_xgboost_legacy_gives_earlier_predictions(data):
    X, y, speakers, train = data
    head = XGBoostHead(XGBoostOptions(preset="legacy", n_estimators=40, n_jobs=1), seed=3)
    head.fit(split(X, train), y[train], CLASSES, speakers[train])
    old = earlier_xgboost(split(X, train), y[train], 3, n_estimators=40)
    M = np.concatenate([X["a"], X["b"]], axis=1)[~train]
    np.testing.assert_allclose(head.predict_proba(split(X, ~train)), old.predict_proba(M), rtol=0, atol=1e-7)
    assert head.model.get_params()["max_bin"] is None and head.best_iteration == 40


def test_xgboost_fast_defaults(data):
    X, y, speakers, train = data
    head = XGBoostHead(XGBoostOptions(preset="fast", n_estimators=300, learning_rate=0.3), seed=0)
    head.fit(split(X, train), y[train], CLASSES, speakers[train])
    params = head.model.get_params()
    assert (params["max_bin"], params["n_jobs"], params["colsample_bytree"]) == (64, 1, 0.5)
    assert 1 <= head.best_iteration < 300  # stopped early, refitted for the best number of rounds
    assert head.model.get_booster().num_boosted_rounds() == head.best_iteration
    assert XGBoostHead(XGBoostOptions(max_bin=16, n_jobs=2), 0)._model().get_params()["max_bin"] == 16
    with pytest.raises(ValidationError):
        XGBoostOptions(preset="turbo")


@pytest.mark.parametrize("head_module,make", [
    (xgboost_head, lambda: XGBoostHead(XGBoostOptions(n_estimators=60), seed=1)),
    (catboost_head, lambda: CatBoostHead(CatBoostOptions(iterations=60), seed=1)),
])
def test_early_stopping_holds_out_whole_training_speakers(data, monkeypatch, head_module, make):
    X, y, speakers, train = data
    seen = []

    def spy(labels, groups, fraction, seed):
        seen.append(groups)
        tr, va = validation_split(labels, groups, fraction, seed)
        seen.append((tr, va))
        return tr, va

    monkeypatch.setattr(head_module, "validation_split", spy)
    make().fit(split(X, train), y[train], CLASSES, speakers[train])
    groups, (tr, va) = seen
    np.testing.assert_array_equal(groups, speakers[train])
    assert not set(groups[tr]) & set(groups[va])
    assert len(set(groups[va])) == 2 and "s8" not in set(groups)  # 20% of the 8 training speakers, no test one


def test_xgboost_fast_head_round_trips(data, tmp_path):
    X, y, speakers, train = data
    head = XGBoostHead(XGBoostOptions(n_estimators=50), seed=0)
    head.fit(split(X, train), y[train], CLASSES, speakers[train])
    head.save(tmp_path / "h")
    back = XGBoostHead.load(tmp_path / "h")
    assert back.best_iteration == head.best_iteration and back.options.preset == "narrow"
    np.testing.assert_allclose(back.predict_proba(split(X, ~train)), head.predict_proba(split(X, ~train)), atol=1e-7)


def earlier_catboost(M, y, groups, seed, iterations):
    """Earlier releases' CatBoost fit: 64 bins, patience 50, refit on the whole fold for the best iterations."""
    def model(n):
        return catboost.CatBoostClassifier(
            iterations=n, depth=6, learning_rate=0.08, l2_leaf_reg=3.0, rsm=0.1, border_count=64,
            loss_function="MultiClass", auto_class_weights="Balanced", random_seed=seed, thread_count=1,
            verbose=False, allow_writing_files=False)

    tr, va = validation_split(y, groups, 0.2, seed)
    first = model(iterations)
    first.fit(M[tr], y[tr], eval_set=(M[va], y[va]), early_stopping_rounds=50, use_best_model=True)
    return model(int(first.get_best_iteration() or 0) + 1).fit(M, y)


def test_catboost_legacy_gives_earlier_predictions_and_fast_skips_the_refit(data):
    X, y, speakers, train = data
    M = np.concatenate([X["a"], X["b"]], axis=1).astype(np.float32)
    legacy = CatBoostHead(CatBoostOptions(preset="legacy", iterations=80, threads=1), seed=2)
    legacy.fit(split(X, train), y[train], CLASSES, speakers[train])
    old = earlier_catboost(M[train], y[train], speakers[train], 2, 80)
    np.testing.assert_allclose(legacy.predict_proba(split(X, ~train)), old.predict_proba(M[~train]), atol=1e-9)
    assert legacy.model.get_all_params()["border_count"] == 64

    fast = CatBoostHead(CatBoostOptions(preset="fast", iterations=80), seed=2)
    fast.fit(split(X, train), y[train], CLASSES, speakers[train])
    assert fast.model.get_all_params()["border_count"] == 32 and fast.model.get_params()["thread_count"] == 1
    assert fast.model.get_all_params()["depth"] == 6
    # no refit: the kept model was trained on the inner training speakers only, shrunk to its best iteration
    assert fast.model.tree_count_ == fast.best_iteration


def test_catboost_shallow_is_the_default_and_explicit_depth_wins(data, tmp_path):
    """CatBoost's ``shallow``: ``fast`` with trees of depth 5; ``depth`` set in the recipe overrides it; the saved
    head reloads with the same probabilities."""
    X, y, speakers, train = data
    head = CatBoostHead(CatBoostOptions(iterations=80), seed=2)
    head.fit(split(X, train), y[train], CLASSES, speakers[train])
    params = head.model.get_all_params()
    assert head.options.preset == "shallow" and params["depth"] == 5 and params["border_count"] == 32
    assert head.model.get_params()["thread_count"] == 1 and head.model.tree_count_ == head.best_iteration
    other = CatBoostHead(CatBoostOptions(iterations=20, depth=4), seed=2)
    other.fit(split(X, train), y[train], CLASSES, speakers[train])
    assert other.model.get_all_params()["depth"] == 4
    head.save(tmp_path / "head")
    back = CatBoostHead.load(tmp_path / "head")
    assert back.options.preset == "shallow" and back.model.get_all_params()["depth"] == 5
    np.testing.assert_allclose(back.predict_proba(split(X, ~train)), head.predict_proba(split(X, ~train)), atol=1e-7)


def test_xgboost_narrow_is_the_default_and_explicit_options_win(data):
    """XGBoost's ``narrow``: trees see 20% of the features with 32 bins, early stopping as ``fast``; an option set
    in the recipe overrides its preset's value."""
    X, y, speakers, train = data
    xg = XGBoostHead(XGBoostOptions(n_estimators=300, learning_rate=0.3), seed=0)
    xg.fit(split(X, train), y[train], CLASSES, speakers[train])
    params = xg.model.get_params()
    assert xg.options.preset == "narrow"
    assert (params["colsample_bytree"], params["max_bin"], params["n_jobs"]) == (0.2, 32, 1)
    assert 1 <= xg.best_iteration < 300
    assert XGBoostHead(XGBoostOptions(colsample_bytree=0.7), 0)._model().get_params()["colsample_bytree"] == 0.7
    assert XGBoostHead(XGBoostOptions(preset="legacy"), 0)._model().get_params()["colsample_bytree"] == 0.5


def _allocator_options(env: dict) -> str:
    """What the allocators of a fresh process report when the catboost head first imports CatBoost."""
    import os
    import subprocess
    import sys

    code = "from fusionkit_plugins.catboost_head import catboost_module; catboost_module()"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")} | env | {"MIMALLOC_VERBOSE": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_catboost_allocator_keeps_its_buffers_and_a_user_setting_wins():
    # CatBoost's own mimalloc reads these when its library loads: the head must set them before that import
    report = _allocator_options({})
    if "option 'purge_delay'" not in report:
        pytest.skip("this CatBoost build does not report its allocator's options")
    assert "option 'purge_delay': 1000" in report and "option 'purge_delay': 10 " not in report + " "
    assert "option 'arena_reserve': 4194304 KiB" in report
    mine = _allocator_options({"MIMALLOC_PURGE_DELAY": "50"})
    assert "option 'purge_delay': 50" in mine and "option 'purge_delay': 1000" not in mine
