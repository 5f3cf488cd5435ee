"""The ray engine (a local Ray instance, 2 CPUs, no dashboard) gives exactly the local engine's embeddings,
metrics, skipped clips and grid rows (encoding on Ray Data); a worker process lost mid-call is retried by Ray."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from core_fixtures import small_recipe

ray = pytest.importorskip("ray")

from fusionkit.cli import main  # noqa: E402
from fusionkit.recipe import EngineSpec, Recipe  # noqa: E402

RAY = EngineSpec(kind="ray")


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import this test module
    yield
    ray.shutdown()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.safetensors"))}


def _run(tmp_path: Path, monkeypatch, name: str, engine: EngineSpec | None) -> tuple[dict, str, Path]:
    from fusionkit.pipeline.run import run

    cache = tmp_path / f"cache-{name}"
    monkeypatch.setenv("FUSIONKIT_CACHE_DIR", str(cache))
    recipe = Recipe.model_validate({**small_recipe(), "engine": engine.model_dump() if engine else None})
    metrics = run(recipe, tmp_path / f"run-{name}")
    return metrics, (tmp_path / f"run-{name}" / "predictions.csv").read_text(), cache


def test_run_on_ray_equals_local_run(tmp_path, monkeypatch):
    local, local_preds, local_cache = _run(tmp_path, monkeypatch, "local", None)
    remote, remote_preds, remote_cache = _run(tmp_path, monkeypatch, "ray", RAY)
    assert remote["embeddings"]["computed"] == local["embeddings"]["computed"] == local["n_clips"] > 0
    entries = _files(local_cache)
    assert entries and _files(remote_cache) == entries  # the same entries, byte for byte
    assert remote_preds == local_preds
    for key in ("uar", "wa", "macro_f1", "weighted_f1"):
        assert remote[key] == pytest.approx(local[key], abs=1e-12)
    assert not list(remote_cache.rglob(".*.tmp"))
    assert "engine" not in (tmp_path / "run-ray" / "recipe.yaml").read_text()  # where it ran is not recorded


def test_encode_command_on_ray_with_workers_writing_a_shared_cache(tmp_path, monkeypatch):
    recipe = tmp_path / "small.yaml"
    recipe.write_text(yaml.safe_dump(small_recipe()))
    caches = {}
    for name, args in (("local", []), ("shared", ["--engine", "ray", "--shared-cache"])):
        caches[name] = tmp_path / f"cache-{name}"
        monkeypatch.setenv("FUSIONKIT_CACHE_DIR", str(caches[name]))
        r = CliRunner().invoke(main, ["encode", str(recipe), *args])
        assert r.exit_code == 0, r.output
        assert "computed, 0 cached" in r.output
    assert _files(caches["shared"]) == _files(caches["local"]) != {}
    again = CliRunner().invoke(main, ["encode", str(recipe), "--engine", "ray"])  # nothing left to dispatch
    assert again.exit_code == 0 and " 0 computed" in again.output


def test_grid_on_ray_equals_local_runs_of_its_cells_and_resumes(tmp_path, monkeypatch):
    from fusionkit.bench import load_grid, run_grid
    from fusionkit.pipeline.run import run

    monkeypatch.setenv("FUSIONKIT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(small_recipe()))
    heads = [{"name": f"x{n}", "plugin": "xgboost", "options": {"n_estimators": n, "n_jobs": 1}} for n in (5, 10)]
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "base": "base.yaml", "engine": {"kind": "ray"},
                                    "axes": {"fusion": heads}}))
    filled = CliRunner().invoke(main, ["encode", str(grid)])  # the grid file's engine: ray
    assert filled.exit_code == 0 and re.search(r"embeddings [1-9]\d* computed, 0 cached", filled.output), filled.output
    rows = {r["cell"]: r for r in run_grid(grid, tmp_path / "ray", [], 2, False)}
    _, cells = load_grid(grid, [])
    assert sorted(rows) == sorted(c.id for c in cells)
    for cell in cells:  # the local engine's figures: the cell's recipe run here
        local = run(Recipe.model_validate(cell.recipe), tmp_path / "local" / cell.id)
        assert rows[cell.id]["status"] == "done"
        assert (rows[cell.id]["n_clips"], rows[cell.id]["folds"]) == (local["n_clips"], len(local["folds"]))
        for key in ("uar", "wa", "macro_f1", "weighted_f1"):
            assert rows[cell.id][key] == pytest.approx(local[key], abs=1e-12)
        assert local["embeddings"]["computed"] == 0  # `fusionkit encode GRID` (on ray) filled the cache
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray" / "cells").glob("*/cell.json")}
    assert len(before) == 2
    run_grid(grid, tmp_path / "ray", [], 2, False)  # finished cells never rerun
    assert {p: p.stat().st_mtime_ns for p in before} == before


def _die_once(raw: dict, cell_dir: str, threads: int) -> dict:
    """A cell whose first attempt loses its worker process (as a killed worker would)."""
    marker = Path(cell_dir) / "attempted"
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("1")
        os._exit(1)
    return {"status": "done", "threads": threads, "value": raw["value"]}


def test_a_cell_whose_worker_dies_is_retried(tmp_path):
    from fusionkit.engine.ray_engine import run_tasks

    rows = dict(run_tasks(_die_once, [("c", {"value": 7}, str(tmp_path / "c"))], RAY))
    assert rows == {"c": {"status": "done", "threads": 1, "value": 7}}


class DyingOnceEncoder:
    """A text encoder whose process dies on its first batch; its features are the text's length."""

    name, modality, sample_rate = "dying", "text", 16000

    def __init__(self, marker: str):
        self.marker = marker

    def batch_size(self) -> int:
        return 2

    def load(self) -> None:
        pass

    def encode_batch(self, inputs):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text("1")
            os._exit(1)
        if "bad" in inputs:
            raise ValueError("bad input")
        return [{"pooled": np.array([len(t)], dtype=np.float32)} for t in inputs]

    def select(self, arrays):
        return arrays["pooled"]


def test_an_encoder_actor_that_dies_is_restarted_and_failures_stay_per_input(tmp_path):
    from fusionkit.engine.ray_data import featurize_on_ray

    texts = ["a", "bb", "bad", "dddd", "eeeee"]
    outs = sorted(featurize_on_ray(DyingOnceEncoder(str(tmp_path / "died")), texts, [str(i) for i in range(5)],
                                   "dying", RAY, lambda enc, label: enc.load()), key=lambda o: o.index)
    assert [o.index for o in outs] == [0, 1, 2, 3, 4]
    assert [float(o.features[0]) for o in outs if o.ok] == [1.0, 2.0, 4.0, 5.0]
    assert "bad input" in outs[2].reason
    assert (tmp_path / "died").exists()


def test_engine_options_need_the_ray_engine(tmp_path):
    r = CliRunner().invoke(main, ["encode", "demo", "--cpus-per-task", "2"])
    assert r.exit_code == 2 and "are for --engine ray" in r.output
    bad = tmp_path / "grid.yaml"
    bad.write_text(json.dumps({"base": "demo", "axes": {}, "engine": {"kind": "spark"}}))
    r = CliRunner().invoke(main, ["bench", str(bad), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "engine.kind" in r.output


def test_an_address_nobody_answers_is_one_line_in_seconds(tmp_path):
    import subprocess

    cmd = [sys.executable, "-c", "from fusionkit.cli import main; main()", "encode", "demo", "--address", "127.0.0.1:1"]
    env = {**os.environ, "FUSIONKIT_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: engine.address: no Ray cluster answers at 127.0.0.1:1")


RAVDESS = Path("/work/shared/data/ravdess/Actor_01")


@pytest.mark.skipif(not RAVDESS.is_dir(), reason="needs the RAVDESS corpus")
def test_real_clips_and_a_failing_clip_on_ray_data_are_the_local_engines(tmp_path):
    from fusionkit.pipeline.encode import build_encoders, clip_digests, encode_clips
    from fusionkit.sdk.base import Clip

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF, but not audio" * 10)
    paths = [*sorted(RAVDESS.iterdir())[:3], broken, tmp_path / "missing.wav"]
    clips = [Clip(id=f"c{i}", path=p, label="neutral", speaker="s") for i, p in enumerate(paths)]
    digests, unread = clip_digests(clips)
    assert list(unread) == ["c4"]
    encoder = build_encoders(Recipe.model_validate(small_recipe()))["lld"]
    local = encode_clips(encoder, clips, tmp_path / "local", digests)
    remote = encode_clips(encoder, clips, tmp_path / "ray", digests, engine=RAY)
    assert (remote.computed, len(remote.features)) == (local.computed, len(local.features)) == (3, 3)
    assert remote.skipped == local.skipped and list(remote.skipped) == ["c4", "c3"]  # the reason, word for word
    for cid, features in local.features.items():
        assert remote.features[cid].dtype == features.dtype and np.array_equal(remote.features[cid], features)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local") != {}


class CannotLoadEncoder(DyingOnceEncoder):
    """An encoder whose model cannot be loaded."""

    def load(self) -> None:
        raise RuntimeError("weights not found at /nowhere")


def test_an_encoder_that_cannot_load_on_ray_data_fails_with_its_own_error(tmp_path):
    from fusionkit.engine.ray_data import featurize_on_ray

    with pytest.raises(RuntimeError) as raised:
        list(featurize_on_ray(CannotLoadEncoder(str(tmp_path / "m")), ["a", "b"], ["0", "1"], "broken", RAY,
                              lambda enc, label: enc.load()))
    assert str(raised.value) == "weights not found at /nowhere"  # as the local engine raises it, unannotated


class SlowEncoder(DyingOnceEncoder):
    """A text encoder that takes half a second per batch."""

    def encode_batch(self, inputs):
        import time

        time.sleep(0.5)
        return [{"pooled": np.array([len(t)], dtype=np.float32)} for t in inputs]


def _encoder_actor_processes() -> set[str]:
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"MapBatches(EncodeBatches)" in (proc / "cmdline").read_bytes():
                found.add(proc.name)
        except OSError:
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_leaving_the_encoding_early_stops_its_actors(tmp_path):
    import time

    from fusionkit.engine.ray_data import featurize_on_ray

    before = _encoder_actor_processes()
    texts = ["x" * n for n in range(1, 41)]
    stream = featurize_on_ray(SlowEncoder(str(tmp_path / "m")), texts, [str(i) for i in range(40)], "slow", RAY,
                              lambda enc, label: enc.load())
    assert next(stream).ok
    assert _encoder_actor_processes() - before  # the pool is working
    stream.close()  # what Ctrl-C in the driver does to the stream
    deadline = time.monotonic() + 20
    while _encoder_actor_processes() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _encoder_actor_processes() - before


def _pid_then_sleep(raw: dict, cell_dir: str, threads: int) -> dict:
    """A long cell that says which process runs it."""
    import time

    Path(cell_dir).mkdir(parents=True, exist_ok=True)
    (Path(cell_dir) / "pid").write_text(str(os.getpid()))
    time.sleep(raw["sleep"])
    return {"status": "done"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_leaving_a_grid_early_stops_its_running_cells(tmp_path):
    import time

    from fusionkit.engine.ray_engine import run_tasks

    jobs = [("quick", {"sleep": 0}, str(tmp_path / "quick")), ("slow", {"sleep": 120}, str(tmp_path / "slow"))]
    results = run_tasks(_pid_then_sleep, jobs, RAY)
    assert next(results) == ("quick", {"status": "done"})
    pid_file = tmp_path / "slow" / "pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    assert Path(f"/proc/{pid}").exists()  # the slow cell is running
    results.close()  # what Ctrl-C in `fusionkit bench --engine ray` does to the results
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), "the cancelled cell's worker process is still running"
