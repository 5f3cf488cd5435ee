"""Reading a run or grid folder for its report, with one clear error naming the file and the reason."""

from __future__ import annotations

import csv
import json
from pathlib import Path


class ReportError(ValueError):
    """A folder that cannot be reported on; the message names the file and the reason."""


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_metrics(run_dir: Path) -> dict:
    """metrics.json of a finished run, checked for the fields a report needs."""
    m = read_json(run_dir / "metrics.json")
    missing = [k for k in ("recipe", "summary", "folds", "protocol", "n_clips") if k not in m]
    if missing:
        raise ReportError(f"{run_dir / 'metrics.json'}: not a run's metrics (no {', '.join(missing)})")
    m.setdefault("skipped", [])
    m.setdefault("embeddings", {"computed": 0, "cached": 0})
    return m


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


NUMERIC = ("uar", "uar_std", "wa", "macro_f1", "weighted_f1", "encode_s", "fit_s", "peak_mb", "vs_best", "vs_best_low",
           "vs_best_high")


def read_grid_rows(grid_dir: Path) -> list[dict]:
    """The cells of a grid folder from its results.csv; numeric fields as floats (None when empty)."""
    path = grid_dir / "results.csv"
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError as exc:
        raise ReportError(f"{path}: missing") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReportError(f"{path}: unreadable ({exc})") from exc
    if rows and not {"cell", "dataset", "status", "uar"} <= set(rows[0]):
        raise ReportError(f"{path}: not a grid's results (needs the columns cell, dataset, status, uar)")
    for row in rows:
        for key in NUMERIC:
            try:
                row[key] = float(row[key]) if row.get(key) not in (None, "") else None
            except ValueError as exc:
                raise ReportError(f"{path}: cell {row.get('cell')}: {key} is not a number ({row[key]!r})") from exc
    return rows


def read_predictions(path: Path) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(clip id, seed) -> (true label, speaker, predicted label) of a classification run's predictions.csv; {} when
    it is missing, unreadable or a regression run's."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return {(row["clip_id"], row["seed"]): (row["true"], row["speaker"], row["predicted"])
                    for row in csv.DictReader(fh)}
    except (OSError, UnicodeDecodeError, KeyError, csv.Error):
        return {}
