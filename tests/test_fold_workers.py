"""Folds fitted side by side in separate processes give the figures and saved heads of one by one."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from test_pipeline_stages import _corpus

from fusionkit.pipeline.folds import fold_workers
from fusionkit.recipe import Recipe


def _recipe(root, cache, fusion: dict, workers: int | str = "auto") -> Recipe:
    return Recipe.model_validate({
        "name": "t", "data": {"dataset": "manifest", "root": str(root)},
        "split": {"kind": "speaker-kfold", "folds": 3},
        "encoders": [{"plugin": "lld", "options": {"descriptors": ["mfcc", "rms"], "functionals": ["mean", "std"],
                                                   "trim_db": None, "workers": 1}}],
        "fusion": fusion, "engine": {"fold_workers": workers}, "cache": {"dir": str(cache)}})


def test_folds_side_by_side_match_one_by_one(tmp_path):
    from fusionkit.pipeline.reload import saved_run_difference
    from fusionkit.pipeline.run import run

    root = _corpus(tmp_path / "c", ["s1", "s2", "s3"], ["ang", "neu", "sad"],
                   {"ang": 520.0, "neu": 200.0, "sad": 300.0}, 0).parent
    fusion = {"plugin": "xgboost", "options": {"n_estimators": 30, "max_depth": 2}}
    one = run(_recipe(root, tmp_path / "cache", fusion, 1), tmp_path / "one")
    two = run(_recipe(root, tmp_path / "cache", fusion, 2), tmp_path / "two")
    assert one["timing"]["fold_workers"] == 1 and two["timing"]["fold_workers"] == 2
    assert (tmp_path / "one" / "predictions.csv").read_text() == (tmp_path / "two" / "predictions.csv").read_text()
    assert [f["uar"] for f in one["folds"]] == [f["uar"] for f in two["folds"]]
    assert [f.get("selection") for f in one["folds"]] == [f.get("selection") for f in two["folds"]]
    for k in range(3):  # the heads the workers saved are the ones the parent would have saved
        a = json.loads((tmp_path / "one" / "models" / f"fold{k}" / "head.json").read_text())
        b = json.loads((tmp_path / "two" / "models" / f"fold{k}" / "head.json").read_text())
        assert a == b
    assert saved_run_difference(tmp_path / "two") <= 5e-7 + 1e-9


NEEDS_CATBOOST = pytest.mark.skipif(importlib.util.find_spec("catboost") is None, reason="catboost not installed")


@pytest.mark.parametrize(("fusion", "env", "sequences", "expected"), [
    ({"plugin": "xgboost"}, "2", None, 1),  # 150 clips: fits of seconds, workers would start for longer
    ({"plugin": "xgboost"}, "2", False, 2),  # narrow: one thread a fit, two CPUs
    ({"plugin": "xgboost"}, "8", False, 3),  # never more than the folds
    ({"plugin": "xgboost"}, "1", False, 1),  # a grid cell's share of one CPU
    ({"plugin": "xgboost", "options": {"n_jobs": 2}}, "2", False, 1),
    ({"plugin": "xgboost", "options": {"preset": "legacy"}}, "4", False, 1),  # every CPU a fit
    pytest.param({"plugin": "catboost"}, "2", False, 2, marks=NEEDS_CATBOOST),  # shallow: one thread a fit
    pytest.param({"plugin": "catboost", "options": {"preset": "legacy"}}, "2", False, 1, marks=NEEDS_CATBOOST),
    ({"plugin": "concat-ffn"}, "2", False, 2),  # the torch heads train on one thread by default
    ({"plugin": "concat-ffn", "options": {"threads": None}}, "2", False, 1),  # torch's own thread count
    ({"plugin": "linear"}, "2", False, 2),  # one BLAS thread a fit by default, and 1,440 x 8,000 values
    ({"plugin": "linear"}, "2", "narrow", 1),  # 1,440 x 512 values: fits of a second, one by one is faster
    ({"plugin": "linear", "options": {"threads": None}}, "4", False, 1),  # takes what it is given
    ({"plugin": "late-average"}, "2", False, 2),  # its base heads' threads: linear's one
    ({"plugin": "late-average"}, "2", "narrow", 2),  # inner folds: several fits per fold, no quick size known
    ({"plugin": "stacking", "options": {"base_options": {"threads": None}}}, "2", False, 1),
    ({"plugin": "xgboost"}, "4", True, 1),  # frame sequences: one copy of the features only
])
def test_auto_fold_workers(tmp_path, monkeypatch, fusion, env, sequences, expected):
    from types import SimpleNamespace

    monkeypatch.setenv("FUSIONKIT_THREADS", env)
    clips = [None] * (150 if sequences is None else 1440)
    width = 512 if sequences == "narrow" else 8000
    prep = SimpleNamespace(sequences={"lld": sequences is True}, clips=clips,
                           features={"lld": {"clip-0": np.zeros(width, dtype=np.float32)}})
    assert fold_workers(_recipe(tmp_path, tmp_path, fusion), prep, 3) == expected


def test_fold_workers_set_in_the_recipe_win_and_are_checked(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from pydantic import ValidationError

    monkeypatch.setenv("FUSIONKIT_THREADS", "1")
    prep = SimpleNamespace(sequences={"lld": np.False_}, clips=[None] * 30)
    assert fold_workers(_recipe(tmp_path, tmp_path, {"plugin": "linear"}, 2), prep, 3) == 2
    assert fold_workers(_recipe(tmp_path, tmp_path, {"plugin": "linear"}, 5), prep, 3) == 3
    with pytest.raises(ValidationError, match="fold_workers"):
        _recipe(tmp_path, tmp_path, {"plugin": "linear"}, 0)


def _die(job, sources=None, threads=None):
    import os

    os._exit(3)  # a worker killed mid-fit (e.g. out of memory)


def test_a_fold_worker_that_dies_is_one_clear_error(tmp_path, monkeypatch):
    from fusionkit.pipeline import folds
    from fusionkit.pipeline.run import run

    root = _corpus(tmp_path / "c", ["s1", "s2", "s3"], ["ang", "neu"], {"ang": 520.0, "neu": 200.0}, 1).parent
    monkeypatch.setattr(folds, "fit_one", _die)
    with pytest.raises(folds.FoldWorkerError, match=r"fold worker process ended unexpectedly .*fold_workers=1"):
        run(_recipe(root, tmp_path / "cache", {"plugin": "xgboost", "options": {"n_estimators": 5}}, 2),
            tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()
