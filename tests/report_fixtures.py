"""Small finished runs and grids for the HTML report, browser and tracking tests (a few seconds each)."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from core_fixtures import small_recipe

from fusionkit.cli import main

TINY_GRID = """
name: tiny-grid
base: base.yaml
axes:
  fusion:
    - {name: xgb5, plugin: xgboost, options: {n_estimators: 5, n_jobs: 1}}
    - {name: xgb10, plugin: xgboost, options: {n_estimators: 10, n_jobs: 1}}
"""


def cli(*args) -> object:
    """``fusionkit ARGS`` in this process; the result (exit code, output)."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def make_run(folder: Path, *extra: str, **changes) -> Path:
    """A finished small run in ``folder`` (``changes`` as for small_recipe, ``extra`` CLI arguments)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    recipe = folder.parent / f"{folder.name}.yaml"
    recipe.write_text(yaml.safe_dump(small_recipe(**changes), sort_keys=False))
    result = cli("run", recipe, "--out", folder, *extra)
    assert result.exit_code == 0, result.output
    return folder


def make_grid(tmp: Path, *extra: str, grid_text: str = TINY_GRID) -> Path:
    """A finished two-cell grid in ``tmp/grid-out``; its base recipe is small_recipe."""
    (tmp / "base.yaml").write_text(yaml.safe_dump(small_recipe(), sort_keys=False))
    (tmp / "grid.yaml").write_text(grid_text)
    out = tmp / "grid-out"
    result = cli("bench", tmp / "grid.yaml", "--out", out, "--workers", "1", *extra)
    assert result.exit_code == 0, result.output
    return out
