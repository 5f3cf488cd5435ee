"""MLflow tracking: a run and a grid logged, read back through MlflowClient and compared with metrics.json;
a resumed grid logs no cell twice; without the extra, asking for it is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from core_fixtures import fk_env, small_recipe  # noqa: F401
from report_fixtures import TINY_GRID, cli, make_grid, make_run


def _client(store: Path):
    pytest.importorskip("mlflow")
    import os

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store.resolve().as_uri())


def _runs(client, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


def _same_as_metrics_json(client, run, run_dir: Path) -> None:
    m = json.loads((run_dir / "metrics.json").read_text())
    data = run.data
    for key in ("uar", "wa", "macro_f1", "weighted_f1"):
        assert data.metrics[key] == pytest.approx(m[key], abs=1e-9)
        assert data.metrics[f"{key}_std"] == pytest.approx(m[f"{key}_std"], abs=1e-9)
    assert data.metrics["uar_pooled"] == pytest.approx(m["uar_pooled"], abs=1e-9)
    assert [data.metrics["uar_pooled_ci95_low"], data.metrics["uar_pooled_ci95_high"]] == \
        pytest.approx(m["uar_pooled_ci95"]["ci95"], abs=1e-9)
    history = sorted(client.get_metric_history(run.info.run_id, "fold_uar"), key=lambda x: x.step)
    assert [h.value for h in history] == pytest.approx([f["uar"] for f in m["folds"]], abs=1e-9)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "report.md", "predictions.csv", "metrics.json", "confusion.png", "models"} <= artifacts


def test_run_is_logged_with_recipe_params_and_metrics(fk_env, tmp_path):
    store = tmp_path / "store"
    client = _client(store)
    run_dir = make_run(tmp_path / "runs" / "a", f"--mlflow={store}")
    (run,) = _runs(client, "small")  # the experiment defaults to the recipe's name
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["data.dataset"] == "synthetic" and params["fusion.options.n_estimators"] == "10"
    assert params["encoders.0.options.descriptors.1"] == "rms"
    _same_as_metrics_json(client, run, run_dir)


def test_recipe_tracking_block(fk_env, tmp_path):
    store = tmp_path / "from-recipe"
    client = _client(store)
    make_run(tmp_path / "runs" / "a", tracking={"mlflow": {"uri": str(store), "experiment": "exp-1"}})
    assert len(_runs(client, "exp-1")) == 1


def test_grid_logs_parent_and_children_once(fk_env, tmp_path):
    store = tmp_path / "store"
    client = _client(store)
    grid_text = TINY_GRID + f"tracking: {{mlflow: {{uri: '{store}', experiment: grid-exp}}}}\n"
    out = make_grid(tmp_path, grid_text=grid_text)
    make_grid(tmp_path, grid_text=grid_text)  # resumed: every cell finished, nothing logged again
    runs = _runs(client, "grid-exp")
    parents = [r for r in runs if r.data.tags.get("fusionkit.kind") == "grid"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 2 and len(runs) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    for child in children:
        _same_as_metrics_json(client, child, out / "cells" / child.data.tags["fusionkit.cell"])
    best = max(json.loads((c / "metrics.json").read_text())["uar"] for c in (out / "cells").iterdir())
    assert parents[0].data.metrics["best_uar_synthetic"] == pytest.approx(best, abs=1e-9)
    assert parents[0].data.metrics["cells_done"] == 2
    assert "report.html" in {a.path for a in client.list_artifacts(parents[0].info.run_id)}


def test_without_the_extra_it_is_one_line_and_exit_2(fk_env, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed: find_spec sees no module
    (tmp_path / "r.yaml").write_text(json.dumps(small_recipe()))
    result = cli("run", tmp_path / "r.yaml", "--out", tmp_path / "run", "--mlflow")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == ["error: --mlflow: MLflow tracking needs the mlflow extra: pip install 'fusionkit[mlflow]'"]
    assert not (tmp_path / "run").exists()  # refused before anything ran


def test_an_unreachable_tracking_server_is_refused_before_the_run(fk_env, tmp_path):
    """A server that is not there was found after the whole run, then retried for minutes: now one line, exit 2."""
    import socket

    pytest.importorskip("mlflow")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "r.yaml").write_text(json.dumps(small_recipe()))
    result = cli("run", tmp_path / "r.yaml", "--out", tmp_path / "run", f"--mlflow=http://127.0.0.1:{port}")
    assert result.exit_code == 2
    assert f"error: --mlflow: the tracking server http://127.0.0.1:{port} cannot be reached" in result.output
    assert not (tmp_path / "run").exists()


def test_help_imports_no_mlflow():
    code = ("import sys; from fusionkit.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
