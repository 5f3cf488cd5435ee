"""Helpers for the core tests: a private cache, small recipes, throwaway plugin distributions."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {"encoder": "fusionkit.encoders", "fusion": "fusionkit.fusions", "dataset": "fusionkit.datasets"}


@pytest.fixture
def fk_env(tmp_path, monkeypatch):
    """A private cache dir, no progress bars, a fresh plugin registry before and after."""
    from fusionkit import registry as plugins

    cache = tmp_path / "cache"
    monkeypatch.setenv("FUSIONKIT_CACHE_DIR", str(cache))
    monkeypatch.setenv("FUSIONKIT_PROGRESS", "0")
    for var in ("FUSIONKIT_DISABLE_PLUGIN_AUTOLOAD", "FUSIONKIT_BLOCK_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    plugins.reset()
    yield cache
    plugins.reset()


def small_recipe(**changes) -> dict:
    """A recipe that runs in a few seconds: 4 synthetic speakers, a few LLDs, a tiny XGBoost, 2 folds."""
    recipe = {
        "name": "small",
        "data": {"dataset": "synthetic", "options": {"speakers": 4, "clips_per_class": 2}},
        "encoders": [{"plugin": "lld", "options": {"descriptors": ["mfcc", "rms", "zcr"], "workers": 1}}],
        "fusion": {"plugin": "xgboost", "options": {"n_estimators": 10, "n_jobs": 1}},
        "split": {"kind": "speaker-kfold", "folds": 2},
    }
    for dotted, value in changes.items():
        node = recipe
        *head, last = dotted.split("__")
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value
    return recipe


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def fake_distribution(site: Path, dist: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> Path:
    """Make ``site`` hold an installed-looking distribution: a ``*.dist-info`` with entry points, plus modules.

    ``entry_points``: kind -> {entry point name: module}; ``modules``: module name -> source.
    Put ``site`` on PYTHONPATH (subprocess) or sys.path (in process) to install it.
    """
    site.mkdir(parents=True, exist_ok=True)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = []
    for kind, eps in entry_points.items():
        lines.append(f"[{GROUPS[kind]}]")
        lines += [f"{name} = {module}" for name, module in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    return site


ENCODER_SOURCE = '''
    import numpy as np
    from fusionkit.sdk import hookimpl
    from fusionkit.sdk.base import Encoder

    class {cls}(Encoder):
        name = "{name}"
        description = "{description}"

        def encode_batch(self, inputs):
            return [{{"features": np.array([float(np.mean(np.abs(x))), float(np.std(x))], dtype=np.float32)}}
                    for x in inputs]

    @hookimpl
    def register_encoders(register):
        register({cls})
'''


def encoder_module(name: str, cls: str = "Plugged", description: str = "a test encoder") -> str:
    """Source of a plugin module registering a tiny real encoder (mean |x|, std) named ``name``."""
    return ENCODER_SOURCE.format(name=name, cls=cls, description=description)


def run_cli(
    args: list[str], env: dict | None = None, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``fusionkit ARGS`` in a fresh interpreter (so entry points and sys.modules start clean)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONKIT_")}  # the user's switches stay out
    full_env = {**clean, "FUSIONKIT_PROGRESS": "0", "FUSIONKIT_CPU_BF16": "0", **(env or {})}  # fp32 tolerances
    code = "import sys; from fusionkit.cli import main; sys.argv[0] = 'fusionkit'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env=full_env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def with_pythonpath(site: Path, env: dict | None = None) -> dict:
    old = os.environ.get("PYTHONPATH", "")
    return {**(env or {}), "PYTHONPATH": os.pathsep.join(p for p in (str(site), old) if p)}


def rehash_bundle(bundle: Path) -> None:
    """Recompute a bundle's manifest after editing its files, as whoever changes a bundle can (hashes are not
    signed)."""
    from fusionkit.bundle.files import content_hash

    m = json.loads((bundle / "manifest.json").read_text())
    files = [p for p in sorted(bundle.rglob("*")) if p.is_file() and p != bundle / "manifest.json"]
    m["files"] = {p.relative_to(bundle).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    m["content_hash"] = content_hash(m)
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))


def run_and_export(root: Path, recipe_text: str, fold: str = "0") -> Path:
    """In ``root``: write ``recipe.yaml``, ``fusionkit run`` it into ``run/`` and export fold ``fold`` into
    ``fold<fold>/`` (in this process, through the CLI); ``root``."""
    from click.testing import CliRunner

    from fusionkit.cli import main

    (root / "recipe.yaml").write_text(recipe_text)
    runner = CliRunner()
    r = runner.invoke(main, ["run", str(root / "recipe.yaml"), "--out", str(root / "run")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(root / "run"), str(root / f"fold{fold}"), "--fold", fold],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return root


def bench_rows(root: Path, base_recipe_text: str, grid_text: str) -> list[dict]:
    """In ``root``: write ``base.yaml`` and ``grid.yaml``, ``fusionkit bench`` the grid into ``out/`` (one cell worker,
    in this process, through the CLI); the rows of its results.csv."""
    import csv

    from click.testing import CliRunner

    from fusionkit.cli import main

    (root / "base.yaml").write_text(base_recipe_text)
    (root / "grid.yaml").write_text(grid_text)
    r = CliRunner().invoke(main, ["bench", str(root / "grid.yaml"), "--out", str(root / "out"), "--workers", "1"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    with open(root / "out" / "results.csv") as fh:
        return list(csv.DictReader(fh))


def fresh_process_difference(run_dir: Path) -> float:
    """The largest probability difference when a new Python process reloads ``run_dir``'s saved heads and predicts
    its folds again (:func:`fusionkit.pipeline.reload.saved_run_difference`)."""
    code = ("import sys; from fusionkit.pipeline.reload import saved_run_difference; "
            "print(saved_run_difference(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])
