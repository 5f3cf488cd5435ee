"""fusionkit bench: grid expansion, encode-once, resume, failed cells, outputs."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from fusionkit.cli import main

BASE = """
name: tiny
data: {dataset: synthetic, options: {speakers: 4, clips_per_class: 3}}
encoders: [{plugin: lld}]
fusion: {plugin: xgboost, options: {n_estimators: 20}}
split: {kind: speaker-kfold, folds: 2}
"""

GRID = """
name: tiny-grid
base: base.yaml
axes:
  encoders:
    - name: lld
      encoders: [{plugin: lld}]
    - name: mfcc
      encoders: [{plugin: lld, options: {descriptors: [mfcc]}}]
  fusion:
    - {name: xgb20, plugin: xgboost, options: {n_estimators: 20}}
    - {name: xgb40, plugin: xgboost, options: {n_estimators: 40}}
"""


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "grid.yaml").write_text(GRID)
    return tmp_path / "grid.yaml"


def _bench(*args):
    return CliRunner().invoke(main, ["bench", *map(str, args), "--workers", "2"], catch_exceptions=False)


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv") as fh:
        return list(csv.DictReader(fh))


def test_grid_runs_every_cell_encoding_once_then_resumes(grid, tmp_path):
    out = tmp_path / "out"
    r = _bench(grid, "--out", out)
    assert r.exit_code == 0, r.output
    rows = _rows(out)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    assert {(r["encoders"], r["head"]) for r in rows} == {(e, h) for e in ("lld", "mfcc") for h in ("xgb20", "xgb40")}
    # the encoding phase encoded each clip once per encoder; a cell reports its encoders' share
    assert all(int(r["computed"]) == int(r["n_clips"]) > 0 for r in rows)
    assert all(float(r["encode_s"]) > 0 and float(r["peak_mb"]) > 0 for r in rows)
    assert all(0.0 <= float(r["uar"]) <= 1.0 for r in rows)
    assert (out / "uar_heatmap.png").stat().st_size > 0
    table = (out / "results.md").read_text()
    assert "**" in table  # best cell highlighted
    # every other cell: its UAR minus the best's on the same clips, with a speaker-bootstrap interval
    assert "| vs best [95% CI] |" in table
    versus = [line.split(" | ")[7] for line in table.splitlines() if line.startswith("| synthetic |")]
    assert sorted(v == "" for v in versus) == [False, False, False, True], versus
    assert all(re.fullmatch(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", v) for v in versus if v)
    assert sorted(r["vs_best"] == "" for r in rows) == [False, False, False, True]  # and in results.csv
    assert all(float(r["vs_best_low"]) <= float(r["vs_best"]) <= float(r["vs_best_high"]) for r in rows if r["vs_best"])
    assert "vs best [95% CI]" in (out / "report.html").read_text()

    # same folder again: nothing left to do
    r = _bench(grid, "--out", out)
    assert "0 to run" in r.output

    # a new folder: every cell reads the cache
    out2 = tmp_path / "out2"
    assert _bench(grid, "--out", out2).exit_code == 0
    assert all(int(r["computed"]) == 0 for r in _rows(out2))

    # an interrupted grid (one cell never finished) re-runs only that cell
    victim = sorted((out / "cells").glob("*/cell.json"))[0]
    victim.unlink()
    before = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/cell.json")}
    r = _bench(grid, "--out", out)
    assert "1 to run" in r.output
    assert victim.exists()
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())


def test_failed_cell_is_recorded_and_grid_goes_on(grid, tmp_path):
    text = grid.read_text().replace(
        "    - {name: xgb40, plugin: xgboost, options: {n_estimators: 40}}",
        "    - {name: xgb40, plugin: xgboost, options: {n_estimators: 40}}\n"
        "    - {name: bad, plugin: xgboost, options: {max_depth: 2}}",
    )
    grid.write_text(text)
    # 'bad' cells use 9 folds on a 4-speaker corpus: valid recipe, fails at run time
    (grid.parent / "base.yaml").write_text(BASE)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["bench", str(grid), "--out", str(out), "--workers", "1",
                                  "--set", "split.folds=9"], catch_exceptions=False)
    assert r.exit_code == 1
    rows = _rows(out)
    assert len(rows) == 6
    assert all(r["status"] == "failed" and "9" in r["error"] for r in rows)
    assert "failed" in (out / "results.md").read_text()


def test_report_rerenders(grid, tmp_path):
    out = tmp_path / "out"
    _bench(grid, "--out", out)
    (out / "results.md").unlink()
    r = CliRunner().invoke(main, ["bench", "--report", str(out)])
    assert r.exit_code == 0 and (out / "results.md").exists()


def test_a_damaged_cell_file_is_left_out_then_run_again(grid, tmp_path, caplog):
    out = tmp_path / "out"
    _bench(grid, "--out", out)
    damaged = sorted((out / "cells").glob("*/cell.json"))[0]
    damaged.write_text("{broken")
    r = CliRunner().invoke(main, ["bench", "--report", str(out)])
    assert r.exit_code == 0, r.output
    assert len(_rows(out)) == 3 and f"{damaged}: unreadable, left out of the tables" in caplog.text
    r = _bench(grid, "--out", out)
    assert r.exit_code == 0 and "1 to run" in r.output
    assert len(_rows(out)) == 4 and json.loads(damaged.read_text())["status"] == "done"


def test_grid_with_unknown_head_is_rejected_before_running(grid, tmp_path):
    grid.write_text(grid.read_text().replace("plugin: xgboost, options: {n_estimators: 40}", "plugin: xgbost"))
    r = CliRunner().invoke(main, ["bench", str(grid), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "did you mean 'xgboost'" in r.output
    assert not (tmp_path / "o" / "cells").exists()


def test_validate_checks_every_cell_of_a_grid(grid, tmp_path):
    ok = CliRunner().invoke(main, ["validate", str(grid)])
    assert ok.exit_code == 0, ok.output
    assert "valid grid 'tiny-grid' (4 cells: 1 dataset(s), 2 encoder set(s), 2 head(s)" in ok.output
    grid.write_text(grid.read_text().replace("plugin: xgboost, options: {n_estimators: 40}", "plugin: xgbost"))
    bad = CliRunner().invoke(main, ["validate", str(grid)])
    assert bad.exit_code == 2
    assert "[2 cells: synthetic/lld/xgb40, synthetic/mfcc/xgb40]: fusion.plugin: unknown fusion plugin 'xgbost'" \
        in bad.stderr
    grid.write_text(grid.read_text().replace("plugin: xgbost", "plugin: xgboost, options: {n_estimators: 40}"))
    folds = CliRunner().invoke(main, ["validate", str(grid), "--set", "split.folds=9"])  # the corpus is read
    assert folds.exit_code == 2
    assert "[4 cells: synthetic/lld/xgb20, synthetic/lld/xgb40, synthetic/mfcc/xgb20, ...]: split.folds is 9 but the " \
           "data has only 4 speakers" in folds.stderr


def test_a_problem_shared_by_every_cell_is_one_line(grid, tmp_path):
    """A base recipe's bad field is the same problem in each cell: one line saying how many, not one per cell."""
    r = CliRunner().invoke(main, ["bench", str(grid), "--set", "split.folds=zero", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    lines = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: {grid} [4 cells: synthetic/lld/xgb20, synthetic/lld/xgb40, "
                               "synthetic/mfcc/xgb20, ...]: split.folds: ")


NAMED_GRID = """
name: named
base: base.yaml
axes:
  encoders:
    - name: energy
      encoders: [{plugin: lld, options: {descriptors: [rms], workers: 1}}]
    - name: pair
      encoders: [{plugin: lld, options: {descriptors: [rms], workers: 1}},
                 {plugin: lld, name: zero-crossings, options: {descriptors: [zcr], workers: 1}}]
    - encoders: [{plugin: lld, options: {descriptors: [centroid], workers: 1}}]
    - encoders: [{plugin: lld, options: {descriptors: [rolloff], workers: 1}}]
"""


def test_encoding_phase_names_encoders_as_the_grid_does(tmp_path, caplog):
    """Its lines name each encoder as the grid does (its own name, its set's when alone in it, else its plugin;
    a name two encoders would share numbered), not by an internal e0, e1, ..."""
    import logging

    from fusionkit.bench import encode_grid, load_grid

    (tmp_path / "base.yaml").write_text(BASE.replace("speakers: 4, clips_per_class: 3",
                                                     "speakers: 2, clips_per_class: 1"))
    (tmp_path / "grid.yaml").write_text(NAMED_GRID)
    _, cells = load_grid(tmp_path / "grid.yaml", [])
    with caplog.at_level(logging.INFO, logger="fusionkit"):
        computed, cached = encode_grid(cells)
    assert computed + cached == 4 * 8  # each distinct encoder once
    named = sorted(r.getMessage().split(":")[0] for r in caplog.records if "embeddings computed" in r.getMessage())
    assert named == ["energy", "lld", "lld #2", "zero-crossings"]


WORKER_SCRIPT = """
import multiprocessing as mp, os, time
from concurrent.futures import ProcessPoolExecutor
from fusionkit.bench import _exit_with_parent

def nap():
    print(os.getpid(), flush=True)
    time.sleep(60)

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        pool.submit(nap)
        time.sleep(60)
"""


STOPPED_SCRIPT = """
import multiprocessing as mp, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from fusionkit.bench import _worker_init, stop_pool

def busy(ready):
    from fusionkit.progress import bar

    list(bar(range(3)))  # as a cell does: tqdm's lock made in the worker
    open(ready, "w").close()
    time.sleep(60)

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), max_tasks_per_child=1,
                               initializer=_worker_init, initargs=(os.getpid(),))
    pool.submit(busy, sys.argv[1])
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.1)
    stop_pool(pool)
"""


def test_stopped_workers_leave_no_semaphores_behind(tmp_path):
    """An interrupted grid terminates its cell workers, mid-cell: what they made must not be named semaphores
    only their exit would release, or the grid process ends with a resource_tracker warning of leaked ones."""
    import subprocess
    import sys

    script = tmp_path / "stopped.py"
    script.write_text(STOPPED_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "ready")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "leaked" not in done.stderr, done.stderr


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


def test_cell_workers_end_when_the_grid_process_is_killed(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    if not Path("/proc").exists():
        pytest.skip("needs /proc")
    script = tmp_path / "pool.py"
    script.write_text(WORKER_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 15
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker outlived the killed grid process"
    finally:
        parent.kill()


def test_cells_whose_split_the_corpus_cannot_give_fail_before_encoding(grid, tmp_path):
    r = CliRunner(env={"FUSIONKIT_CACHE_DIR": str(tmp_path / "cache")}).invoke(
        main, ["bench", str(grid), "--set", "split.folds=9", "--out", str(tmp_path / "o"), "--workers", "1"])
    assert r.exit_code == 1, r.output
    rows = _rows(tmp_path / "o")
    assert len(rows) == 4 and all(row["status"] == "failed" for row in rows)
    assert all("RecipeMismatch: split.folds is 9 but the data has only 4 speakers" in row["error"] for row in rows)
    assert "encoding phase" not in r.output and not list((tmp_path / "cache").glob("lld*"))
