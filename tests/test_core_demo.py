"""`fusionkit run demo` end to end (shrunk with --set so it takes seconds), and its outputs."""

from __future__ import annotations

import csv
import json

import yaml
from click.testing import CliRunner
from core_fixtures import fk_env  # noqa: F401

# the demo recipe itself, made smaller: fewer clips, descriptors and trees, one thread each
SHRINK = ["data.options.speakers=4", "data.options.clips_per_class=3", "fusion.options.n_estimators=20",
          "fusion.options.n_jobs=1", "encoders.0.options.workers=1",
          "encoders.0.options.descriptors=[mfcc, rms, zcr, centroid]"]


def run_demo(out, *extra):
    from fusionkit.cli import main

    args = ["run", "demo", "--out", str(out)] + [a for s in (*SHRINK, *extra) for a in ("--set", s)]
    return CliRunner().invoke(main, args)


def test_demo_end_to_end(tmp_path, fk_env):
    out = tmp_path / "demo"
    result = run_demo(out)
    assert result.exit_code == 0, result.output
    assert "uar" in result.stdout and f"outputs in {out}" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("recipe", "uar", "wa", "macro_f1", "weighted_f1", "uar_std", "uar_pooled", "summary", "classes",
                "pooled", "folds", "skipped", "embeddings", "n_clips", "protocol", "timing"):
        assert key in metrics, key
    assert metrics["recipe"] == "demo" and metrics["classes"] == ["angry", "happy", "neutral", "sad"]
    assert metrics["n_clips"] == 4 * 4 * 3 and metrics["skipped"] == []
    assert len(metrics["folds"]) == 4 and metrics["protocol"]["speaker_independent"] is True
    assert 0.0 <= metrics["uar"] <= 1.0 and metrics["uar"] > 0.25  # better than chance on 4 classes
    for fold in metrics["folds"]:  # speaker-independent: no test speaker is trained on
        assert fold["test_size"] > 0 and fold["train_size"] > 0
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["clip_id", "seed", "fold", "speaker", "true", "predicted",
                             "p_angry", "p_happy", "p_neutral", "p_sad"]
    assert len(rows) == metrics["n_clips"] and len({r["clip_id"] for r in rows}) == len(rows)
    for r in rows:
        probs = [float(r[f"p_{c}"]) for c in metrics["classes"]]
        assert abs(sum(probs) - 1) < 1e-3 and r["predicted"] == metrics["classes"][probs.index(max(probs))]
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "demo" in report and "uar" in report.lower()
    # per test speaker, weakest first, each from that speaker's own predictions
    speakers = metrics["per_speaker"]
    assert sorted(r["speaker"] for r in speakers) == sorted({r["speaker"] for r in rows})
    assert [r["uar"] for r in speakers] == sorted(r["uar"] for r in speakers)
    for r in speakers:
        mine = [row for row in rows if row["speaker"] == r["speaker"]]
        assert r["clips"] == len(mine) and r["wa"] == sum(x["true"] == x["predicted"] for x in mine) / len(mine)
    assert "## Per test speaker" in report and "speaker-table" in (out / "report.html").read_text()
    boot = metrics["uar_pooled_ci95"]  # the pooled UAR's interval from resampling the test speakers
    assert boot["groups"] == len(speakers) and boot["ci95"][0] <= metrics["uar_pooled"] <= boot["ci95"][1]
    assert f"[{boot['ci95'][0]:.3f}, {boot['ci95'][1]:.3f}]" in report
    resolved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert resolved["data"]["options"] == {"speakers": 4, "clips_per_class": 3}  # the --set values
    assert resolved["fusion"]["options"]["n_estimators"] == 20
    assert resolved["split"] == {**resolved["split"], "kind": "speaker-stratified", "folds": 4, "shuffle": True}
    # the written recipe reproduces the run: same clips from the cache, same figures
    from fusionkit.cli import main

    again = CliRunner().invoke(main, ["run", str(out / "recipe.yaml"), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    m2 = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert m2["embeddings"]["computed"] == 0 and m2["embeddings"]["cached"] == metrics["n_clips"]
    assert m2["uar"] == metrics["uar"] and m2["summary"] == metrics["summary"]


def test_demo_validates(fk_env):
    from fusionkit.cli import main

    result = CliRunner().invoke(main, ["validate", "demo"])
    assert result.exit_code == 0 and "demo: valid" in result.stdout
