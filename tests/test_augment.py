"""``augment:``: perturbed copies of the training clips, cached like clips, on the training side of folds only."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from core_fixtures import fk_env  # noqa: F401
from test_core_demo import run_demo

from fusionkit.recipe import AugmentSpec, RecipeError, load_recipe

AUGMENT = ["augment.copies=2", "augment.noise_snr_db=[15, 25]", "augment.speed=[0.9, 1.1]"]


def tone(seconds: float = 1.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_perturb_is_fixed_by_seed_copy_and_content_and_honours_the_ranges():
    from fusionkit.pipeline.augment import copy_digest, perturb

    x, digest = tone(), "0123456789abcdef0123456789abcdef"
    spec = AugmentSpec(noise_snr_db=(20.0, 20.0), speed=(1.25, 1.25))
    y = perturb(x, 16000, spec, digest, 1)
    np.testing.assert_array_equal(y, perturb(x, 16000, spec, digest, 1))
    assert not np.array_equal(y, perturb(x, 16000, spec, digest, 2))
    assert not np.array_equal(y, perturb(x, 16000, spec, "f" * 32, 1))
    assert abs(len(y) - len(x) / 1.25) <= 2  # faster: fewer samples at the same rate
    quiet = perturb(x, 16000, AugmentSpec(noise_snr_db=None, speed=(1.25, 1.25)), digest, 1)
    noise = y.astype(np.float64) - quiet
    snr = 10 * np.log10(np.mean(quiet.astype(np.float64) ** 2) / np.mean(noise**2))
    assert abs(snr - 20.0) < 0.5
    keys = {copy_digest(digest, spec, k) for k in (1, 2)} | {copy_digest(digest, AugmentSpec(seed=1), 1)}
    assert len(keys) == 3 and all(len(k) == 32 for k in keys)


@pytest.mark.parametrize("section, message", [
    ("{noise_snr_db: null, speed: null}", "nothing would change the copies"),
    ("{speed: [1.1, 0.9]}", r"speed: \[1.1, 0.9\]: speed factors: not a range \(low 1.1 > high 0.9\)"),
    ("{speed: [0.2, 1.0]}", r"speed: \[0.2, 1.0\]: speed factors: 0.2 is outside the allowed 0.5 to 2.0"),
    ("{speed: [0.0, 0.5]}", r"0.0 is outside the allowed 0.5 to 2.0 \(a factor must be > 0"),
    ("{noise_snr_db: [-400, -300]}", r"noise_snr_db: \[-400.0, -300.0\]: signal-to-noise ratios in dB: -400.0 and "
                                     r"-300.0 are outside the allowed -20.0 to 80.0"),
    ("{noise_snr_db: [10, 90]}", "90.0 is outside the allowed -20.0 to 80.0"),
    ("{copies: 0}", "copies"),
])
def test_bad_augment_sections_are_one_clear_line(section, message, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(f"data: {{dataset: synthetic}}\nencoders: [{{plugin: lld}}]\nfusion: {{plugin: linear}}\n"
                    f"augment: {section}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert len(err.value.lines) == 1 and "augment" in err.value.lines[0]
    assert __import__("re").search(message, err.value.lines[0])


def test_every_bad_augment_range_is_reported_at_once(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data: {dataset: synthetic}\nencoders: [{plugin: lld}]\nfusion: {plugin: linear}\n"
                    "augment: {speed: [1.2, 0.8], noise_snr_db: [30, 10]}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    lines = sorted(line.split(": ", 1)[1] for line in err.value.lines)
    assert lines == ["augment.noise_snr_db: [30.0, 10.0]: signal-to-noise ratios in dB: not a range (low 30.0 > "
                     "high 10.0)",
                     "augment.speed: [1.2, 0.8]: speed factors: not a range (low 1.2 > high 0.8)"]


def test_augment_with_normalisation_is_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data: {dataset: synthetic}\nencoders: [{plugin: lld}]\nfusion: {plugin: linear}\n"
                    "normalize: speaker\naugment: {copies: 1}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert any("augment: not with normalize: speaker" in line for line in err.value.lines)


def test_a_run_trains_on_the_copies_tests_on_clips_only_and_caches_them(tmp_path, fk_env, monkeypatch):
    from fusionkit.pipeline import folds

    sizes = []
    real = folds.training_side

    def spy(prep, idx):
        X, rows = real(prep, idx)
        sizes.append((len(idx), len(rows), {prep.clips[i].speaker for i in idx} == {prep.clips[i].speaker
                                                                                     for i in rows}))
        return X, rows

    monkeypatch.setattr(folds, "training_side", spy)
    first = run_demo(tmp_path / "a", *AUGMENT)
    assert first.exit_code == 0, first.output
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    info = m["protocol"]["augment"]
    assert info["copies"] == 2 and info["clips"] == m["n_clips"] == 48 and info["made"] == 96
    assert info["left_out"] == {} and info["per_encoder"]["lld"] == {"computed": 96, "cached": 0}
    assert all(n_rows == 3 * n_clips and same for n_clips, n_rows, same in sizes) and len(sizes) == 4
    with open(tmp_path / "a" / "predictions.csv", newline="") as fh:
        ids = [row["clip_id"] for row in csv.DictReader(fh)]
    assert len(ids) == 48 and not any("#aug" in i for i in ids)
    again = run_demo(tmp_path / "b", *AUGMENT)
    assert again.exit_code == 0, again.output
    m2 = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert m2["protocol"]["augment"]["per_encoder"]["lld"] == {"computed": 0, "cached": 96}
    assert m2["uar"] == pytest.approx(m["uar"], abs=1e-12)
    plain = run_demo(tmp_path / "c")
    assert plain.exit_code == 0, plain.output
    m3 = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert "augment" not in m3["protocol"] and "augment" not in (tmp_path / "c" / "recipe.yaml").read_text()
    assert [f["uar"] for f in m3["folds"]] != [f["uar"] for f in m["folds"]]  # the copies changed the fits
