"""The ``fusionkit`` group and its validate, run, plugins and cache commands.

bench, export and predict live in :mod:`fusionkit.cli.bench` and :mod:`fusionkit.cli.bundle`.
Heavy imports happen inside commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from fusionkit import __version__
from fusionkit.cli.bench import bench_command
from fusionkit.cli.bundle import export_command, predict_command
from fusionkit.cli.engine import encode_command, engine_options, resolve_engine
from fusionkit.cli.report import log_run_or_exit, mlflow_option, report_command, tracking_target
from fusionkit.cli.serve import serve_command
from fusionkit.cli.tables import plugin_table, results_table, size_text, survey_lines

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s: %(message)s" if verbose else "%(message)s",
        stream=sys.stderr,
    )
    for noisy in ("numba", "matplotlib", "urllib3", "filelock", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(lines, code: int) -> None:
    for line in lines:
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


def _registry_or_exit():
    from fusionkit.registry import PluginError, registry

    try:
        return registry()
    except PluginError as exc:
        _fail([str(exc)], EXIT_INVALID)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fusionkit")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging; show tracebacks of unexpected errors.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Speech emotion recognition by fusing audio and text encoders.

    \b
    fusionkit run demo                      the built-in demo, offline
    fusionkit run RECIPE.yaml --set data.root=PATH
    fusionkit validate RECIPE.yaml          check a recipe without running it
    fusionkit plugins list                  every encoder, fusion head and dataset
    """
    from fusionkit.resources import keep_freed_memory, quick_shutdown

    ctx.obj = {"verbose": verbose}
    _setup_logging(verbose)
    keep_freed_memory()
    quick_shutdown()


set_option = click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                          help="Override a recipe field, e.g. --set data.root=../corpus (repeatable).")


def _load(recipe: str, overrides):
    from fusionkit.recipe import RecipeError, load_recipe

    _registry_or_exit()
    try:
        return load_recipe(recipe, list(overrides))
    except RecipeError as exc:
        _fail(exc.lines, EXIT_INVALID)


@main.command()
@click.argument("recipe")
@set_option
@click.option("--no-models", is_flag=True,
              help="Check the recipe's text only: do not look up the encoders' models (their layers) nor read "
                   "and split the corpus.")
def validate(recipe: str, overrides, no_models: bool) -> None:
    """Check RECIPE (a file, a built-in name, or a benchmark grid) without running it. Exit 0 if valid, 2 if not.

    Each encoder's model is looked up (its config, not its weights) to check the layers the recipe names, and the
    corpus is read and split as a run would split it."""
    from fusionkit.bench import is_grid
    from fusionkit.pipeline.preflight import data_problems, recipe_problems

    if is_grid(recipe):
        return _validate_grid(Path(recipe), overrides, no_models)
    r = _load(recipe, overrides)
    problems = [] if no_models else recipe_problems(recipe, r)
    if problems:
        _fail(problems, EXIT_INVALID)
    surveys = _surveys(recipe, r)
    problems = [] if no_models else data_problems(recipe, r)
    if problems:
        _fail(problems, EXIT_INVALID)
    click.echo(f"{recipe}: valid ({r.data.dataset}; encoders {', '.join(e.key for e in r.encoders)}; "
               f"fusion {r.fusion.plugin}; split {r.split.kind})")
    for role, spec, found in surveys:
        for line in survey_lines(role, found, spec.labels):
            click.echo(line)


def _validate_grid(path: Path, overrides, no_models: bool) -> None:
    """Every cell of a grid checked as ``bench`` would before running (and each distinct encoder's model)."""
    from fusionkit.bench import load_grid
    from fusionkit.pipeline.preflight import grid_problems
    from fusionkit.recipe import RecipeError

    _registry_or_exit()
    try:
        name, cells = load_grid(path, list(overrides))
    except RecipeError as exc:
        _fail(exc.lines, EXIT_INVALID)
    problems = [] if no_models else grid_problems(path, cells)
    if problems:
        _fail(problems, EXIT_INVALID)
    count = lambda attr: len({getattr(c, attr) for c in cells})  # noqa: E731
    click.echo(f"{path}: valid grid '{name}' ({len(cells)} cells: {count('dataset')} dataset(s), "
               f"{count('encoders')} encoder set(s), {count('head')} head(s), {count('seeds')} seed set(s))")


def _surveys(recipe: str, r) -> list:
    """(role, data spec, survey) of each corpus whose dataset can survey its folder (e.g. ``folders``).

    A corpus that cannot be read, or where no audio file can be placed, is one line and exit 2.
    """
    from fusionkit.pipeline.data import load_dataset

    out = []
    for role, spec in (("data", r.data), ("test_data", r.test_data)):
        dataset = load_dataset(r, spec) if spec is not None else None
        if not hasattr(dataset, "survey"):
            continue
        try:
            found = dataset.survey()
        except (ValueError, OSError) as exc:
            _fail([f"{recipe}: {role}.root: {exc}"], EXIT_INVALID)
        if not found.clips:
            first = f": e.g. {found.unplaced[0][0]}: {found.unplaced[0][1]}" if found.unplaced else ""
            _fail([f"{recipe}: {role}.root: no audio file could be placed ({len(found.unplaced)} file(s){first})"],
                  EXIT_INVALID)
        out.append((role, spec, found))
    return out


@main.command()
@click.argument("recipe")
@set_option
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Run directory (default runs/NAME-TIMESTAMP).")
@mlflow_option
@engine_options
def run(recipe: str, overrides, out: Path | None, mlflow: str | None, **engine) -> None:
    """Run RECIPE: encode (cached), fit the fusion head per fold, write metrics and a report."""
    r = _load(recipe, overrides)
    r.engine = resolve_engine(r.engine, **engine)
    tracked = tracking_target(mlflow, r.tracking.mlflow if r.tracking else None, r.name)
    from fusionkit.pipeline.folds import FoldWorkerError
    from fusionkit.pipeline.preflight import RecipeMismatch
    from fusionkit.pipeline.run import default_run_dir
    from fusionkit.pipeline.run import run as do_run
    from fusionkit.registry import PluginError

    try:
        out = out or default_run_dir(r)
        metrics = do_run(r, out, recipe)
    except KeyboardInterrupt:
        kept = f" and every fold fitted so far is in {out}: the same command with --out {out}" if out else \
            ": the same command"
        _fail([f"{recipe}: interrupted; every embedding written so far is in the cache{kept} resumes where this one "
               f"stopped"], EXIT_INTERRUPTED)
    except RecipeMismatch as exc:  # found before encoding: what validate reports
        _fail([f"{recipe}: {exc}"], EXIT_INVALID)
    except (ValueError, OSError, PluginError, FoldWorkerError) as exc:
        _fail([f"{recipe}: {exc}"], EXIT_FAILED)
    except Exception as exc:  # noqa: BLE001 - one line unless -v asks for the traceback
        if (click.get_current_context().find_root().obj or {}).get("verbose"):
            raise
        _fail([f"{recipe}: unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)"], EXIT_FAILED)
    emb = metrics["embeddings"]
    n_folds = len(metrics["folds"])
    click.echo(f"\n{r.name}: {metrics['n_clips']} clips, {n_folds} fold{'' if n_folds == 1 else 's'}, "
               f"{len(metrics['skipped'])} skipped; embeddings {emb['computed']} computed, {emb['cached']} cached")
    for line in _left_out_lines(metrics):
        click.echo(line)
    click.echo(results_table(metrics))
    written = [f for f in ("metrics.json", "predictions.csv", "report.md", "report.html", "confusion.png",
                           "scatter.png") if (Path(out) / f).exists()]
    click.echo(f"outputs in {out}/ ({', '.join(written)})")
    if tracked is not None:
        log_run_or_exit(out, tracked)


def _left_out_lines(metrics: dict, shown: int = 5) -> list[str]:
    """The run summary's lines on what was not used: skipped files and clips (the first few), clips left out by
    label per corpus."""
    skipped = metrics.get("skipped") or []
    lines = [f"skipped: {s['clip']}: {s['reason']}" for s in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"skipped: ... and {len(skipped) - shown} more (metrics.json, report.md)")
    labels = (metrics.get("protocol") or {}).get("labels") or {}
    for role in ("data", "test_data"):
        excluded = (labels.get(role) or {}).get("excluded") or {}
        if excluded:
            lines.append(f"left out of {role} by label: " + ", ".join(f"{k} {n}" for k, n in excluded.items()))
    return lines


@main.group()
def plugins() -> None:
    """Inspect installed plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_list(as_json: bool) -> None:
    """Every plugin: kind, status (installed / not installed / broken / blocked), origin."""
    from fusionkit.registry import plugin_rows

    rows = plugin_rows(_registry_or_exit())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for line in plugin_table(rows):
        click.echo(line)


@main.group("cache")
def cache_group() -> None:
    """Inspect or clean the embedding cache."""


cache_dir_option = click.option(
    "--dir", "cache_dir", type=click.Path(file_okay=False, path_type=Path),
    help="Cache folder (default: $FUSIONKIT_CACHE_DIR, else the user cache dir).")


def _cache_root(cache_dir: Path | None) -> Path:
    from fusionkit.fileio import default_cache_dir

    return cache_dir or default_cache_dir()


@cache_group.command("info")
@cache_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cache_info(cache_dir: Path | None, as_json: bool) -> None:
    """Where the cache is, and per folder: the plugin, entries, size, stray temporary files."""
    from fusionkit.pipeline.cache import cache_report

    root = _cache_root(cache_dir)
    rows = cache_report(root)
    if as_json:
        click.echo(json.dumps({"dir": str(root), "folders": rows}, indent=2))
        return
    click.echo(f"cache: {root}" + ("" if root.is_dir() else " (does not exist yet)"))
    if not rows:
        return
    width = max(len(r["folder"]) for r in rows)
    for r in rows:
        tmp = f", {r['stray_tmp']} stray .tmp" if r["stray_tmp"] else ""
        click.echo(f"  {r['folder']:<{width}}  {r['entries']:>7} entries  {size_text(r['bytes']):>9}{tmp}")
    total = sum(r["bytes"] for r in rows)
    click.echo(f"  total {size_text(total)}; delete a folder to drop it (it is rebuilt when needed)")


@cache_group.command("clean")
@cache_dir_option
@click.option("--min-age", type=float, default=3600.0, show_default=True,
              help="Only files older than this many seconds (protects runs in progress).")
def cache_clean(cache_dir: Path | None, min_age: float) -> None:
    """Delete temporary files left by interrupted writes (never a finished entry)."""
    from fusionkit.pipeline.cache import remove_stray_tmp

    root = _cache_root(cache_dir)
    removed, kept = remove_stray_tmp(root, min_age)
    younger = (f"; kept {kept} younger than {min_age:g} s (a run may still be writing it; --min-age 0 removes "
               f"it)" if kept else "")
    click.echo(f"{root}: removed {removed} stray temporary file(s){younger}")


main.add_command(bench_command, "bench")
main.add_command(encode_command, "encode")
main.add_command(export_command, "export")
main.add_command(predict_command, "predict")
main.add_command(serve_command, "serve")
main.add_command(report_command, "report")

if __name__ == "__main__":  # pragma: no cover
    main()
