"""Self-contained HTML reports: report.html of a run or a grid, and a page comparing runs.

Each page is read from what a run or grid folder already holds, so old folders can be (re-)rendered.
"""

from __future__ import annotations

from pathlib import Path

from fusionkit.fileio import atomic_write_text
from fusionkit.report_html.reading import ReportError

__all__ = ["ReportError", "folder_kind", "write_compare_html", "write_grid_html", "write_report_html",
           "write_run_html"]


def write_run_html(run_dir: Path, metrics: dict | None = None) -> Path:
    """Write ``run_dir/report.html`` from the run's metrics.json (or ``metrics``), recipe.yaml and plots."""
    from fusionkit.report_html.run_page import run_html

    path = Path(run_dir) / "report.html"
    atomic_write_text(path, run_html(Path(run_dir), metrics))
    return path


def write_grid_html(grid_dir: Path) -> Path:
    """Write ``grid_dir/report.html`` from the grid's results.csv, heatmap and grid.json."""
    from fusionkit.report_html.grid_page import grid_html

    path = Path(grid_dir) / "report.html"
    atomic_write_text(path, grid_html(Path(grid_dir)))
    return path


def write_compare_html(run_dirs: list[Path], out: Path) -> Path:
    """Write the page comparing the runs ``run_dirs`` to ``out``."""
    from fusionkit.report_html.compare_page import compare_html

    atomic_write_text(Path(out), compare_html([Path(d) for d in run_dirs]))
    return Path(out)


def folder_kind(folder: Path) -> str:
    """``run`` (holds metrics.json) or ``grid`` (holds results.csv); ReportError naming the folder otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder}: not a folder")
    if (folder / "metrics.json").is_file():
        return "run"
    if (folder / "results.csv").is_file():
        return "grid"
    raise ReportError(f"{folder}: neither a run folder (metrics.json) nor a grid folder (results.csv)")


def write_report_html(folder: Path) -> Path:
    """(Re-)render report.html of a run or grid folder."""
    return write_run_html(folder) if folder_kind(folder) == "run" else write_grid_html(folder)
