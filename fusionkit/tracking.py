"""MLflow tracking (the optional ``mlflow`` extra): log a finished run folder, or a grid as a parent run with a
child run per cell.

Everything is read back from what the folders already hold (recipe.yaml, metrics.json, the report, plots,
predictions, fitted heads), so a run is logged once it is finished. MLflow is imported only when something is
logged; without it, asking for tracking is a :class:`TrackingError` naming the extra to install.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from fusionkit.flat import flatten

DEFAULT_STORE = "mlruns"
RUN_ARTIFACTS = ("report.html", "report.md", "metrics.json", "recipe.yaml", "predictions.csv")
GRID_ARTIFACTS = ("report.html", "results.md", "results.csv", "grid.json", "uar_heatmap.png")
KIND_TAG, CELL_TAG, GRID_TAG = "fusionkit.kind", "fusionkit.cell", "fusionkit.grid_key"
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_CHARS = 6000


class TrackingError(Exception):
    """Tracking asked for but impossible (extra not installed, store unusable); the message is one line."""


@dataclass(frozen=True)
class Target:
    """Where to log: a tracking URI and an experiment name."""

    uri: str
    experiment: str


def require_mlflow() -> None:
    """Raise :class:`TrackingError` unless the ``mlflow`` extra is installed (checked without importing it)."""
    try:
        found = importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise TrackingError("MLflow tracking needs the mlflow extra: pip install 'fusionkit[mlflow]'")


def store_uri(uri: str | None) -> str:
    """``uri`` as MLflow takes it: none -> ``./mlruns`` (a local file store); a plain path -> a ``file:`` URI."""
    uri = uri or DEFAULT_STORE
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", uri):  # has a scheme (file:, http:, sqlite:, databricks:...)
        return uri
    return Path(uri).expanduser().resolve().as_uri()


def target(cli_uri: str | None, spec, default_experiment: str) -> Target | None:
    """The tracking target asked for by ``--mlflow [URI]`` (``cli_uri``; "" for no URI) or by a recipe's or grid's
    ``tracking.mlflow`` block (``spec``: a mapping or model with ``uri`` and ``experiment``), else None."""
    if cli_uri is None and spec is None:
        return None
    require_mlflow()
    get = spec.get if isinstance(spec, dict) else (lambda key: getattr(spec, key, None))
    uri = cli_uri or (get("uri") if spec is not None else None)
    experiment = (get("experiment") if spec is not None else None) or default_experiment
    where = Target(store_uri(uri), experiment)
    check_reachable(where.uri)
    return where


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """An http(s) tracking server must accept a connection now: else :class:`TrackingError` before anything runs
    (MLflow itself would find out after the run, then retry for minutes)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "localhost", port), timeout=timeout).close()
    except OSError as exc:
        raise TrackingError(f"the tracking server {uri} cannot be reached ({exc.strerror or exc}); start it, or "
                            "give another URI") from None


def _client(where: Target):
    if where.uri.startswith("file:"):  # the local file store is opt-in in recent MLflow releases
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=where.uri)


def _experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def _key(name: str) -> str:
    """A metric or parameter name MLflow accepts (letters, digits, ``_-. /``)."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)[:250]


def run_params(run_dir: Path) -> dict[str, str]:
    """The flattened resolved recipe (recipe.yaml) as ``dotted.key -> text``."""
    path = run_dir / "recipe.yaml"
    recipe = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    flat = flatten(recipe if isinstance(recipe, dict) else {})
    return {_key(k): ("" if v is None else str(v))[:MAX_PARAM_CHARS] for k, v in flat.items()}


def run_metrics(m: dict) -> list[tuple[str, float, int]]:
    """(name, value, step) of a run: each summary figure's mean, std and 95% interval, the pooled figures (and the
    pooled UAR's speaker-bootstrap interval), each
    class's pooled recall, and every fold score as the step-indexed history of ``fold_<metric>``."""
    out: list[tuple[str, float, int]] = []
    for key, s in m["summary"].items():
        out += [(key, s["mean"], 0), (f"{key}_std", s["std"], 0)]
        if s.get("n", 0) > 1:
            out += [(f"{key}_ci95_low", s["ci95"][0], 0), (f"{key}_ci95_high", s["ci95"][1], 0)]
    out += [(k, v, 0) for k, v in m.items() if k.endswith("_pooled") and isinstance(v, (int, float))]
    boot = m.get("uar_pooled_ci95")  # from resampling the test speakers
    if boot:
        out += [("uar_pooled_ci95_low", boot["ci95"][0], 0), ("uar_pooled_ci95_high", boot["ci95"][1], 0)]
    per_class = (m.get("pooled") or {}).get("per_class") if m.get("task") != "regression" else None
    if per_class:
        out += [(f"recall_{c}", r, 0) for c, r in zip(m.get("classes") or [], per_class["recall"])]
    for step, fold in enumerate(m["folds"]):
        out += [(f"fold_{k}", fold[k], step) for k in m["summary"] if isinstance(fold.get(k), (int, float))]
    return [(_key(k), float(v), step) for k, v, step in out if v is not None]


def _log_batches(client, run_id: str, params: dict[str, str], metrics: list[tuple[str, float, int]]) -> None:
    import time

    from mlflow.entities import Metric, Param

    items = [Param(k, v) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i:i + 100])
    now = int(time.time() * 1000)
    values = [Metric(k, v, now, step) for k, v, step in metrics]
    for i in range(0, len(values), 1000):
        client.log_batch(run_id, metrics=values[i:i + 1000])


def _log_files(client, run_id: str, folder: Path, names) -> None:
    for name in names:
        if (folder / name).is_file():
            client.log_artifact(run_id, str(folder / name))


def log_run(run_dir: Path, where: Target, parent_id: str | None = None, tags: dict | None = None) -> str:
    """Log the finished run folder ``run_dir`` (a child of ``parent_id`` when given); return the MLflow run id."""
    run_dir = Path(run_dir)
    m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    client = _client(where)
    all_tags = {KIND_TAG: "run", "fusionkit.folder": str(run_dir.resolve()), **(tags or {})}
    if parent_id:
        all_tags[PARENT_TAG] = parent_id
    run = client.create_run(_experiment_id(client, where.experiment), run_name=str(m["recipe"]), tags=all_tags)
    run_id = run.info.run_id
    try:
        _log_batches(client, run_id, run_params(run_dir), run_metrics(m))
        _log_files(client, run_id, run_dir, [*RUN_ARTIFACTS, *sorted(p.name for p in run_dir.glob("*.png"))])
        if (run_dir / "models").is_dir():
            client.log_artifacts(run_id, str(run_dir / "models"), "models")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def grid_key(out: Path) -> str:
    """The tag value naming one grid folder (its absolute path, hashed), so a resumed grid finds its parent run."""
    return hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:16]


def _search(client, experiment_id: str, query: str) -> list:
    return client.search_runs([experiment_id], filter_string=query, max_results=50000)


def log_grid(out: Path, rows: list[dict], name: str, where: Target) -> tuple[str, int]:
    """Log the grid folder ``out``: one parent run (found again by the folder on a resumed grid) and a child run
    for each finished cell not logged before. Return (parent run id, child runs logged now)."""
    out = Path(out)
    client = _client(where)
    experiment_id = _experiment_id(client, where.experiment)
    key = grid_key(out)
    parents = _search(client, experiment_id, f"tags.`{GRID_TAG}` = '{key}' and tags.`{KIND_TAG}` = 'grid'")
    if parents:
        parent_id = parents[0].info.run_id
        client.update_run(parent_id, status="RUNNING")
    else:
        parent_id = client.create_run(experiment_id, run_name=name, tags={
            KIND_TAG: "grid", GRID_TAG: key, "fusionkit.folder": str(out.resolve())}).info.run_id
    logged = {r.data.tags.get(CELL_TAG) for r in _search(client, experiment_id, f"tags.`{PARENT_TAG}` = '{parent_id}'")}
    new = 0
    for row in rows:
        cell_dir = out / "cells" / str(row["cell"])
        if row["status"] != "done" or row["cell"] in logged or not (cell_dir / "metrics.json").is_file():
            continue
        log_run(cell_dir, where, parent_id, {CELL_TAG: str(row["cell"])})
        new += 1
    done = [r for r in rows if r["status"] == "done"]
    metrics = [("cells_done", float(len(done)), 0), ("cells_failed", float(len(rows) - len(done)), 0)]
    for dataset in sorted({r["dataset"] for r in done}):
        metrics.append((_key(f"best_uar_{dataset}"), max(float(r["uar"]) for r in done if r["dataset"] == dataset), 0))
    _log_batches(client, parent_id, {}, metrics)
    _log_files(client, parent_id, out, GRID_ARTIFACTS)
    client.set_terminated(parent_id, "FINISHED")
    return parent_id, new
