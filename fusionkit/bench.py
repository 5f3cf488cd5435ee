"""Benchmark grids: recipes over encoder sets x fusion heads x datasets x seeds (``fusionkit bench``).

Every (encoder, clip) pair is encoded once, before any head is fitted; cells then read the
cache. A finished cell is never run again, so an interrupted grid resumes where it stopped.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fusionkit.recipe import EngineSpec

log = logging.getLogger("fusionkit")
VERSUS_FIELDS = ["vs_best", "vs_best_low", "vs_best_high"]  # results.csv: UAR minus the best cell's, 95% interval
ROW_FIELDS = ["cell", "dataset", "encoders", "head", "seeds", "status", "uar", "uar_std", "wa", "macro_f1",
              "weighted_f1", "n_clips", "folds", "computed", "encode_s", "fit_s", "peak_mb", "error"]


@dataclass
class Cell:
    id: str
    dataset: str
    encoders: str
    head: str
    seeds: str
    recipe: dict  # raw recipe, validated before anything runs


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", s).strip("-")[:60] or "x"


def _label(item: dict, fallback: str) -> str:
    return str(item.get("name") or fallback)


def is_grid(ref: str) -> bool:
    """Whether ``ref`` names a grid file (a mapping with ``base`` and ``axes``) rather than a recipe."""
    from fusionkit.recipe import RecipeError, read_yaml

    path = Path(ref)
    if not path.is_file():
        return False
    try:
        raw = read_yaml(path)
    except RecipeError:
        return False  # the recipe loader names the problem
    return isinstance(raw, dict) and "base" in raw and "axes" in raw


def load_grid(path: Path, overrides: list[str]) -> tuple[str, list[Cell]]:
    """Expand a grid file into cells; raise RecipeError listing every problem of every cell.

    The grid is read as a recipe is (:func:`fusionkit.recipe.read_yaml`): safe types only, repeated keys,
    deep nesting and oversized files refused with the line."""
    from fusionkit.recipe import RecipeError

    grid, base = _read_grid(path, overrides)
    base.pop("tracking", None)  # the grid tracks its cells (grid_tracking); a cell's id does not depend on it
    base.pop("engine", None)  # where cells run (grid_engine) changes neither a cell's id nor its results
    blocks = grid.get("axes") or {}
    blocks = blocks if isinstance(blocks, list) else [blocks]  # a list of axis blocks: the union of their products
    cells, problems, seen = [], [], set()
    for axes in blocks:
        for cell in _expand_block(path, base, axes, problems):
            if cell.id not in seen:
                seen.add(cell.id)
                cells.append(cell)
    if problems:
        from fusionkit.pipeline.preflight import grouped_lines

        raise RecipeError(grouped_lines(path, problems))
    return str(grid.get("name") or path.stem), cells


def _read_grid(path: Path, overrides: list[str]) -> tuple[dict, dict]:
    """(the grid file's mapping, its base recipe's raw mapping with ``overrides`` applied)."""
    from fusionkit.recipe import RecipeError, load_raw, read_yaml, resolve_recipe_path

    grid = read_yaml(path)
    if not isinstance(grid, dict) or "base" not in grid:
        raise RecipeError([f"{path}: a grid is a mapping with 'base' (a recipe file) and 'axes'"])
    base_ref = grid["base"]
    if not isinstance(base_ref, str) or not base_ref:
        raise RecipeError([f"{path}: base: expected the path of a recipe file, got {type(base_ref).__name__}"])
    base_path = (path.parent / base_ref) if not Path(base_ref).is_absolute() else Path(base_ref)
    return grid, load_raw(resolve_recipe_path(base_path if base_path.exists() else base_ref), overrides)


def grid_tracking(path: Path, overrides: list[str]) -> dict | None:
    """The grid's ``tracking.mlflow`` block (the grid file's own, else its base recipe's), validated; None when
    neither asks for tracking. Raise RecipeError naming the field of a malformed block."""
    from pydantic import ValidationError

    from fusionkit.recipe import RecipeError, TrackingSpec, pydantic_lines

    grid, base = _read_grid(path, overrides)
    block = grid["tracking"] if "tracking" in grid else base.get("tracking")
    try:
        spec = TrackingSpec.model_validate(block) if block is not None else None
    except ValidationError as exc:
        raise RecipeError(pydantic_lines(str(path), exc, ("tracking",))) from exc
    return spec.mlflow.model_dump() if spec is not None and spec.mlflow is not None else None


def grid_engine(path: Path, overrides: list[str]) -> EngineSpec | None:
    """The grid's ``engine`` block (the grid file's own, else its base recipe's) as an EngineSpec, or None.
    Raise RecipeError naming the field of a malformed block."""
    from pydantic import ValidationError

    from fusionkit.recipe import EngineSpec, RecipeError, pydantic_lines

    grid, base = _read_grid(path, overrides)
    block = grid["engine"] if "engine" in grid else base.get("engine")
    try:
        return EngineSpec.model_validate(block) if block is not None else None
    except ValidationError as exc:
        raise RecipeError(pydantic_lines(str(path), exc, ("engine",))) from exc


def _expand_block(path: Path, base: dict, axes: dict, problems: list[tuple[str, str]]) -> list[Cell]:
    """The cells of one block of axes; each cell's problems are added to ``problems`` as (cell name, problem)."""
    from fusionkit.recipe import RecipeError, validate

    if not isinstance(axes, dict):
        raise RecipeError([f"{path}: axes: expected a mapping (or a list of mappings) of axis -> values"])
    unknown = set(axes) - {"encoders", "fusion", "data", "seeds"}
    if unknown:
        raise RecipeError([f"{path}: axes.{sorted(unknown)[0]}: unknown axis (encoders, fusion, data, seeds)"])
    enc_values = axes.get("encoders") or [{"encoders": base.get("encoders")}]
    enc_axis = [{"name": e.get("name"), "encoders": e["encoders"]} if isinstance(e, dict) and "encoders" in e
                else {"name": None, "encoders": e} for e in enc_values]
    fusion_axis = axes.get("fusion") or [base.get("fusion")]
    data_axis = axes.get("data") or [base.get("data")]
    seed_axis = axes.get("seeds") or [base.get("seeds") or [base.get("seed", 0)]]
    cells = []
    for data in data_axis:
        for enc in enc_axis:
            for fusion in fusion_axis:
                for seeds in seed_axis:
                    raw = copy.deepcopy(base)
                    raw["data"] = {**(raw.get("data") or {}), **copy.deepcopy(data)}
                    raw["encoders"] = copy.deepcopy(enc["encoders"])
                    raw["fusion"] = {k: v for k, v in copy.deepcopy(fusion).items() if k != "name"}
                    raw["seeds"] = list(seeds) if isinstance(seeds, list) else [seeds]
                    enc_label = enc["name"] or "+".join(e.get("name") or e.get("plugin", "?") for e in enc["encoders"])
                    head_label = _label(fusion, fusion.get("plugin", "?"))
                    ds_label = _label(data, data.get("dataset", "?"))
                    seed_label = ",".join(map(str, raw["seeds"]))
                    raw["name"] = f"{ds_label}/{enc_label}/{head_label}"
                    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:8]
                    cid = f"{_slug(ds_label)}__{_slug(enc_label)}__{_slug(head_label)}__s{_slug(seed_label)}__{digest}"
                    source = f"{path} [{raw['name']}]"
                    _, errs = validate(raw, source)
                    problems += [(raw["name"], e.removeprefix(f"{source}: ")) for e in errs]
                    cells.append(Cell(cid, ds_label, enc_label, head_label, seed_label, raw))
    return cells


def _encoder_key(cell: Cell, e: dict) -> str:
    data_key = json.dumps(cell.recipe["data"], sort_keys=True, default=str)
    return data_key + "|" + json.dumps({"plugin": e["plugin"], "options": e.get("options") or {}}, sort_keys=True)


def _groups(cells: list[Cell]) -> dict[str, tuple[dict, dict]]:
    """data key -> (a recipe of that dataset, {encoder key: encoder spec}) over ``cells``.

    Each spec's ``name`` is what the grid calls that encoder, unique in its group: its own ``name:``, else its
    encoder set's name when the set holds it alone, else its plugin; a second encoder of the same name gets
    " #2" (and so on)."""
    by_data: dict[str, tuple[dict, dict]] = {}
    for cell in cells:
        data_key = json.dumps(cell.recipe["data"], sort_keys=True, default=str)
        encs = by_data.setdefault(data_key, (cell.recipe, {}))[1]
        alone = len(cell.recipe["encoders"]) == 1
        for e in cell.recipe["encoders"]:
            key = _encoder_key(cell, e)
            if key not in encs:
                name = str(e.get("name") or (cell.encoders if alone else "") or e["plugin"])
                taken = {spec["name"] for spec in encs.values()}
                unique, n = name, 1
                while unique in taken:
                    n += 1
                    unique = f"{name} #{n}"
                encs[key] = {**e, "name": unique}
    return by_data


def _group_recipe(template: dict, encs: dict, engine: EngineSpec | None = None) -> dict:
    """The recipe that encodes a group's clips with each of its encoders, named as the grid names them."""
    raw = copy.deepcopy(template)
    raw["encoders"] = [{"plugin": e["plugin"], "options": e.get("options") or {}, "name": e["name"]}
                       for e in encs.values()]
    if engine is not None:
        raw["engine"] = engine.model_dump()
    return raw


def encode_grid(cells: list[Cell], echo: Callable[[str], None] = log.warning,
                engine: EngineSpec | None = None) -> tuple[int, int]:
    """Fill the cache for every (dataset, encoder) of ``cells``, fitting nothing; (computed, cached)."""
    computed = cached = 0
    for template, encs in _groups(cells).values():
        raw = _group_recipe(template, encs, engine)
        embeddings = _encode_group(raw, echo)
        computed, cached = computed + embeddings["computed"], cached + embeddings["cached"]
    return computed, cached


def encode_all(cells: list[Cell], out: Path, echo: Callable[[str], None] = log.warning,
               engine: EngineSpec | None = None) -> dict:
    """Encode every distinct (dataset, encoder) once, before any head is fitted.

    Returns (and keeps in ``out/encode.json``) what each cell's row reports: ``caches`` maps an
    encoder of a cell to its embedding cache (encoders that differ only in layer or pooling share
    one), ``cost`` the seconds this grid run took to fill it, ``computed`` what this call encoded.
    An encoder (or a dataset) that fails here is one ``echo`` line; the cells that use it fail when run,
    each recording the reason, and the grid goes on.
    """
    from fusionkit.fileio import atomic_write_text
    from fusionkit.resources import peak_rss_mb

    path = out / "encode.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    if "caches" not in state:  # older layout: start afresh
        state = {"caches": {}, "cost": {}}
    state["computed"] = {}
    for data_key, (template, encs) in _groups(cells).items():
        raw = _group_recipe(template, encs, engine)
        try:
            embeddings = _encode_group(raw, echo)
        except Exception as exc:  # noqa: BLE001 - e.g. an unreadable corpus: its cells fail with the reason
            echo(f"encoding phase: {raw['data'].get('dataset', '?')}: {type(exc).__name__}: {exc}")
            continue
        for ekey, spec in encs.items():
            counts = embeddings["per_encoder"][spec["name"]]
            cache = data_key + "|" + counts["cache_key"]
            state["caches"][ekey] = cache
            if counts["computed"]:
                state["cost"][cache] = counts["seconds"]
            state["computed"][cache] = state["computed"].get(cache, 0) + counts["computed"]
    state["peak_mb"] = peak_rss_mb()
    atomic_write_text(path, json.dumps(state, indent=2))
    return state


def _encode_group(raw: dict, echo: Callable[[str], None]) -> dict:
    """Encode the clips of one dataset with every encoder of ``raw`` (named as the grid names them); return the
    counts.

    An encoder that fails as a whole, or on every clip, is one ``echo`` line naming it and the reason."""
    from collections import Counter

    from fusionkit.pipeline.data import select
    from fusionkit.pipeline.encode import encode_recipe
    from fusionkit.recipe import Recipe

    recipe = Recipe.model_validate(raw)
    selection = select(recipe)
    encoded = encode_recipe(recipe, selection.clips, isolate=True)
    for spec in raw["encoders"]:
        name = spec["name"]
        if selection.clips and not encoded.features.get(name):
            reasons = Counter(r for cid, r in encoded.skipped.items() if r.startswith(f"{name}: "))
            why = reasons.most_common(1)[0][0].removeprefix(f"{name}: ") if reasons else "no clip could be encoded"
            shown = name if name == spec["plugin"] else f"{name} (plugin {spec['plugin']})"
            echo(f"encoding phase: encoder {shown} failed on every clip of "
                 f"{raw['data'].get('dataset', '?')} ({why}); the cells using it will fail")
    return encoded.embeddings


def _cell_encoding(cell: Cell, state: dict) -> tuple[float, int]:
    """(seconds its embeddings took to compute, embeddings computed for it by this grid run)."""
    caches = {state["caches"].get(_encoder_key(cell, e)) for e in cell.recipe["encoders"]} - {None}
    seconds = sum(state["cost"].get(c, 0.0) for c in caches)
    return round(seconds, 1), sum(state["computed"].get(c, 0) for c in caches)


def run_cell(raw: dict, cell_dir: str, n_threads: int = 1) -> dict:
    """Run one cell in this (worker) process; return its row fields (status, metrics, time, memory)."""
    from fusionkit.resources import limit_threads, peak_rss_mb

    limit_threads(n_threads)  # before torch/xgboost are imported in this fresh process
    os.environ["FUSIONKIT_PROGRESS"] = "0"
    logging.getLogger("fusionkit").setLevel(logging.WARNING)
    from fusionkit.pipeline.run import run
    from fusionkit.recipe import Recipe

    try:
        recipe = Recipe.model_validate(raw)
        m = run(recipe, Path(cell_dir))
        row = {"status": "done", "uar": m["uar"], "uar_std": m["uar_std"], "wa": m["wa"], "macro_f1": m["macro_f1"],
               "weighted_f1": m["weighted_f1"], "n_clips": m["n_clips"],
               "folds": m["summary"]["uar"]["n"],  # the fold scores behind uar_std (a repeated seed counts once)
               "computed": m["embeddings"]["computed"], "fit_s": m["timing"]["fit_seconds"], "error": ""}
    except Exception as exc:  # noqa: BLE001 - a failed cell is recorded and the grid goes on
        row = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    row["peak_mb"] = peak_rss_mb()
    return row


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the grid process is gone (killed with SIGTERM or
    SIGKILL), instead of fitting a cell nobody will record."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="fusionkit-parent-watch").start()


def _worker_init(parent: int) -> None:
    """Worker initializer: Ctrl-C reaches the whole process group, but only the grid process acts on it (it
    terminates the workers); and a worker ends when the grid process is gone.

    A worker's progress bars (quiet in a cell) share a thread lock, not tqdm's default multiprocessing lock: that
    is a named semaphore, which a worker terminated mid-cell could not release, and multiprocessing's resource
    tracker would report it as leaked when the interrupted grid ends."""
    import signal
    import threading

    from tqdm import tqdm

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())
    _exit_with_parent(parent)


def _cell_file(out: Path, cell: Cell) -> Path:
    return out / "cells" / cell.id / "cell.json"


def run_grid(grid_path: Path, out: Path, overrides: list[str], workers: int, retry_failed: bool,
             echo: Callable[[str], None] = log.info, mlflow: str | None = None,
             engine: EngineSpec | None = None) -> list[dict]:
    """Run the cells of ``grid_path`` not finished in ``out`` and render the results; return every row.

    Progress lines (cells to run, the encoding time, failed cells) go to ``echo``. A grid with
    problems raises :class:`~fusionkit.recipe.RecipeError` before anything runs. With ``mlflow`` (a tracking URI,
    "" for the default) or a ``tracking`` block, the grid is logged to MLflow at the end (cells logged before are
    not logged again); without the extra, :class:`~fusionkit.tracking.TrackingError` before anything runs.
    ``engine`` (an EngineSpec; default: the grid's ``engine`` block, else local): with ray, the encoding phase
    runs in Ray actors and each cell is a Ray task (``workers`` is then the cluster's business).
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from fusionkit import tracking
    from fusionkit.engine import is_ray
    from fusionkit.progress import bar
    from fusionkit.resources import threads

    name, cells = load_grid(grid_path, overrides)
    engine = engine if engine is not None else grid_engine(grid_path, overrides)
    where = tracking.target(mlflow, grid_tracking(grid_path, overrides), name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.json").write_text(json.dumps({"name": name, "grid": str(grid_path), "overrides": overrides,
                                               "cells": [c.__dict__ for c in cells]}, indent=2, default=str))
    todo = []
    for cell in cells:
        status = (_cell_status(_cell_file(out, cell)) or {}).get("status")  # damaged: run the cell again
        if status == "done" or (status == "failed" and not retry_failed):
            continue
        todo.append(cell)
    echo(f"{name}: {len(cells)} cells, {len(cells) - len(todo)} already finished, {len(todo)} to run")
    for cell, error in _early_refusals(todo):  # fail at once, before their encoders are encoded for them
        todo.remove(cell)
        _record(out, cell, {"status": "failed", "error": error}, {"caches": {}, "cost": {}, "computed": {}}, echo)
    if todo and is_ray(engine):
        from fusionkit.engine.ray_engine import connect, run_tasks

        connect(engine)  # an unreachable cluster is one error before anything runs
        t = time.perf_counter()
        timings = encode_all(todo, out, echo, engine)
        echo(f"encoding phase: {time.perf_counter() - t:.1f} s")
        by_id = {c.id: c for c in todo}
        results = run_tasks(run_cell, [(c.id, c.recipe, str(out / "cells" / c.id)) for c in todo], engine)
        try:
            with bar(total=len(todo), desc=f"grid {name}", unit="cell") as progress:
                for cid, row in results:
                    _record(out, by_id[cid], row, timings, echo)
                    progress.update(1)
        finally:
            results.close()  # Ctrl-C or any error: the cells not finished are cancelled
    elif todo:
        t = time.perf_counter()
        timings = encode_all(todo, out, echo)
        echo(f"encoding phase: {time.perf_counter() - t:.1f} s")
        ctx = mp.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=1,
                                   initializer=_worker_init, initargs=(os.getpid(),))
        try:
            share = max(1, threads() // workers)
            futures = {pool.submit(run_cell, c.recipe, str(out / "cells" / c.id), share): c for c in todo}
            with bar(total=len(todo), desc=f"grid {name}", unit="cell") as progress:
                for fut in as_completed(futures):
                    cell = futures[fut]
                    try:
                        row = fut.result()
                    except Exception as exc:  # noqa: BLE001 - e.g. a worker killed by the OS
                        row = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                    _record(out, cell, row, timings, echo)
                    progress.update(1)
        except BaseException:  # Ctrl-C (KeyboardInterrupt) or anything else: start no new cell, end the workers
            stop_pool(pool)
            raise
        pool.shutdown(wait=True)
    rows = render(out)
    if where is not None:
        parent, new = tracking.log_grid(out, rows, name, where)
        echo(f"MLflow: grid run {parent} in {where.uri} (experiment {where.experiment}), {new} cell run(s) logged")
    return rows


def _early_refusals(cells: list[Cell]) -> list[tuple[Cell, str]]:
    """Cells a run would refuse before encoding (:func:`fusionkit.pipeline.preflight.cell_refusals`), with why, in
    the words run_cell records a failure in."""
    from fusionkit.pipeline.preflight import cell_refusals
    from fusionkit.recipe import Recipe

    by_id = {cell.id: cell for cell in cells}
    refused = cell_refusals([(cell.id, Recipe.model_validate(cell.recipe)) for cell in cells])
    return [(by_id[cid], f"{type(exc).__name__}: {exc}") for cid, _, exc in refused]


def _record(out: Path, cell: Cell, row: dict, timings: dict, echo: Callable[[str], None]) -> None:
    """Complete a finished cell's row and write its cell.json (atomically: a cell file is whole or absent)."""
    from fusionkit.fileio import atomic_write_text

    encode_s, computed = _cell_encoding(cell, timings)
    row.update(cell=cell.id, dataset=cell.dataset, encoders=cell.encoders, head=cell.head,
               seeds=cell.seeds, encode_s=encode_s, computed=row.get("computed", 0) + computed)
    atomic_write_text(_cell_file(out, cell), json.dumps(row, indent=2))
    if row["status"] != "done":
        echo(f"cell {cell.id} failed: {row['error']}")


def stop_pool(pool) -> None:
    """Cancel the cells not started and terminate the workers fitting one now (their cells stay unfinished,
    so the same command runs them again)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()


def collect(out: Path) -> list[dict]:
    """The rows of the cells finished in ``out``; a cell file that cannot be read is left out with a warning
    (running the grid again redoes that cell)."""
    rows = []
    for f in sorted((out / "cells").glob("*/cell.json")):
        row = _cell_status(f)
        if row is None:
            log.warning("%s: unreadable, left out of the tables; running the grid again redoes this cell", f)
            continue
        rows.append({k: row.get(k, "") for k in ROW_FIELDS})
    return rows


def _cell_status(path: Path) -> dict | None:
    """A cell file's content; None when it is missing, damaged or not a cell's record."""
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and "status" in row else None


def render(out: Path) -> list[dict]:
    """Write results.csv, results.md and uar_heatmap.png from the finished cells in ``out``."""
    from fusionkit.fileio import atomic_write_text

    rows = collect(out)
    best = {}
    for r in rows:
        if r["status"] == "done" and (r["dataset"] not in best or r["uar"] > best[r["dataset"]]["uar"]):
            best[r["dataset"]] = r
    compared = _versus_best(out, rows, best)
    for r in rows:
        d = compared.get(r["cell"])
        r.update(zip(VERSUS_FIELDS, [d["diff"], *d["ci95"]] if d else ["", "", ""]))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*ROW_FIELDS, *VERSUS_FIELDS])
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "results.csv", buf.getvalue())
    versus = {cell: f"{d['diff']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d else "-"
              for cell, d in compared.items()}
    columns = ["dataset", "encoders", "head", "seeds", "folds", "UAR", "± std", "vs best [95% CI]", "WA", "macro F1",
               "weighted F1", "embeddings computed", "encode s", "fit s", "peak MB"]
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], -(r["uar"] if r["status"] == "done" else -1))):
        if r["status"] != "done":
            empty = "|" * (len(columns) - 6)  # the cells after "failed: ..." (the sixth column)
            lines.append(f"| {r['dataset']} | {r['encoders']} | {r['head']} | {r['seeds']} | "
                         f"| failed: {r['error'][:80]} |{empty}")
            continue
        b = "**" if best.get(r["dataset"]) is r else ""
        lines.append(f"| {r['dataset']} | {b}{r['encoders']}{b} | {b}{r['head']}{b} | {r['seeds']} | {r['folds']} | "
                     f"{b}{r['uar']:.3f}{b} | {r['uar_std']:.3f} | {versus.get(r['cell'], '')} | {r['wa']:.3f} | "
                     f"{r['macro_f1']:.3f} | "
                     f"{r['weighted_f1']:.3f} | {r['computed']} | {r['encode_s']} | {r['fit_s']} | {r['peak_mb']} |")
    lines += ["", "Best cell per dataset (by UAR) in bold. UAR, WA, F1: mean over the protocol's folds "
              "(speaker-independent where the corpus allows; one fold for a predefined split) and seeds; "
              "± std: over them (0 for one fold). "
              "vs best: the cell's pooled UAR minus the best cell's on the same test clips, with a 95% interval "
              "from 2000 bootstrap resamples of whole test speakers; an interval that holds 0 means these "
              "predictions cannot tell the cell from the best (- where the two cells did not label the same clips). "
              "Embeddings computed: by this grid run for the cell's encoders (0 when the cache had them all); "
              "encode s: the seconds this grid run spent computing them; peak MB: the cell's own process.", "",
              "![UAR heatmap](uar_heatmap.png)", ""]
    atomic_write_text(out / "results.md", "\n".join(lines))
    if any(r["status"] == "done" for r in rows):
        heatmap([r for r in rows if r["status"] == "done"], out / "uar_heatmap.png")
    from fusionkit.report_html import write_grid_html

    write_grid_html(out)
    return rows


def _versus_best(out: Path, rows: list[dict], best: dict[str, dict]) -> dict[str, dict | None]:
    """Per done cell but the best: its pooled UAR minus its dataset's best cell's, on the test clips (and seeds) both
    labelled, with a speaker-bootstrap 95% interval (:func:`fusionkit.metrics.paired_uar_difference`); None where the
    two cells did not label (nearly) the same clips."""
    from fusionkit.metrics import paired_uar_difference
    from fusionkit.report_html.reading import read_predictions

    text: dict[str, dict | None] = {}
    for dataset, top in best.items():
        mine = read_predictions(out / "cells" / top["cell"] / "predictions.csv")
        for r in rows:
            if r["status"] == "done" and r["dataset"] == dataset and r is not top:
                theirs = read_predictions(out / "cells" / r["cell"] / "predictions.csv")
                text[r["cell"]] = paired_uar_difference(theirs, mine)
    return text


def heatmap(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(1 + 6 * len(datasets), 1.5 + 0.5 * max(
        len({r["encoders"] for r in rows if r["dataset"] == d}) for d in datasets)), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        sub = [r for r in rows if r["dataset"] == d]
        encs = sorted({r["encoders"] for r in sub})
        heads = sorted({r["head"] for r in sub})
        grid = np.full((len(encs), len(heads)), np.nan)
        for r in sub:  # several seeds' cells: mean
            i, j = encs.index(r["encoders"]), heads.index(r["head"])
            grid[i, j] = r["uar"] if np.isnan(grid[i, j]) else (grid[i, j] + r["uar"]) / 2
        im = ax.imshow(grid, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(heads)), heads, rotation=45, ha="right")
        ax.set_yticks(range(len(encs)), encs)
        bi, bj = np.unravel_index(np.nanargmax(grid), grid.shape)
        for i in range(len(encs)):
            for j in range(len(heads)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=8,
                            color="black" if grid[i, j] > np.nanmean(grid) else "white",
                            fontweight="bold" if (i, j) == (bi, bj) else "normal")
        ax.add_patch(plt.Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, ec="red", lw=2))
        ax.set_title(f"{d}: UAR (best boxed)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

