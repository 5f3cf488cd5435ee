"""``fusionkit report``: (re-)render report.html of run or grid folders, or one page comparing runs; and the
``--mlflow [URI]`` option that ``run`` and ``bench`` share."""

from __future__ import annotations

import sys
from pathlib import Path

import click

EXIT_INVALID = 2

mlflow_option = click.option(
    "--mlflow", "mlflow", is_flag=False, flag_value="", default=None, metavar="[URI]",
    help="Log to MLflow (the mlflow extra): a tracking URI or folder, default ./mlruns. Write --mlflow=URI, or "
         "--mlflow alone after the other arguments.")


def tracking_target(cli_uri: str | None, spec, default_experiment: str):
    """The MLflow target asked for by ``--mlflow`` or a tracking block, or None; one error line and exit 2 when
    the extra is not installed."""
    from fusionkit.tracking import TrackingError, target

    try:
        return target(cli_uri, spec, default_experiment)
    except TrackingError as exc:
        click.echo(f"error: --mlflow: {exc}" if cli_uri is not None else f"error: tracking.mlflow: {exc}", err=True)
        sys.exit(EXIT_INVALID)


def log_run_or_exit(run_dir: Path, where) -> None:
    """Log a finished run to MLflow; a failure is one error line and exit 1 (the run folder stays complete)."""
    from fusionkit.tracking import log_run

    try:
        run_id = log_run(run_dir, where)
    except Exception as exc:  # noqa: BLE001 - the tracking store's own errors, as one line
        click.echo(f"error: MLflow ({where.uri}): {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    click.echo(f"MLflow: run {run_id} in {where.uri} (experiment {where.experiment})")


@click.command("report")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="The comparison page of several run folders (default comparison.html).")
def report_command(dirs: tuple[Path, ...], out: Path | None) -> None:
    """(Re-)render DIR/report.html of a run or grid folder; with several run folders, one comparison page."""
    from fusionkit.report_html import ReportError, folder_kind, write_compare_html, write_report_html

    try:
        if len(dirs) == 1:
            if out is not None:
                raise click.UsageError("--out is for the comparison page of several run folders")
            click.echo(f"wrote {write_report_html(dirs[0])}")
            return
        for d in dirs:
            if folder_kind(d) != "run":
                raise ReportError(f"{d}: a grid folder; a comparison takes run folders (metrics.json)")
        click.echo(f"wrote {write_compare_html(list(dirs), out or Path('comparison.html'))}")
    except ReportError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)
