"""The out-of-tree example plugin (plugins/fusionkit-example) is found and usable by name."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from core_fixtures import fk_env, small_recipe, write_recipe  # noqa: F401

pytest.importorskip("fusionkit_example", reason="pip install -e plugins/fusionkit-example (make install does)")


def test_listed_with_its_distribution_as_origin(fk_env):
    from fusionkit.cli import main

    result = CliRunner().invoke(main, ["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = [r for r in json.loads(result.stdout) if r["name"] == "example-energy"]
    assert row["kind"] == "encoder" and row["status"] == "installed"
    assert row["origin"] == row["distribution"] == "fusionkit-example"
    assert row["entry_point"] == "fusionkit_example.energy" and row["modality"] == "audio"
    text = CliRunner().invoke(main, ["plugins", "list"]).stdout
    (line,) = [l for l in text.splitlines() if "example-energy" in l]
    assert "fusionkit-example" in line and "installed" in line


def test_used_from_a_recipe_next_to_a_builtin(tmp_path, fk_env):
    from fusionkit.cli import main

    recipe = write_recipe(tmp_path / "r.yaml", small_recipe(encoders=[
        {"plugin": "lld", "options": {"descriptors": ["mfcc", "rms"], "workers": 1}},
        {"plugin": "example-energy", "options": {"functionals": ["mean", "std", "q90"]}},
    ]))
    result = CliRunner().invoke(main, ["run", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["embeddings"]["per_encoder"]["example-energy"]["computed"] == 32
    assert m["embeddings"]["per_encoder"]["lld"]["computed"] == 32
    assert [e["plugin"] for e in m["protocol"]["encoders"]] == ["lld", "example-energy"]
    # its options are validated like a built-in's
    bad = write_recipe(tmp_path / "bad.yaml", small_recipe(encoders=[
        {"plugin": "example-energy", "options": {"frame_ms": 10, "hop_ms": 20}}]))
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2 and "encoders.0.options: " in result.stderr and "hop_ms" in result.stderr


def test_hidden_by_the_autoload_switch(fk_env, monkeypatch):
    from fusionkit.cli import main

    monkeypatch.setenv("FUSIONKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    result = CliRunner().invoke(main, ["plugins", "list", "--json"])
    assert "example-energy" not in {r["name"] for r in json.loads(result.stdout)}
