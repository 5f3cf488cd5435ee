"""``fusionkit export`` and ``fusionkit predict``, and how predictions are printed (table, JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import click


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option("--fold", default="all", show_default=True,
              help="'all': refit the head on every clip; 'best': the best fold's head; or a fold number.")
def export_command(run_dir: Path, bundle_dir: Path, fold: str) -> None:
    """Write a self-contained model bundle from RUN_DIR (a finished `fusionkit run`)."""
    from fusionkit.bundle import export
    from fusionkit.recipe import RecipeError

    try:
        export(run_dir, bundle_dir, fold)
    except (RecipeError, ValueError, OSError, KeyError) as exc:
        click.echo(f"error: {run_dir}: cannot export: {exc}", err=True)
        sys.exit(1)
    m = json.loads((bundle_dir / "manifest.json").read_text())
    click.echo(f"bundle written to {bundle_dir} ({m['head']}; content hash {m['content_hash'][:12]})")


def _expand(paths) -> list[Path]:
    """Files as given; folders replaced by the audio files under them, sorted."""
    from fusionkit.windows import AUDIO_SUFFIXES

    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES)
        else:
            out.append(p)
    return out


@click.command("predict")
@click.argument("bundle", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("audio", nargs=-1, required=True)
@click.option("--window", type=float, help="Window length in seconds: label a timeline instead of whole files.")
@click.option("--hop", type=float, help="Hop between windows in seconds (default: the window).")
@click.option("--vad", is_flag=True, help="Label only speech regions found by voice activity detection (silero-vad).")
@click.option("--smooth", type=int, default=1, show_default=True,
              help="Average probabilities over this many neighbouring windows.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
def predict_command(bundle: Path, audio, window, hop, vad, smooth, fmt) -> None:
    """Label AUDIO files (or folders) with BUNDLE; with --window, a timeline per file."""
    from fusionkit.audio import AudioError
    from fusionkit.bundle import Bundle

    try:
        model = Bundle.load(bundle)
    except Exception as exc:  # noqa: BLE001
        click.echo(f"error: {bundle}: cannot load bundle: {exc}", err=True)
        sys.exit(2)
    results, failed = [], 0
    for path in _expand(audio):
        try:
            r = model.predict(path, window=window, hop=hop, vad=vad, smooth=smooth)
        except (AudioError, ValueError, OSError) as exc:
            click.echo(f"error: {path}: {exc}", err=True)
            failed += 1
            continue
        results.append((path, r))
        if fmt == "table":
            for line in table_lines(path, r):
                click.echo(line)
    if fmt == "json":
        click.echo(json.dumps([as_json(p, r) for p, r in results], indent=2))
    elif fmt == "csv":
        click.echo(as_csv(results, model), nl=False)
    if failed:
        click.echo(f"{failed} file(s) could not be labelled", err=True)
        sys.exit(1)


def as_json(path: Path, r) -> dict:
    """One file's result (a whole-file dict or a list of segments) as a JSON-ready dict."""
    if isinstance(r, dict):
        return {"file": str(path), **r}
    return {"file": str(path), "timeline": [s.as_dict() for s in r]}


def as_csv(results, model) -> str:
    """Every (path, result) as CSV: one row per file or window, a column per class probability or target."""
    from fusionkit.bundle import Segment

    buf = io.StringIO()
    w = csv.writer(buf)
    names = model.outputs
    text = ["text"] if model.uses_text else []
    w.writerow(["file", "start", "end", *([] if model.regression else ["label"]),
                *(names if model.regression else [f"p_{c}" for c in names]), *text])
    for path, r in results:
        segs = [Segment(0.0, -1.0, r.get("label"), r.get("probabilities"), r.get("text"), r.get("values"))] \
            if isinstance(r, dict) else r
        for s in segs:
            scores = s.values if model.regression else s.probabilities
            w.writerow([str(path), s.start, "" if s.end < 0 else s.end, *([] if model.regression else [s.label]),
                        *[f"{scores[c]:.4f}" for c in names], *([s.text or ""] if text else [])])
    return buf.getvalue()


def _values_text(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in values.items())


def table_lines(path: Path, r) -> list[str]:
    """One file's result for the terminal: its label and top scores, or one line per window."""
    if isinstance(r, dict):
        if "values" in r:
            return [f"{path}: {_values_text(r['values'])}"]
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        return [f"{path}: {r['label']}  ({_values_text(dict(top))})"]
    lines = [f"{path}: {len(r)} windows"]
    for s in r:
        what = _values_text(s.values) if s.values is not None else f"{s.label:<10} {s.probabilities[s.label]:.2f}"
        lines.append(f"  {s.start:8.2f} - {s.end:8.2f}  {what}" + (f"  \"{s.text}\"" if s.text else ""))
    return lines
