"""``fusionkit export`` and ``fusionkit predict``, and how predictions are printed (table, JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import click

from fusionkit.cli.inputs import expand_audio_paths
from fusionkit.cli.serve import device_option

EXIT_INVALID = 2


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option("--fold", default="all", show_default=True,
              help="'all': refit the head on every clip; 'best': the best fold's head; or a fold number.")
@click.option("--onnx", "with_onnx", is_flag=True,
              help="Also write ONNX graphs of the encoders and head that have an export (for --runtime onnx).")
def export_command(run_dir: Path, bundle_dir: Path, fold: str, with_onnx: bool) -> None:
    """Write a self-contained model bundle from RUN_DIR (a finished `fusionkit run`)."""
    from fusionkit.bundle import ExportError, export
    from fusionkit.recipe import RecipeError

    fold = fold.strip().lower()
    if fold not in ("all", "best") and not re.fullmatch(r"\d+", fold):
        _refuse(f"--fold {fold}: expected all, best or a fold number (0, 1, ...)")
    try:
        export(run_dir, bundle_dir, fold)
    except ExportError as exc:
        _refuse(f"{run_dir}: cannot export: {exc}")
    except RecipeError as exc:
        _fail([f"{run_dir}: cannot export: {line}" for line in exc.lines], 1)
    except (ValueError, OSError, KeyError) as exc:
        _fail([f"{run_dir}: cannot export: {_one_line(exc)}"], 1)
    onnx_lines = _with_onnx(bundle_dir) if with_onnx else []
    m = json.loads((bundle_dir / "manifest.json").read_text())  # after the ONNX graphs: the final hash
    click.echo(f"bundle written to {bundle_dir} ({m['head']}; content hash {m['content_hash'][:12]})")
    for line in onnx_lines:
        click.echo(line)


def _with_onnx(bundle_dir: Path) -> list[str]:
    """Write the ONNX graphs the command asked for (:func:`fusionkit.cli.serve.export_onnx_lines`); when that fails,
    the bundle just written is removed, so a failed ``export --onnx`` leaves no bundle that looks finished."""
    import shutil

    from fusionkit.cli.serve import export_onnx_lines

    try:
        return export_onnx_lines(bundle_dir)
    except BaseException:
        shutil.rmtree(bundle_dir, ignore_errors=True)
        raise


def _fail(lines: list[str], code: int) -> None:
    for line in lines:
        click.echo(f"error: {line}", err=True)
    sys.exit(code)


def _refuse(line: str) -> None:
    """One line about invalid input, exit 2."""
    _fail([line], EXIT_INVALID)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@click.command("predict")
@click.argument("bundle", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("audio", nargs=-1)
@click.option("--window", type=float, help="Window length in seconds: label a timeline instead of whole files.")
@click.option("--hop", type=float, help="Hop between windows in seconds (default: the window).")
@click.option("--vad", is_flag=True, help="Label only speech regions found by voice activity detection (silero-vad).")
@click.option("--smooth", type=int, default=1, show_default=True,
              help="Average probabilities over this many neighbouring windows.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--show", is_flag=True,
              help="List what BUNDLE loads (encoders, models, weights digests, head, classes) without loading it.")
@click.option("--trust-remote-code", is_flag=True,
              help="Allow a bundle whose recipe asks for trust_remote_code to run code shipped with its models.")
@click.option("--enrol", "enrol", multiple=True,
              help="Unlabelled audio (a folder or files; repeatable) of the speaker or source being labelled: a "
                   "normalised bundle z-scores features with its statistics.")
@click.option("--enrol-self", is_flag=True, help="Normalise with the statistics of the files being labelled.")
@click.option("--group-by", metavar="REGEX",
              help="With --enrol-self: the first group of REGEX, searched in each file's path, names its speaker or "
                   "source; each group is normalised with its own statistics.")
@click.option("--enrol-training", is_flag=True,
              help="Normalise with the training corpus statistics stored in the bundle (only for audio from the "
                   "training corpus's own source).")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="onnx: run the graphs written by export --onnx with onnxruntime.")
@device_option
def predict_command(bundle: Path, audio, window, hop, vad, smooth, fmt, show, trust_remote_code, enrol, enrol_self,
                    group_by, enrol_training, runtime, device) -> None:
    """Label AUDIO files (or folders) with BUNDLE; with --window, a timeline per file."""
    from fusionkit.audio import AudioError
    from fusionkit.cli.serve import load_for_runtime
    from fusionkit.recipe import RecipeError
    from fusionkit.windows import window_problem

    problem = window_problem(window, hop, smooth, prefix="--") or _timeline_only(window, hop, smooth, vad)
    if problem:
        _refuse(problem)
    if show:
        _show(bundle, fmt)
        return
    if not audio:
        _refuse("no AUDIO given: name the files or folders to label (or use --show)")
    group_re = _enrol_options_problem(enrol, enrol_self, group_by, enrol_training)
    try:
        model = load_for_runtime(bundle, runtime, trust_remote_code, device)
    except RecipeError as exc:
        _fail([f"{bundle}: cannot load bundle: {line}" for line in exc.lines], EXIT_INVALID)
    except Exception as exc:  # noqa: BLE001
        _refuse(f"{bundle}: cannot load bundle: {_one_line(exc)}")
    _check_enrolment(model, bool(enrol or enrol_self or enrol_training))
    files, broken, passed = expand_audio_paths(audio)
    for path, reason in passed:
        click.echo(f"skipped: {path}: {reason}", err=True)
    for path, reason in broken:
        click.echo(f"error: {path}: {reason}", err=True)
    norms, unenrolled = _plan_normalisers(model, files, enrol, enrol_self, group_re, enrol_training)
    results, failed, flagged, empty = [], len(broken) + unenrolled, 0, 0
    for path in files:
        if path not in norms:
            continue  # its enrolment group could not be used: already counted and reported
        try:
            r = model.predict(path, window=window, hop=hop, vad=vad, smooth=smooth, enrol=norms[path])
        except (AudioError, ValueError, OSError) as exc:
            click.echo(f"error: {path}: {exc}", err=True)
            failed += 1
            continue
        if isinstance(r, list) and not r:
            click.echo(f"warning: {path}: {_no_windows(vad)}; not labelled", err=True)
            empty += 1
            continue
        results.append((path, r))
        if isinstance(r, dict) and r.get("warning"):
            meaning = "its values mean little" if model.regression else "its label means little"
            click.echo(f"warning: {path}: {r['warning']}: {meaning}", err=True)
            flagged += 1
        if fmt == "table":
            for line in table_lines(path, r):
                click.echo(line)
    if fmt == "json":
        click.echo(json.dumps([as_json(p, r) for p, r in results], indent=2))
    elif fmt == "csv":
        click.echo(as_csv(results, model), nl=False)
    _finish(len(results), len(passed), flagged, empty, failed, vad)


def _timeline_only(window, hop, smooth, vad: bool) -> str | None:
    """--hop or --smooth given where no timeline is asked for (no --window nor --vad): why, or None."""
    from fusionkit.windows import timeline_only_problem

    source = click.get_current_context().get_parameter_source("smooth")
    given = {**({"--hop": hop} if hop is not None else {}),
             **({"--smooth": smooth} if source is not click.core.ParameterSource.DEFAULT else {})}
    return timeline_only_problem(given, window is not None or vad, "--window (or --vad)")


def _no_windows(vad: bool) -> str:
    """Why a timeline came back empty."""
    return "no speech found (--vad)" if vad else "no window could be labelled"


def _finish(labelled: int, passed: int, flagged: int, empty: int, failed: int, vad: bool) -> None:
    """The counts on stderr; exit 1 when a file could not be labelled or none was."""
    if passed:
        many = "y" if passed == 1 else "ies"
        click.echo(f"{passed} entr{many} passed over (each listed above with the reason)", err=True)
    if flagged:
        click.echo(f"{flagged} file(s) labelled with a warning (silent or very short audio)", err=True)
    if empty:
        click.echo(f"{empty} file(s) not labelled: {_no_windows(vad)}", err=True)
    if failed:
        click.echo(f"{failed} file(s) could not be labelled", err=True)
    if not labelled:
        click.echo("error: no file could be labelled", err=True)
    if failed or not labelled:
        sys.exit(1)


def _enrol_options_problem(enrol, enrol_self: bool, group_by: str | None, enrol_training: bool):
    """Refuse (exit 2) enrolment options that do not go together; the compiled --group-by pattern or None."""
    chosen = [name for name, on in (("--enrol", bool(enrol)), ("--enrol-self", enrol_self),
                                    ("--enrol-training", enrol_training)) if on]
    if len(chosen) > 1:
        _refuse(f"{' and '.join(chosen)}: choose one source of normalisation statistics")
    if group_by is None:
        return None
    if not enrol_self:
        _refuse("--group-by: only with --enrol-self (it groups the files being labelled)")
    try:
        pattern = re.compile(group_by)
    except re.error as exc:
        _refuse(f"--group-by {group_by}: not a valid regular expression ({exc})")
    if pattern.groups < 1:
        _refuse(f"--group-by {group_by}: needs a group in parentheses naming the speaker or source, "
                r"e.g. 'Actor_(\d+)'")
    return pattern


def _check_enrolment(model, given: bool) -> None:
    """A normalised bundle needs enrolment and a plain one takes none: else one line, exit 2."""
    if model.normalize != "none" and not given:
        _refuse(model.enrolment_hint())
    if model.normalize == "none" and given:
        _refuse(f"{model.root}: this bundle was trained with normalize: none; --enrol, --enrol-self and "
                "--enrol-training do not apply to it")


def _plan_normalisers(model, files: list[Path], enrol, enrol_self: bool, group_re, enrol_training: bool
                      ) -> tuple[dict, int]:
    """(file -> the Normaliser to label it with, or None for a plain bundle; how many files will not be labelled
    because their group could not be normalised, each with an error line). Enrolment files passed over are warning
    lines; too few usable ones for --enrol ends the command (exit 1)."""
    if model.normalize == "none":
        return {p: None for p in files}, 0
    if enrol_training:
        click.echo("normalising with the training corpus statistics stored in the bundle", err=True)
        return dict.fromkeys(files, model.training_normaliser()), 0
    if enrol:
        return dict.fromkeys(files, _enrol_paths(model, enrol)), 0
    return _enrol_groups(model, files, group_re)


def _warn_passed_over(items) -> int:
    """A warning line for each (enrolment file, why it was passed over); how many."""
    n = 0
    for path, reason in items:
        click.echo(f"warning: enrolment file passed over: {path}: {reason}", err=True)
        n += 1
    return n


def _count_passed_over(n: int) -> None:
    if n:
        click.echo(f"{n} enrolment file{'' if n == 1 else 's'} passed over (each listed above with the reason)",
                   err=True)


def _enrol_paths(model, enrol):
    """The Normaliser of the --enrol files (folders expanded). Files that cannot be used are passed over with a
    warning line each; too few usable ones is an error (exit 1)."""
    from fusionkit.bundle import EnrolmentError

    files, broken, passed = expand_audio_paths(enrol)
    for path, reason in passed:
        click.echo(f"skipped: enrolment: {path}: {reason}", err=True)
    n = _warn_passed_over(broken)
    if not files:
        _refuse(f"--enrol {' '.join(enrol)}: no audio files to enrol")
    try:
        norm = model.enrol(files, warn=False)
    except EnrolmentError as exc:
        _count_passed_over(n + _warn_passed_over(exc.skipped.items()))
        _fail([f"{_one_line(exc)}; nothing labelled"], 1)
    n += _warn_passed_over(norm.skipped.items())
    click.echo(f"enrolment: statistics of {norm.clips} clip(s)", err=True)
    _count_passed_over(n)
    return norm


def _enrol_groups(model, files: list[Path], group_re) -> tuple[dict, int]:
    """--enrol-self: each group of the files (all of them, or by the --group-by pattern) is its own enrolment set.
    (file -> its group's Normaliser; how many files are left out because their group could not be formed or
    enrolled, each with an error line.)"""
    from fusionkit.bundle import EnrolmentError

    groups: dict[str, list[Path]] = {}
    failed = 0
    for path in files:
        found = group_re.search(str(path)) if group_re is not None else None
        if group_re is not None and (found is None or found.group(1) is None):
            click.echo(f"error: {path}: --group-by {group_re.pattern} does not match its path; not labelled",
                       err=True)
            failed += 1
            continue
        groups.setdefault(found.group(1) if found else "(all files)", []).append(path)
    norms: dict[Path, object] = {}
    n = 0
    for key, members in groups.items():
        try:
            norm = model.enrol(members, warn=False)
        except EnrolmentError as exc:
            n += _warn_passed_over(exc.skipped.items())
            click.echo(f"error: group {key} ({len(members)} file(s)): {_one_line(exc)}; not labelled", err=True)
            failed += len(members)
            continue
        n += _warn_passed_over(norm.skipped.items())
        click.echo(f"enrolment: group {key}: statistics of {norm.clips} clip(s)", err=True)
        norms.update(dict.fromkeys(members, norm))
    _count_passed_over(n)
    return norms, failed


def _show(bundle: Path, fmt: str) -> None:
    """``predict --show``: what the bundle loads, from its files (checked), as text or JSON."""
    from fusionkit.bundle import describe
    from fusionkit.recipe import RecipeError

    try:
        info = describe(bundle)
    except RecipeError as exc:
        _fail([f"{bundle}: {line}" for line in exc.lines], EXIT_INVALID)
    except (ValueError, OSError) as exc:
        _refuse(f"{bundle}: {_one_line(exc)}")
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return
    for line in show_lines(info):
        click.echo(line)


def _trained_on(device: str | None) -> str:
    return "" if device in (None, "cpu") else f", trained on {device} (runs on the CPU where that is missing)"


def show_lines(info: dict) -> list[str]:
    """A bundle's description (:func:`fusionkit.bundle.describe`) for the terminal."""
    outputs = ("targets: " + ", ".join(info["targets"])) if "targets" in info else \
        ("classes: " + ", ".join(info["classes"] or []))
    lines = [f"bundle: {info['bundle']}",
             f"content hash: {info['content_hash']} ({info['files']} files, created {info['created']})",
             f"fusion head: {info['fusion']} ({info['head']}){_trained_on(info.get('head_trained_on'))}", outputs]
    for e in info["encoders"]:
        lines.append(f"encoder {e['name']}: plugin {e['plugin']}, model {e['model'] or '-'}, "
                     f"weights digest {e['weights_digest'] or '-'}{_trained_on(e.get('trained_on'))}")
    text = info["text"]
    if text is not None:  # a text encoder's transcripts: from the dataset or an ASR model
        lines.append(f"text: {text['source']}" + (f" (ASR model {text['model']})" if "model" in text else ""))
    if info.get("normalize", "none") != "none":
        lines.append(f"normalize: {info['normalize']} (features z-scored per {info['normalize']}): predict needs "
                     "--enrol PATH or --enrol-self [--group-by REGEX]")
    if info["trust_remote_code"]:
        lines.append(f"trust_remote_code asked for by {', '.join(info['trust_remote_code'])}: "
                     "predict refuses it without --trust-remote-code")
    return lines


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
                *(names if model.regression else [f"p_{c}" for c in names]), *text, "warning"])
    for path, r in results:
        whole = isinstance(r, dict)  # a whole-file row: no start or end (a timeline row has both)
        segs = [Segment(0.0, -1.0, r.get("label"), r.get("probabilities"), r.get("text"), r.get("values"),
                        r.get("warning"))] if whole else r
        for s in segs:
            scores = s.values if model.regression else s.probabilities
            w.writerow([str(path), *(["", ""] if whole else [s.start, s.end]), *([] if model.regression else [s.label]),
                        *[f"{scores[c]:.4f}" for c in names], *([s.text or ""] if text else []), s.warning or ""])
    return buf.getvalue()


def _values_text(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in values.items())


def table_lines(path: Path, r) -> list[str]:
    """One file's result for the terminal: its label and top scores, or one line per window."""
    if isinstance(r, dict):
        if "values" in r:
            return [f"{path}: {_values_text(r['values'])}"]
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        note = f"  [{r['warning']}]" if r.get("warning") else ""
        return [f"{path}: {r['label']}  ({_values_text(dict(top))}){note}"]
    lines = [f"{path}: {len(r)} window{'' if len(r) == 1 else 's'}"]
    for s in r:
        what = _values_text(s.values) if s.values is not None else f"{s.label:<10} {s.probabilities[s.label]:.2f}"
        lines.append(f"  {s.start:8.2f} - {s.end:8.2f}  {what}" + (f"  \"{s.text}\"" if s.text else "")
                     + (f"  [{s.warning}]" if s.warning else ""))
    return lines
