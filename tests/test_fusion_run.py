"""``fusionkit run`` with two encoders and a fusion head; the saved fold heads reload in a fresh
process and reproduce predictions.csv."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fusionkit.pipeline.run import run
from fusionkit.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]


def tiny_recipe(head: str, options: dict) -> Recipe:
    return Recipe.model_validate({
        "name": f"tiny-{head}",
        "data": {"dataset": "synthetic", "options": {"speakers": 4, "clips_per_class": 3}},
        "encoders": [
            {"plugin": "lld", "name": "cepstral", "options": {"descriptors": ["mfcc"], "workers": 1}},
            {"plugin": "lld", "name": "prosodic", "options": {"descriptors": ["rms", "zcr", "centroid"], "workers": 1}},
        ],
        "fusion": {"plugin": head, "options": options},
        "split": {"kind": "speaker-kfold", "folds": 2},
        "seed": 0,
    })


def fit_run(head: str, options: dict, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    metrics = run(tiny_recipe(head, options), run_dir)
    assert metrics["n_clips"] == 48 and len(metrics["folds"]) == 2
    assert (run_dir / "models" / "fold0" / "head.json").exists()
    with open(run_dir / "predictions.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 48
    return run_dir


@pytest.mark.parametrize("head, options", [("linear", {}), ("late-average", {"inner_folds": 2})])
def test_saved_run_reloads(head, options, tmp_path):
    from fusionkit.pipeline.reload import saved_run_difference

    assert saved_run_difference(fit_run(head, options, tmp_path)) <= 5e-7


def test_saved_torch_run_reloads_in_a_fresh_process(tmp_path):
    pytest.importorskip("torch")
    run_dir = fit_run("concat-ffn", {"width": 16, "epochs": 20, "patience": 5}, tmp_path)
    code = ("import sys; from fusionkit.pipeline.reload import saved_run_difference; "
            "print(repr(saved_run_difference(sys.argv[1])))")
    env = {**os.environ, "FUSIONKIT_PROGRESS": "0"}
    out = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    diff = float(out.stdout.strip().splitlines()[-1])
    assert diff <= 5e-7, f"reloaded concat-ffn differs from predictions.csv by {diff}"


def test_a_damaged_saved_head_is_detected(tmp_path):
    from fusionkit.pipeline.reload import saved_run_difference
    from fusionkit.sdk.heads import load_arrays, save_arrays

    run_dir = tmp_path / "run"
    run(tiny_recipe("linear", {}), run_dir)
    fold = run_dir / "models" / "fold1"
    arrays = load_arrays(fold)
    arrays["intercept"] = arrays["intercept"] + 0.5 * (arrays["intercept"] != arrays["intercept"].max())
    save_arrays(fold, arrays)
    assert saved_run_difference(run_dir) > 1e-3
