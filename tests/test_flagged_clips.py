"""A corpus's silent or very short clips are used as they are, but flagged: in the log, metrics.json and the
report, on the run that encodes them and on every run served from the cache."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from click.testing import CliRunner
from core_fixtures import fk_env  # noqa: F401


def corpus(root):
    sr = 16000
    rows = ["path,label,speaker"]
    rng = np.random.default_rng(0)
    for s in range(4):
        for label, freq in (("low", 180.0), ("high", 420.0)):
            for k in range(3):
                name = f"s{s}-{label}-{k}.wav"
                t = np.arange(sr) / sr
                x = 0.3 * np.sin(2 * np.pi * (freq + 10 * s) * t) + 0.01 * rng.standard_normal(sr)
                if (s, label, k) == (0, "low", 0):
                    x = np.zeros(sr)
                if (s, label, k) == (1, "high", 0):
                    x = x[: sr // 20]  # 50 ms
                sf.write(str(root / name), x.astype(np.float32), sr)
                rows.append(f"{name},{label},s{s}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_silent_and_very_short_clips_are_flagged_and_stay_flagged_from_the_cache(tmp_path, fk_env, caplog):
    from fusionkit.cli import main

    (tmp_path / "c").mkdir()
    manifest = corpus(tmp_path / "c")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: flags\ndata: {{dataset: manifest, root: {manifest}}}\n"
                      "encoders: [{plugin: lld, options: {descriptors: [mfcc, rms], workers: 1}}]\n"
                      "fusion: {plugin: linear}\nsplit: {kind: speaker-kfold, folds: 2}\n")
    want = [{"clip": "s0-low-0", "warning": "silent (every sample is 0)"},
            {"clip": "s1-high-0", "warning": "very short (0.050 s)"}]
    for out, computed in (("run1", 24), ("run2", 0)):
        caplog.clear()
        r = CliRunner().invoke(main, ["run", str(recipe), "--out", str(tmp_path / out)])
        assert r.exit_code == 0, r.output
        m = json.loads((tmp_path / out / "metrics.json").read_text())
        assert m["embeddings"]["computed"] == computed and m["n_clips"] == 24 and m["skipped"] == []
        assert m["flagged"] == want
        assert "2 clip(s) look silent or very short and are used as they are" in caplog.text
        report = (tmp_path / out / "report.md").read_text()
        assert "## Flagged clips (2)" in report and "`s0-low-0`: silent (every sample is 0)" in report
        assert "flagged-table" in (tmp_path / out / "report.html").read_text()
