"""``fusionkit export``: a finished run -> a bundle folder."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fusionkit.bundle.files import (
    BUNDLE_FORMAT,
    NORMALIZATION_FILE,
    BundleError,
    ExportError,
    _file_hashes,
    _model_fields,
    _names,
    _versions,
    _walk,
    content_hash,
    read_manifest,
    write_training_stats,
)

# ---------------------------------------------------------------- export


def export(run_dir: Path, bundle_dir: Path, fold: str = "all") -> Path:
    """Refit the run's fusion head on its training clips (``fold='all'``) or copy one fold's head.

    "All" means every clip the run could train on: the whole corpus for a k-fold or
    leave-one-speaker-out run, only the training corpus for a cross-corpus run (``test_data``), only the
    ``split.train`` partitions for a predefined split (a corpus's own test set stays unseen).
    Classification bundles predict class probabilities; regression bundles predict target values.
    The head is loaded back before the manifest is written; an export that fails leaves ``bundle_dir`` empty
    (or absent, where it did not exist), never half a bundle.
    """
    from fusionkit.recipe import load_recipe

    _check_run_folder(run_dir)
    recipe = load_recipe(run_dir / "recipe.yaml")
    metrics = _run_metrics(run_dir / "metrics.json")
    chosen = None if fold == "all" else pick_fold(metrics, fold, recipe.task.kind == "regression")
    existed = bundle_dir.exists()
    prepare_target(bundle_dir)  # refuses a folder holding anything but an earlier bundle, and touches nothing then
    try:
        return _write_bundle(run_dir, bundle_dir, recipe, metrics, fold, chosen)
    except BaseException:
        _clear(bundle_dir, remove=not existed)
        raise


def _clear(folder: Path, remove: bool) -> None:
    """Delete what a failed export wrote into ``folder`` (and the folder itself where export made it)."""
    import shutil

    if remove:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for path in folder.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _write_bundle(run_dir: Path, bundle_dir: Path, recipe, metrics: dict, fold: str, chosen: dict | None) -> Path:
    """The bundle's files, into ``bundle_dir`` made ready by :func:`prepare_target`."""
    import shutil

    import yaml

    from fusionkit.pipeline.data import normalize
    from fusionkit.pipeline.encode import build_encoders
    from fusionkit.pipeline.folds import OUTCOME, fold_inputs, fold_tag
    from fusionkit.pipeline.run import prepare
    from fusionkit.recipe import plugin_options

    regression = recipe.task.kind == "regression"
    outputs = list(recipe.task.targets) if regression else metrics["classes"]
    head_dir = bundle_dir / "head"
    raw_prep = prepare(recipe) if fold == "all" or recipe.normalize != "none" else None
    partition = ""
    if raw_prep is not None and recipe.test_data is None and recipe.split.kind == "predefined":
        raw_prep, partition = _training_partitions(recipe, raw_prep)
    if recipe.normalize != "none":
        write_training_stats(bundle_dir / NORMALIZATION_FILE, raw_prep)
    if fold == "all":
        prep = normalize(recipe, raw_prep)
        n = prep.n_train if prep.n_train is not None else len(prep.clips)
        train = prep.clips[:n]
        cls, options = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)
        head = cls(options, seed=recipe.run_seeds()[0])
        y = prep.targets[:n] if regression else np.array([outputs.index(c.label) for c in train])
        head.fit(fold_inputs(prep, np.arange(n)), y, outputs, np.array([c.speaker for c in train]))
        head.save(head_dir)
        corpus = " of the training corpus" if prep.n_train is not None else partition
        source = f"refitted on all {n} clips{corpus}"
        _loads_back(recipe, head_dir, source)
    else:
        key = "ccc" if regression else "uar"
        best = chosen
        tag = fold_tag(best["seed"], best["fold"], metrics["protocol"]["seeds"])
        source = f"fold {best['fold']} (seed {best['seed']}, {key.upper()} {best[key]:.3f})"
        _loads_back(recipe, run_dir / "models" / tag, source)  # named in the run folder, where it can be looked at
        shutil.copytree(run_dir / "models" / tag, head_dir, ignore=shutil.ignore_patterns(OUTCOME))  # the head only
    encoders = build_encoders(recipe)
    raw = carry_models(recipe.model_dump(mode="json"), bundle_dir)  # local model folders travel in the bundle
    (bundle_dir / "recipe.yaml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    (bundle_dir / "encoders.json").write_text(json.dumps(
        [{"name": spec.key, "plugin": spec.plugin, "options": raw["encoders"][i]["options"],
          "identity": encoders[spec.key].identity()} for i, spec in enumerate(recipe.encoders)], indent=2, default=str))
    labels = {"task": "regression", "targets": outputs} if regression else {"classes": outputs}
    (bundle_dir / "labels.json").write_text(json.dumps(labels, indent=2))
    manifest = {
        "format": BUNDLE_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source_run": str(run_dir),
        "head": source,
        "fusion": recipe.fusion.plugin,
        **({"normalize": {"kind": recipe.normalize, "training_statistics": NORMALIZATION_FILE}}
           if recipe.normalize != "none" else {}),
        "versions": _versions(),
        "files": _file_hashes(bundle_dir),
    }
    manifest["content_hash"] = content_hash(manifest)
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return bundle_dir



# ---------------------------------------------------------------- checks: what export writes


def _training_partitions(recipe, prep):
    """A predefined split's training side only (``split.train``'s partitions): a corpus's own test partition stays
    unseen by the bundle, so that it can still be scored on it. (prep, words for the manifest)."""
    from dataclasses import replace

    from fusionkit.pipeline.splits import make_folds

    (fold,) = make_folds(prep.clips, recipe.split, recipe.run_seeds()[0], prep.partitions)
    keep = np.sort(fold.train)
    targets = None if prep.targets is None else prep.targets[keep]
    words = f" of split.train ({', '.join(recipe.split.train)}; the test partition left out)"
    return replace(prep, clips=[prep.clips[i] for i in keep], targets=targets), words


def _loads_back(recipe, directory: Path, source: str) -> None:
    """:class:`ExportError` unless the head saved in ``directory`` loads as a bundle loads it (``load_head``): a head
    that does not is never shipped."""
    import warnings

    from fusionkit.recipe import plugin_options
    from fusionkit.sdk.heads import load_head

    cls, options = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # a pre-SDK head: the bundle's load warns, once
            load_head(cls, directory, options, recipe.run_seeds()[0])
    except Exception as exc:  # noqa: BLE001 - whatever the head's own loader raises, in one line
        raise ExportError(f"the head ({source}) does not load back: {' '.join(str(exc).split())}") from None


def _check_run_folder(run_dir: Path) -> None:
    """:class:`ExportError` unless ``run_dir`` holds a run's ``recipe.yaml`` (a missing metrics.json alone is a run
    that did not finish, said by :func:`_run_metrics`). The message leaves the folder to the caller, who names it."""
    if not (run_dir / "recipe.yaml").is_file():
        missing = [name for name in ("recipe.yaml", "metrics.json") if not (run_dir / name).is_file()]
        raise ExportError(f"not a run folder (no {', no '.join(missing)}; a finished `fusionkit run` writes "
                          "recipe.yaml and metrics.json)")


def _run_metrics(path: Path) -> dict:
    """A run's metrics.json; :class:`ExportError` naming the file when it is missing (the run did not finish:
    metrics.json is written last) or not JSON."""
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{path}: missing; the run did not finish (metrics.json is written last)") from None
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: unreadable ({' '.join(str(exc).split())})") from None
    if not isinstance(metrics, dict):
        raise ExportError(f"{path}: not a run's metrics (a JSON object)")
    return metrics


def pick_fold(metrics: dict, fold: str, regression: bool) -> dict:
    """The fold row of ``metrics.json`` that ``fold`` names: ``best``, or a fold number of the run's first seed."""
    import re

    folds = metrics.get("folds") or []
    key = "ccc" if regression else "uar"
    if not folds:
        raise ExportError("fold: the run's metrics.json lists no folds")
    if fold == "best":
        return max(folds, key=lambda f: f[key])
    first = folds[0].get("seed")
    numbers = sorted({f["fold"] for f in folds if f.get("seed") == first})
    span = f"{numbers[0]}-{numbers[-1]}" if numbers == list(range(numbers[0], numbers[-1] + 1)) else \
        ", ".join(map(str, numbers))
    if not re.fullmatch(r"\d+", str(fold).strip()):
        raise ExportError(f"fold {fold}: expected all, best or a fold number ({span})")
    if int(fold) not in numbers:
        raise ExportError(f"fold {fold}: the run has folds {span} (or all, best)")
    return next(f for f in folds if f["fold"] == int(fold) and f.get("seed") == first)


def prepare_target(bundle_dir: Path) -> None:
    """Make ``bundle_dir`` ready for a bundle: a new or empty folder, or an earlier bundle whose files are removed.
    A folder holding anything else is refused (:class:`ExportError`) and left as it is."""
    if bundle_dir.exists() and not bundle_dir.is_dir():
        raise ExportError(f"{bundle_dir}: exists and is not a folder")
    if bundle_dir.is_dir() and any(bundle_dir.iterdir()):
        try:
            listed = read_manifest(bundle_dir)["files"]
        except BundleError:
            raise ExportError(f"{bundle_dir}: not empty and not a fusionkit bundle; export into a new or empty "
                              "folder") from None
        tree = _walk(bundle_dir)
        foreign = sorted(set(tree.files) - set(listed)) + tree.links + tree.odd
        if foreign:
            raise ExportError(f"{bundle_dir}: holds files that are not part of its bundle ({_names(foreign)}); "
                              "export into a new or empty folder")
        for rel in [*tree.files, "manifest.json"]:
            (bundle_dir / rel).unlink()
        for here, _dirs, _files in sorted(os.walk(bundle_dir), key=lambda w: -len(w[0])):
            if Path(here) != bundle_dir:
                Path(here).rmdir()
    bundle_dir.mkdir(parents=True, exist_ok=True)


def carry_models(raw: dict, bundle_dir: Path) -> dict:
    """Copy every local model folder ``raw`` names into ``bundle_dir/models/`` and name it there, relative;
    ``pkg:`` references and hub ids stay as they are (found again where the bundle is used)."""
    import shutil

    from fusionkit.modelref import is_pkg_ref
    from fusionkit.recipe import safe_name

    copied: dict[Path, str] = {}
    for field, node, key in _model_fields(raw):
        ref = node[key]
        folder = Path(ref).expanduser()
        if is_pkg_ref(ref) or not folder.is_dir():
            continue
        src = folder.resolve()
        if bundle_dir.resolve().is_relative_to(src):
            raise ValueError(f"{field}: {ref}: the bundle folder {bundle_dir} lies inside this model folder; "
                              "export elsewhere")
        if src not in copied:
            enc = raw["encoders"][int(field.split(".")[1])] if field.startswith("encoders.") else {}
            rel = f"models/{safe_name(enc.get('name') or enc.get('plugin') or 'asr')}"
            while rel in copied.values():
                rel += "-"
            # symlinks (e.g. a hub snapshot's) are copied as the files they point to; dot-files are left out
            shutil.copytree(src, bundle_dir / rel, symlinks=False,
                            ignore=lambda d, names: [n for n in names if n.startswith(".") and
                                                     not (Path(d) / n).is_dir()])
            copied[src] = rel
        node[key] = copied[src]
    return raw


