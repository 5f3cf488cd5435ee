"""``fusionkit bench``: run a benchmark grid (the logic is in :mod:`fusionkit.bench`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from fusionkit.cli.engine import engine_options, resolve_engine
from fusionkit.cli.report import mlflow_option


def _progress(line: str) -> None:
    click.echo(line, err=True)


@click.command("bench")
@click.argument("grid", required=False, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Output folder (default bench-out/GRIDNAME).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a field of the base recipe.")
@click.option("--workers", type=int, default=None, help="Cells fitted in parallel (default: CPU count, at most 2).")
@click.option("--retry-failed", is_flag=True, help="Run failed cells again.")
@click.option("--report", "report_dir", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Only re-render results.csv/.md, report.html and the heatmap of a finished folder.")
@mlflow_option
@engine_options
def bench_command(grid: Path | None, out: Path | None, overrides: tuple[str, ...], workers: int | None,
                  retry_failed: bool, report_dir: Path | None, mlflow: str | None, **engine) -> None:
    """Run a benchmark GRID (encoders x fusion heads x datasets x seeds), resumably."""
    from fusionkit.bench import grid_engine, render, run_grid
    from fusionkit.recipe import RecipeError
    from fusionkit.tracking import TrackingError

    if report_dir:
        rows = render(report_dir)
        click.echo(f"{len(rows)} cells rendered into {report_dir}/results.md")
        return
    if grid is None:
        raise click.UsageError("give a GRID file, or --report DIR")
    out = out or Path("bench-out") / grid.stem
    try:
        spec = resolve_engine(grid_engine(grid, list(overrides)), **engine)
        rows = run_grid(grid, out, list(overrides), workers or min(2, os.cpu_count() or 1), retry_failed,
                        echo=_progress, mlflow=mlflow, engine=spec)
    except RecipeError as exc:
        for line in exc.lines:
            click.echo(f"error: {line}", err=True)
        sys.exit(2)
    except TrackingError as exc:
        click.echo(f"error: {'--mlflow' if mlflow is not None else 'tracking.mlflow'}: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo(f"error: {grid}: interrupted; no new cell was started and the running ones were stopped; "
                   f"finished cells are kept in {out}/cells and the same command runs the rest", err=True)
        sys.exit(130)
    done = [r for r in rows if r["status"] == "done"]
    click.echo((out / "results.md").read_text())
    failed = len(rows) - len(done)
    click.echo(f"{len(done)} cells done, {failed} failed; results in {out}/ "
               "(results.csv, results.md, report.html, uar_heatmap.png)")
    if failed:
        sys.exit(1)
