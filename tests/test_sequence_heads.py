"""``weighted-layers`` and ``attentive-pooling``: heads over frame sequences (tiny synthetic sequences,
and a tiny random Whisper through ``fusionkit run``, ``export``/``predict`` and ``bench``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from fusion_fixtures import CLASSES, RELOAD_ATOL  # noqa: E402

from fusionkit.registry import registry  # noqa: E402

FAST = {"width": 16, "epochs": 40, "patience": 8, "refit": False, "max_frames": 16, "batch_size": 16, "lr": 3e-3}
L, D = 3, 6


def sequences(n_speakers: int = 8, per_speaker: int = 16, seed: int = 0):
    """Frames (T_i, L*D) of L concatenated layers; only layer 1 carries the class (in a burst of frames)."""
    rng = np.random.default_rng(seed)
    n = n_speakers * per_speaker
    y = np.tile(np.arange(len(CLASSES)), n // len(CLASSES))
    rng.shuffle(y)
    groups = np.repeat([f"spk{i}" for i in range(n_speakers)], per_speaker)
    codes = rng.normal(0, 1.5, (len(CLASSES), D))
    seqs = []
    for label in y:
        t = int(rng.integers(12, 30))
        frames = rng.normal(0, 1, (t, L, D))
        start = int(rng.integers(0, t - 6))
        frames[start : start + 6, 1] += codes[label]
        seqs.append(frames.reshape(t, L * D).astype(np.float16))
    pooled = rng.normal(0, 1, (n, 4)).astype(np.float32)  # an uninformative pooled encoder
    return {"frames": seqs, "other": pooled}, y, groups


def halves(X, y, groups):
    test = np.isin(groups, sorted(set(groups))[-2:])
    take = lambda m: {k: ([s for s, t in zip(v, m) if t] if isinstance(v, list) else v[m]) for k, v in X.items()}
    return take(~test), y[~test], groups[~test], take(test), y[test]


def make(name: str, seed: int = 0, **extra):
    cls = registry().get("fusion", name)
    return cls(cls.Options.model_validate({**FAST, **extra}), seed=seed)


@pytest.fixture(scope="module")
def data():
    return halves(*sequences())


def accuracy(head, X, y) -> float:
    p = head.predict_proba(X)
    assert p.shape == (len(y), len(CLASSES))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    return float((p.argmax(axis=1) == y).mean())


@pytest.mark.parametrize("name, extra", [
    ("weighted-layers", {"n_layers": L}),
    ("weighted-layers", {"n_layers": {"frames": L}, "pooling": "attentive"}),
    ("attentive-pooling", {"n_layers": L}),
    ("attentive-pooling", {}),
])
def test_learns_reloads_and_records_layer_weights(name, extra, data, tmp_path):
    Xtr, ytr, gtr, Xte, yte = data
    X1 = {"frames": Xtr["frames"]}
    head = make(name, **extra)
    head.fit(X1, ytr, CLASSES, gtr)
    assert accuracy(head, {"frames": Xte["frames"]}, yte) >= 0.8
    weights = head.history["layer_weights"]
    if extra:
        assert len(weights) == 1 and len(weights[0]) == L and abs(sum(weights[0]) - 1) < 1e-3
        assert int(np.argmax(weights[0])) == 1  # the informative layer
    else:
        assert weights == [None]
    head.save(tmp_path)
    saved = json.loads((tmp_path / "head.json").read_text())
    assert saved["history"]["layer_weights"] == weights
    again = registry().get("fusion", name).load(tmp_path)
    np.testing.assert_allclose(again.predict_proba({"frames": Xte["frames"]}),
                               head.predict_proba({"frames": Xte["frames"]}), atol=RELOAD_ATOL)


@pytest.mark.parametrize("name", ["weighted-layers", "attentive-pooling"])
def test_several_encoders_sequence_and_pooled(name, data, tmp_path):
    Xtr, ytr, gtr, Xte, yte = data
    head = make(name, n_layers={"frames": L})
    head.fit(Xtr, ytr, CLASSES, gtr)
    assert accuracy(head, Xte, yte) >= 0.8
    assert head.history["layer_weights"][1] is None  # 'other' is pooled: nothing to weight
    assert head.history["val_size"] > 0 and set(gtr[:1]) <= set(gtr)
    head.save(tmp_path)
    again = registry().get("fusion", name).load(tmp_path)
    np.testing.assert_allclose(again.predict_proba(Xte), head.predict_proba(Xte), atol=RELOAD_ATOL)


def test_early_stopping_uses_training_speakers_only(data, monkeypatch):
    from fusionkit.sdk import training

    Xtr, ytr, gtr, _, _ = data
    seen = {}
    real = training.validation_split

    def spy(y, groups, fraction, seed):
        seen["groups"] = set(groups)
        return real(y, groups, fraction, seed)

    monkeypatch.setattr(training, "validation_split", spy)
    make("weighted-layers", n_layers=L, epochs=2).fit({"frames": Xtr["frames"]}, ytr, CLASSES, gtr)
    assert seen["groups"] == set(gtr)


@pytest.mark.parametrize("extra, message", [
    ({}, "option n_layers does not give encoder 'frames' a layer count"),
    ({"n_layers": 4}, "encoder 'frames' has 18-wide frames, which do not split into 4 layers"),
    ({"n_layers": {"frames": 3, "fram": 3}}, "option n_layers names 'fram', not among the encoders"),
])
def test_bad_layer_count_is_one_clear_line(extra, message, data):
    Xtr, ytr, gtr, _, _ = data
    with pytest.raises(ValueError, match=message) as err:
        make("weighted-layers", epochs=1, **extra).fit({"frames": Xtr["frames"]}, ytr, CLASSES, gtr)
    assert "\n" not in str(err.value)


def test_options_are_validated():
    from pydantic import ValidationError

    cls = registry().get("fusion", "weighted-layers")
    for bad in ({"n_layers": 0}, {"n_layers": {"a": 0}}, {"pooling": "max"}):
        with pytest.raises(ValidationError):
            cls.Options.model_validate(bad)


RECIPE = """
name: tiny-frames
data: {{dataset: synthetic, options: {{speakers: 4, clips_per_class: 2}}}}
encoders: [{{plugin: whisper, name: wh, options: {{model: "{model}", layers: all, pooling: none, threads: 1}}}}]
fusion: {{plugin: weighted-layers, options: {options}}}
split: {{kind: speaker-kfold, folds: 2}}
"""
HEAD_OPTIONS = '{n_layers: 4, width: 8, epochs: 4, patience: 2, max_frames: 8, batch_size: 8}'
GRID = """
name: tiny-frames-grid
base: base.yaml
axes:
  fusion:
    - {name: wl, plugin: weighted-layers, options: {n_layers: 4, width: 8, epochs: 3, max_frames: 8}}
    - {name: ap, plugin: attentive-pooling, options: {n_layers: 4, width: 8, epochs: 3, max_frames: 8}}
"""


@pytest.fixture(scope="module")
def whisper_run(tmp_path_factory):
    """A tiny random Whisper (3 blocks: 4 layers of 32) through ``fusionkit run`` and ``export``."""
    pytest.importorskip("transformers")
    from core_fixtures import run_and_export
    from whisper_fixtures import tiny_whisper

    root = tmp_path_factory.mktemp("frames")
    model = tiny_whisper(root / "tiny-whisper")
    return run_and_export(root, RECIPE.format(model=model, options=HEAD_OPTIONS))


def test_run_records_layer_weights_and_the_bundle_predicts_the_same(whisper_run):
    import csv

    import fusionkit
    from fusionkit.pipeline.reload import saved_run_difference

    saved = json.loads((whisper_run / "run" / "models" / "fold0" / "head.json").read_text())
    weights = saved["history"]["layer_weights"]
    assert len(weights) == 1 and len(weights[0]) == 4 and abs(sum(weights[0]) - 1) < 1e-3
    assert saved_run_difference(whisper_run / "run") <= 5e-7
    rows = [r for r in csv.DictReader(open(whisper_run / "run" / "predictions.csv")) if r["fold"] == "0"]
    paths = _clip_paths(whisper_run / "run")
    model = fusionkit.load(whisper_run / "fold0")
    for row in rows[:3]:
        out = model.predict(paths[row["clip_id"]])
        for c in model.classes:
            assert out["probabilities"][c] == pytest.approx(float(row[f"p_{c}"]), abs=2e-6)


def test_a_fresh_process_reloads_the_same_probabilities(whisper_run):
    from core_fixtures import fresh_process_difference

    assert fresh_process_difference(whisper_run / "run") <= 5e-7


def test_bench_runs_both_heads(whisper_run, tmp_path):
    from core_fixtures import bench_rows

    rows = bench_rows(tmp_path, (whisper_run / "recipe.yaml").read_text(), GRID)
    assert len(rows) == 2 and all(row["status"] == "done" for row in rows), rows
    assert all(row["computed"] == "0" for row in rows)  # the frames cached by the run are reused


def _clip_paths(run: Path) -> dict[str, Path]:
    import yaml

    from fusionkit.pipeline.data import load_dataset
    from fusionkit.recipe import Recipe

    recipe = Recipe.model_validate(yaml.safe_load((run / "recipe.yaml").read_text()))
    return {c.id: c.path for c in load_dataset(recipe).clips()}


def test_each_epoch_is_reported_and_slow_ones_at_info(data, monkeypatch, caplog):
    """One line per epoch (train loss, validation UAR, best so far, seconds): DEBUG for quick epochs, INFO once
    an epoch takes longer than training.SLOW_EPOCH_S (what long fine-tuning runs need to show progress)."""
    import logging

    from fusionkit.sdk import training

    Xtr, ytr, gtr, _, _ = data
    fit = lambda: make("weighted-layers", n_layers=L, epochs=3, patience=3, refit=True).fit(
        {"frames": Xtr["frames"]}, ytr, CLASSES, gtr)
    with caplog.at_level(logging.DEBUG, logger=training.__name__):
        fit()
    lines = [r for r in caplog.records if r.name == training.__name__]
    epochs = [r.getMessage() for r in lines if "validation UAR" in r.getMessage()]
    assert [m.split(":")[0] for m in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "(best " in epochs[-1] and "train loss" in epochs[0]
    assert any("(refit)" in r.getMessage() for r in lines)
    assert {r.levelno for r in lines} == {logging.DEBUG}
    caplog.clear()
    monkeypatch.setattr(training, "SLOW_EPOCH_S", 0.0)
    with caplog.at_level(logging.INFO, logger=training.__name__):
        fit()
    assert sum("validation UAR" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO) == 3


def test_select_on_weighted_f1_picks_epochs_by_that_score(data, caplog):
    """``select_on: weighted_f1`` (MELD's headline figure) scores each epoch by weighted F1, not UAR, and says so in
    the log and in the protocol's selection record."""
    import logging

    import numpy as np

    from fusionkit.sdk import training

    y = np.array([0] * 8 + [1, 2])
    majority = np.tile([1.0, 0.0, 0.0], (10, 1))
    assert training.validation_score("uar", y, majority) == pytest.approx(1 / 3)
    assert training.validation_score("weighted_f1", y, majority) == pytest.approx(0.8 * 2 * 0.8 / 1.8)
    Xtr, ytr, gtr, _, _ = data
    head = make("weighted-layers", n_layers=L, epochs=3, patience=3, refit=False, select_on="weighted_f1")
    with caplog.at_level(logging.DEBUG, logger=training.__name__):
        head.fit({"frames": Xtr["frames"]}, ytr, CLASSES, gtr)
    epochs = [r.getMessage() for r in caplog.records if r.name == training.__name__]
    assert len([m for m in epochs if "validation weighted F1" in m]) == 3
    assert not any("validation UAR" in m for m in epochs)
    chosen = head.selection()
    assert "best validation weighted F1" in chosen["how"] and 0 <= chosen["val_weighted_f1"] <= 1
    assert "val_uar" not in chosen


def test_group_by_length_covers_every_clip_once_with_less_padding(data):
    from types import SimpleNamespace

    import torch

    from fusionkit.sdk import training

    Xtr, ytr, gtr, _, _ = data
    head = make("weighted-layers", n_layers=L)
    head.encoders = ["frames"]
    head._fit_scalers({"frames": Xtr["frames"]})
    tensors = training.Tensors(head.blocks({"frames": Xtr["frames"]}))
    idx = torch.arange(tensors.n)
    lengths = tensors.lengths[0]
    padded = lambda batches: sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)
    plain = training._batches(idx, tensors, SimpleNamespace(batch_size=4), torch.Generator().manual_seed(0))
    grouped = training._batches(idx, tensors, SimpleNamespace(batch_size=4, group_by_length=True),
                                torch.Generator().manual_seed(0))
    for batches in (plain, grouped):
        assert sorted(torch.cat(batches).tolist()) == list(range(tensors.n))
        assert all(len(b) <= 4 for b in batches)
    assert padded(grouped) < padded(plain) / 2
