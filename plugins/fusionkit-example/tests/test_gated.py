"""Tests of the ``example-gated`` torch fusion head: found by name, trained by fusionkit's loop,
saved and reloaded, run from a recipe, exported in a bundle and used through ``fusionkit.load``."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest

from fusionkit_example.gated import GatedHead, GatedOptions

pytest.importorskip("torch")

CLASSES = ["w", "x", "y", "z"]
FAST = {"width": 16, "epochs": 80, "patience": 15, "refit": False}
RELOAD_ATOL = 1e-7  # a reload reproduces probabilities up to the last bits BLAS may change


def two_bit_task(n_speakers: int = 10, per_speaker: int = 24, seed: int = 0):
    """Encoder 'a' carries the label's first bit, 'b' its second: only both tell the 4 classes apart."""
    rng = np.random.default_rng(seed)
    n = n_speakers * per_speaker
    y = np.tile(np.arange(4), n // 4)
    rng.shuffle(y)
    groups = np.repeat([f"spk{i:02d}" for i in range(n_speakers)], per_speaker)
    a = 1.5 * (y // 2)[:, None] * rng.normal(1.0, 0.2, (1, 6)) + rng.normal(0, 0.6, (n, 6))
    b = 1.5 * (y % 2)[:, None] * rng.normal(1.0, 0.2, (1, 8)) + rng.normal(0, 0.6, (n, 8))
    X = {"a": a.astype(np.float32), "b": b.astype(np.float32)}
    test = np.isin(groups, sorted(set(groups))[-3:])  # three speakers never seen in training
    train_X, test_X = ({k: v[m] for k, v in X.items()} for m in (~test, test))
    return train_X, y[~test], groups[~test], test_X, y[test]


def uar(y: np.ndarray, proba: np.ndarray) -> float:
    pred = proba.argmax(axis=1)
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def test_registered_through_the_entry_point_without_importing_torch():
    (ep,) = [e for e in metadata.entry_points(group="fusionkit.fusions") if e.name == "example-gated"]
    assert ep.dist.name == "fusionkit-example" and ep.value == "fusionkit_example.gated"
    from fusionkit.registry import build_registry

    assert build_registry().get("fusion", "example-gated") is GatedHead
    probe = "import sys, fusionkit_example.gated; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", "listing plugins must not import torch"


def test_options_are_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="gate"):
        GatedOptions(gate="tanh")
    with pytest.raises(ValidationError, match="width"):
        GatedOptions(width=2)


@pytest.mark.parametrize("gate", ["sigmoid", "softmax"])
def test_learns_needs_both_encoders_and_reloads(gate, tmp_path):
    Xtr, ytr, gtr, Xte, yte = two_bit_task()
    head = GatedHead(GatedOptions(**FAST, gate=gate), seed=0)
    head.fit(Xtr, ytr, CLASSES, gtr)
    p = head.predict_proba(Xte)
    assert p.shape == (len(yte), 4)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    fused = uar(yte, p)
    assert fused > 0.8, f"UAR {fused:.2f} (chance 0.25)"
    alone = GatedHead(GatedOptions(**FAST, gate=gate), seed=0)
    alone.fit({"a": Xtr["a"]}, ytr, CLASSES, gtr)
    assert uar(yte, alone.predict_proba({"a": Xte["a"]})) < fused - 0.2, "one encoder alone should not suffice"

    head.save(tmp_path / "m")
    assert {f.name for f in (tmp_path / "m").iterdir()} == {"head.json", "arrays.safetensors"}
    again = GatedHead.load(tmp_path / "m")
    assert again.options == head.options and again.encoders == ["a", "b"]
    np.testing.assert_allclose(again.predict_proba(Xte), p, rtol=0, atol=RELOAD_ATOL)
    with pytest.raises(ValueError, match="fitted on encoders"):
        again.predict_proba({"a": Xte["a"]})


def test_run_export_and_predict_through_fusionkit_load(tmp_path, monkeypatch):
    import fusionkit
    from fusionkit.bundle import export
    from fusionkit.pipeline.run import run
    from fusionkit.recipe import Recipe
    from fusionkit.registry import registry

    monkeypatch.setenv("FUSIONKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FUSIONKIT_PROGRESS", "0")
    data = {"speakers": 4, "clips_per_class": 3}
    recipe = Recipe.model_validate({
        "name": "gated",
        "data": {"dataset": "synthetic", "options": data},
        "encoders": [
            {"plugin": "lld", "name": "cepstral", "options": {"descriptors": ["mfcc"], "workers": 1}},
            {"plugin": "lld", "name": "prosodic", "options": {"descriptors": ["rms", "zcr", "centroid"], "workers": 1}},
        ],
        "fusion": {"plugin": "example-gated", "options": {"width": 16, "epochs": 30, "patience": 5}},
        "split": {"kind": "speaker-kfold", "folds": 2},
        "seed": 0,
    })
    metrics = run(recipe, tmp_path / "run")
    assert metrics["n_clips"] == 48 and len(metrics["folds"]) == 2
    saved = json.loads((tmp_path / "run" / "models" / "fold0" / "head.json").read_text())
    assert saved["plugin"] == "example-gated" and saved["encoders"] == ["cepstral", "prosodic"]

    bundle = export(tmp_path / "run", tmp_path / "bundle", fold="0")
    model = fusionkit.load(bundle)
    assert model.classes == metrics["classes"]
    synthetic = registry().get("dataset", "synthetic")
    paths = {c.id: c.path for c in synthetic(None, synthetic.Options(**data)).clips()}
    with open(tmp_path / "run" / "predictions.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] == "0"]
    assert rows
    for row in rows:
        out = model.predict(paths[row["clip_id"]])
        for c in model.classes:
            assert out["probabilities"][c] == pytest.approx(float(row[f"p_{c}"]), abs=2e-6)
