"""Model bundles: ``fusionkit export`` writes one, ``fusionkit predict`` and ``fusionkit.load`` use it.

A bundle is a folder: ``recipe.yaml`` (resolved), ``encoders.json`` (plugin, options, identity),
``head/`` (the fusion head in its own pickle-free format), ``labels.json`` and ``manifest.json``
(versions and a content hash of every file).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import platform
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import click

log = logging.getLogger("fusionkit")
BUNDLE_FORMAT = 1


# ---------------------------------------------------------------- export


def export(run_dir: Path, bundle_dir: Path, fold: str = "all") -> Path:
    """Refit the run's fusion head on its training clips (``fold='all'``) or copy one fold's head.

    "All" means every clip the run could train on: the whole corpus for a k-fold or
    leave-one-speaker-out run, only the training corpus for a cross-corpus run (``test_data``).
    Classification bundles predict class probabilities; regression bundles predict target values.
    """
    import shutil

    from fusionkit.recipe import load_recipe, plugin_options
    from fusionkit.pipeline.run import build_encoders, fold_inputs, fold_tag, prepare

    import numpy as np

    recipe = load_recipe(run_dir / "recipe.yaml")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if recipe.normalize != "none":
        raise ValueError(f"normalize: {recipe.normalize} z-scores each {recipe.normalize} with its own statistics, "
                         "which a bundle cannot know for new recordings; export a run with normalize: none")
    regression = recipe.task.kind == "regression"
    outputs = list(recipe.task.targets) if regression else metrics["classes"]
    bundle_dir.mkdir(parents=True, exist_ok=True)
    head_dir = bundle_dir / "head"
    if head_dir.exists():
        shutil.rmtree(head_dir)
    if fold == "all":
        prep = prepare(recipe)
        n = prep.n_train if prep.n_train is not None else len(prep.clips)
        train = prep.clips[:n]
        cls, options = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)
        head = cls(options, seed=recipe.run_seeds()[0])
        y = prep.targets[:n] if regression else np.array([outputs.index(c.label) for c in train])
        head.fit(fold_inputs(prep, np.arange(n)), y, outputs, np.array([c.speaker for c in train]))
        head.save(head_dir)
        corpus = " of the training corpus" if prep.n_train is not None else ""
        source = f"refitted on all {n} clips{corpus}"
    else:
        folds = metrics["folds"]
        key = "ccc" if regression else "uar"
        best = max(folds, key=lambda f: f[key]) if fold == "best" else folds[int(fold)]
        tag = fold_tag(best["seed"], best["fold"], metrics["protocol"]["seeds"])
        shutil.copytree(run_dir / "models" / tag, head_dir)
        source = f"fold {best['fold']} (seed {best['seed']}, {key.upper()} {best[key]:.3f})"
    encoders = build_encoders(recipe)
    (bundle_dir / "recipe.yaml").write_text((run_dir / "recipe.yaml").read_text())
    (bundle_dir / "encoders.json").write_text(json.dumps(
        [{"name": spec.key, "plugin": spec.plugin, "options": spec.options, "identity": encoders[spec.key].identity()}
         for spec in recipe.encoders], indent=2, default=str))
    labels = {"task": "regression", "targets": outputs} if regression else {"classes": outputs}
    (bundle_dir / "labels.json").write_text(json.dumps(labels, indent=2))
    manifest = {
        "format": BUNDLE_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source_run": str(run_dir),
        "head": source,
        "fusion": recipe.fusion.plugin,
        "versions": _versions(),
        "files": _file_hashes(bundle_dir),
    }
    manifest["content_hash"] = hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return bundle_dir


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("fusionkit", "numpy", "torch", "transformers", "scikit-learn", "xgboost-cpu", "xgboost", "catboost",
                 "sentence-transformers", "librosa"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _file_hashes(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            out[p.relative_to(root).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# ---------------------------------------------------------------- loading and predicting


@dataclass
class Segment:
    """One labelled stretch: a class label and probabilities, or (regression) target values."""

    start: float
    end: float
    label: str | None
    probabilities: dict[str, float] | None
    text: str | None = None
    values: dict[str, float] | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def _result(scores: dict[str, float], regression: bool) -> dict:
    """A whole-file result: ``{"label", "probabilities"}``, or ``{"values"}`` for regression."""
    if regression:
        return {"values": scores}
    return {"label": max(scores, key=scores.get), "probabilities": scores}


class Bundle:
    """A loaded bundle: ``Bundle.load(path).predict(path_or_array)``."""

    def __init__(self, root: Path, recipe, encoders: dict, head, outputs: list[str]):
        self.root, self.recipe, self.encoders, self.head = root, recipe, encoders, head
        self.regression = recipe.task.kind == "regression"
        #: class names (classification) or target names (regression), in the head's output order
        self.outputs = outputs
        self.classes = [] if self.regression else outputs
        self._transcriber = None

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> "Bundle":
        from fusionkit.recipe import load_recipe, plugin_options
        from fusionkit.pipeline.run import build_encoders

        root = Path(path)
        if not (root / "manifest.json").exists():
            raise ValueError(f"{root}: not a fusionkit bundle (no manifest.json)")
        manifest = json.loads((root / "manifest.json").read_text())
        if verify:
            changed = [f for f, h in _file_hashes(root).items() if manifest["files"].get(f) != h]
            if changed:
                raise ValueError(f"{root}: bundle files changed since export: {', '.join(changed)}")
        recipe = load_recipe(root / "recipe.yaml")
        fusion_cls, options = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)
        head = fusion_cls.load(root / "head", options, seed=recipe.run_seeds()[0])
        labels = json.loads((root / "labels.json").read_text())
        outputs = labels["targets"] if recipe.task.kind == "regression" else labels["classes"]
        encoders = build_encoders(recipe)
        for enc in encoders.values():
            enc.load()
        return cls(root, recipe, encoders, head, outputs)

    @property
    def uses_text(self) -> bool:
        return any(e.modality == "text" for e in self.encoders.values())

    def _texts(self, signals: list) -> list[str]:
        if self.recipe.text.source != "asr":
            raise ValueError("this bundle's text encoders need transcripts, and its recipe has no ASR "
                             "(text: {source: asr}); it cannot label raw audio")
        if self._transcriber is None:
            from fusionkit.pipeline.transcripts import make_transcriber

            self._transcriber = make_transcriber(self.recipe.text)
        return [self._transcriber(x) for x in signals]

    def predict_signals(self, signals: list, sr: int = 16000) -> tuple[list[dict], list[str] | None]:
        """Scores for mono 16 kHz signals: one dict per signal, class -> probability (or target -> value)."""
        import numpy as np

        texts = self._texts(signals) if self.uses_text else None
        X = {}
        for name, enc in self.encoders.items():
            inputs = texts if enc.modality == "text" else signals
            feats = [enc.select(a) for a in enc.encode_batch(inputs)]
            X[name] = feats if enc.is_sequence() else np.stack(feats).astype(np.float32)
        scores = self.head.predict(X) if self.regression else self.head.predict_proba(X)
        scores = np.asarray(scores, dtype=np.float64).reshape(len(signals), len(self.outputs))
        return [dict(zip(self.outputs, map(float, p))) for p in scores], texts

    def predict(self, source, sampling_rate: int | None = None, window: float | None = None,
                hop: float | None = None, vad: bool = False, smooth: int = 1, batch: int = 16):
        """Label a file path or a signal array.

        Without ``window``/``vad``: ``{"label", "probabilities"}`` for the whole recording
        (``{"values"}`` for a regression bundle). With them: a list of :class:`Segment`.
        """
        import numpy as np

        from fusionkit.audio import load_audio, to_mono_resampled

        if window is None and not vad:
            x = (load_audio(source, 16000) if isinstance(source, (str, Path))
                 else to_mono_resampled(np.asarray(source), sampling_rate or 16000, 16000))
            probs, texts = self.predict_signals([x])
            out = _result(probs[0], self.regression)
            if texts:
                out["text"] = texts[0]
            return out
        return list(self.timeline(source, sampling_rate, window, hop, vad, smooth, batch))

    def timeline(self, source, sampling_rate=None, window=None, hop=None, vad=False, smooth=1, batch=16) -> Iterator[Segment]:
        from fusionkit.windows import iter_windows, smooth_probabilities, speech_regions

        window = window or 4.0
        hop = hop or window
        if vad:
            regions = speech_regions(source, sampling_rate)
            spans = iter_windows(source, sampling_rate, window, hop, regions=regions)
        else:
            spans = iter_windows(source, sampling_rate, window, hop)
        segments: list[Segment] = []
        chunk: list = []

        def flush():
            probs, texts = self.predict_signals([x for _, _, x in chunk])
            for i, ((s, e, _), p) in enumerate(zip(chunk, probs)):
                r = _result(p, self.regression)
                segments.append(Segment(round(s, 3), round(e, 3), r.get("label"), r.get("probabilities"),
                                        texts[i] if texts else None, r.get("values")))
            chunk.clear()

        for span in spans:
            chunk.append(span)
            if len(chunk) >= batch:
                flush()
        if chunk:
            flush()
        if smooth > 1:
            segments = smooth_probabilities(segments, smooth, self.outputs)
        yield from segments


# ---------------------------------------------------------------- CLI


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option("--fold", default="all", show_default=True,
              help="'all': refit the head on every clip; 'best': the best fold's head; or a fold number.")
def export_command(run_dir: Path, bundle_dir: Path, fold: str) -> None:
    """Write a self-contained model bundle from RUN_DIR (a finished `fusionkit run`)."""
    from fusionkit.recipe import RecipeError

    try:
        export(run_dir, bundle_dir, fold)
    except (RecipeError, ValueError, OSError, KeyError) as exc:
        click.echo(f"error: {run_dir}: cannot export: {exc}", err=True)
        sys.exit(1)
    m = json.loads((bundle_dir / "manifest.json").read_text())
    click.echo(f"bundle written to {bundle_dir} ({m['head']}; content hash {m['content_hash'][:12]})")


def _expand(paths) -> list[Path]:
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
@click.option("--smooth", type=int, default=1, show_default=True, help="Average probabilities over this many neighbouring windows.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
def predict_command(bundle: Path, audio, window, hop, vad, smooth, fmt) -> None:
    """Label AUDIO files (or folders) with BUNDLE; with --window, a timeline per file."""
    from fusionkit.audio import AudioError

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
            _print_table(path, r)
    if fmt == "json":
        click.echo(json.dumps([_as_json(p, r) for p, r in results], indent=2))
    elif fmt == "csv":
        click.echo(_as_csv(results, model), nl=False)
    if failed:
        click.echo(f"{failed} file(s) could not be labelled", err=True)
        sys.exit(1)


def _as_json(path: Path, r) -> dict:
    if isinstance(r, dict):
        return {"file": str(path), **r}
    return {"file": str(path), "timeline": [s.as_dict() for s in r]}


def _as_csv(results, model: "Bundle") -> str:
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


def _print_table(path: Path, r) -> None:
    if isinstance(r, dict):
        if "values" in r:
            click.echo(f"{path}: {_values_text(r['values'])}")
            return
        top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        click.echo(f"{path}: {r['label']}  ({_values_text(dict(top))})")
        return
    click.echo(f"{path}: {len(r)} windows")
    for s in r:
        what = _values_text(s.values) if s.values is not None else f"{s.label:<10} {s.probabilities[s.label]:.2f}"
        click.echo(f"  {s.start:8.2f} - {s.end:8.2f}  {what}" + (f"  \"{s.text}\"" if s.text else ""))
