"""An interrupted run resumes its folds: those finished with the same recipe, clips and embeddings are reused."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from core_fixtures import fk_env, small_recipe, write_recipe  # noqa: F401


def run(recipe: Path, out: Path, *sets: str):
    from fusionkit.cli import main

    args = [a for s in sets for a in ("--set", s)]
    return CliRunner().invoke(main, ["run", str(recipe), "--out", str(out), "--set", "engine.fold_workers=1", *args])


def test_interrupted_folds_resume_and_a_changed_recipe_refits(tmp_path, fk_env, monkeypatch, caplog):
    import logging

    import fusionkit.pipeline.folds as folds

    caplog.set_level(logging.INFO, logger="fusionkit")
    recipe = write_recipe(tmp_path / "r.yaml", small_recipe())
    whole = run(recipe, tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    want = json.loads((tmp_path / "whole" / "metrics.json").read_text())

    calls = {"n": 0}
    fit_one = folds.fit_one

    def stop_at_second_fold(job, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return fit_one(job, *args, **kwargs)

    monkeypatch.setattr(folds, "fit_one", stop_at_second_fold)
    out = tmp_path / "run"
    stopped = run(recipe, out)
    assert stopped.exit_code == 130
    assert f"every fold fitted so far is in {out}: the same command with --out {out} resumes" in stopped.stderr
    assert (out / "models" / "fold0" / folds.OUTCOME).is_file() and not (out / "metrics.json").exists()
    monkeypatch.setattr(folds, "fit_one", fit_one)
    kept = {p: p.stat().st_mtime_ns for p in (out / "models" / "fold0").iterdir()}

    caplog.clear()
    resumed = run(recipe, out)
    assert resumed.exit_code == 0, resumed.output
    assert "1 of 2 folds reused from an earlier run" in caplog.text
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # fold 0 was not fitted again
    got = json.loads((out / "metrics.json").read_text())
    assert got["timing"]["reused_folds"] == 1 and "reused_folds" not in want["timing"]
    assert [f["uar"] for f in got["folds"]] == [f["uar"] for f in want["folds"]]
    assert (out / "predictions.csv").read_text() == (tmp_path / "whole" / "predictions.csv").read_text()

    caplog.clear()
    changed = run(recipe, out, "fusion.options.n_estimators=11")  # another head: nothing to reuse
    assert changed.exit_code == 0, changed.output
    assert "reused" not in caplog.text
    assert any(p.stat().st_mtime_ns != t for p, t in kept.items())


def test_fold_key_covers_the_head_package_and_fusionkit_source(tmp_path, monkeypatch):
    """A change to a head's network module (a sibling of the head's own module) refits its folds."""
    import importlib
    from types import SimpleNamespace

    import fusionkit.pipeline.folds as folds

    pkg = tmp_path / "myheads"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "head.py").write_text("class Head:\n    pass\n")
    (pkg / "network.py").write_text("WIDTH = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    head = importlib.import_module("myheads.head").Head
    monkeypatch.setattr(folds, "plugin_options", lambda *args: (head, None))
    recipe = SimpleNamespace(fusion=SimpleNamespace(plugin="mine", options={}))
    before = folds._head_code(recipe)
    assert folds._head_code(recipe) == before
    (pkg / "network.py").write_text("WIDTH = 2\n")
    assert folds._head_code(recipe) != before
