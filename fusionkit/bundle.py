"""Model bundles: ``fusionkit export`` writes one, ``fusionkit predict`` and ``fusionkit.load`` use it.

A bundle is a folder: ``recipe.yaml`` (resolved), ``encoders.json`` (plugin, options, identity),
``head/`` (the fusion head in its own pickle-free format), ``labels.json``, ``models/`` (the local model
folders the recipe names, copied and named relative to the bundle) and ``manifest.json`` (versions and a
content hash of every file). Loading needs nothing else: not the corpus, the run folder or the dataset plugin.
A bundle of a run with ``normalize: corpus | speaker`` also holds ``normalization.safetensors``: the training corpus
statistics per encoder (a fallback, used only when asked); predictions normalise with statistics of enrolment audio.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

log = logging.getLogger("fusionkit")
BUNDLE_FORMAT = 1
NORMALIZATION_FILE = "normalization.safetensors"
MIN_ENROL_CLIPS = 2
"""Fewer enrolment clips give no spread: every feature would be 0 after normalising."""
FEW_ENROL_CLIPS = 10
"""Below this many enrolment clips a warning says the statistics are noisy."""


# ---------------------------------------------------------------- export


def export(run_dir: Path, bundle_dir: Path, fold: str = "all") -> Path:
    """Refit the run's fusion head on its training clips (``fold='all'``) or copy one fold's head.

    "All" means every clip the run could train on: the whole corpus for a k-fold or
    leave-one-speaker-out run, only the training corpus for a cross-corpus run (``test_data``).
    Classification bundles predict class probabilities; regression bundles predict target values.
    """
    import shutil

    import yaml

    from fusionkit.pipeline.data import normalize
    from fusionkit.pipeline.encode import build_encoders
    from fusionkit.pipeline.folds import fold_inputs, fold_tag
    from fusionkit.pipeline.run import prepare
    from fusionkit.recipe import load_recipe, plugin_options

    recipe = load_recipe(run_dir / "recipe.yaml")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    regression = recipe.task.kind == "regression"
    outputs = list(recipe.task.targets) if regression else metrics["classes"]
    chosen = None if fold == "all" else pick_fold(metrics, fold, regression)
    prepare_target(bundle_dir)
    head_dir = bundle_dir / "head"
    raw_prep = prepare(recipe) if fold == "all" or recipe.normalize != "none" else None
    if recipe.normalize != "none":
        write_training_stats(bundle_dir / NORMALIZATION_FILE, recipe.normalize, raw_prep)
    if fold == "all":
        prep = normalize(recipe, raw_prep)
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
        key = "ccc" if regression else "uar"
        best = chosen
        tag = fold_tag(best["seed"], best["fold"], metrics["protocol"]["seeds"])
        shutil.copytree(run_dir / "models" / tag, head_dir)
        source = f"fold {best['fold']} (seed {best['seed']}, {key.upper()} {best[key]:.3f})"
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
    manifest["content_hash"] = hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return bundle_dir


def write_training_stats(path: Path, kind: str, prep) -> None:
    """The training corpus's statistics per encoder (raw features of every training clip) as safetensors:
    ``<encoder>/mean`` and ``<encoder>/std``, with the normalisation kind and the clip count as metadata."""
    from safetensors.numpy import save_file

    from fusionkit.pipeline.data import corpus_stats

    stats = corpus_stats(prep.features, prep.train_clips)
    arrays = {f"{name}/{part}": np.ascontiguousarray(getattr(s, part), dtype=np.float64)
              for name, s in stats.items() for part in ("mean", "std")}
    save_file(arrays, str(path), metadata={"kind": kind, "clips": str(len(prep.train_clips))})


def read_training_stats(root: Path, encoders: list[str]) -> tuple[dict, int]:
    """A normalised bundle's training corpus statistics (encoder name -> GroupStats) and the number of clips they
    come from; one-line BundleError when the file is missing, unreadable or lacks an encoder."""
    from safetensors import safe_open

    from fusionkit.pipeline.data import GroupStats

    path = root / NORMALIZATION_FILE
    if not path.is_file():
        raise BundleError(f"{path}: missing; the bundle's recipe says normalize, and the statistics file is part of it")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            arrays = {k: fh.get_tensor(k) for k in fh.keys()}
            meta = fh.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - any damage is one line naming the file
        raise BundleError(f"{path}: not a readable safetensors file ({_one_line(exc)})") from None
    out = {}
    for name in encoders:
        mean, std = arrays.get(f"{name}/mean"), arrays.get(f"{name}/std")
        if mean is None or std is None or mean.shape != std.shape:
            raise BundleError(f"{path}: no mean and std of matching shapes for encoder {name}")
        out[name] = GroupStats(mean.astype(np.float64), std.astype(np.float64))
    clips = meta.get("clips", "0")
    return out, int(clips) if clips.isdigit() else 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


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
    """SHA-256 of every file of the bundle but its ``manifest.json``, by path relative to it."""
    return {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in _walk(root).files}


# ---------------------------------------------------------------- checks: what a bundle holds and may load


class BundleError(ValueError):
    """A bundle that cannot be used as it is; the message is one line naming the file or field and the reason."""


class ExportError(ValueError):
    """An export that cannot start with these arguments (fold, target folder); nothing was written."""


@dataclass
class _Tree:
    files: list[str]  # regular files, relative POSIX paths, without the top-level manifest.json
    links: list[str]  # symlinks (to files or folders, dangling or not)
    odd: list[str]  # anything else that is not a folder (fifos, sockets, devices)


def _walk(root: Path) -> _Tree:
    """Every entry under ``root`` without following symlinks."""
    tree = _Tree([], [], [])
    for here, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            full = Path(here) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                tree.links.append(rel)
            elif name in files and not full.is_file():
                tree.odd.append(rel)
            elif name in files and rel != "manifest.json":
                tree.files.append(rel)
    tree.files.sort()
    return tree


def _names(items: list[str], shown: int = 5) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def read_manifest(root: Path) -> dict:
    """A bundle's ``manifest.json``; :class:`BundleError` when there is none or it is not a manifest."""
    path = root / "manifest.json"
    if not root.is_dir():
        raise BundleError(f"{root}: not a folder")
    if not path.is_file() or path.is_symlink():
        raise BundleError(f"{root}: not a fusionkit bundle (no manifest.json)")
    manifest = _read_json(root, "manifest.json")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{path}: not a bundle manifest (no 'files' mapping)")
    return manifest


def _read_json(root: Path, name: str):
    try:
        return json.loads((root / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{root / name}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{root / name}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


def check_files(root: Path, manifest: dict, verify: bool = True) -> None:
    """Refuse symlinks and other non-regular files in the bundle, files its manifest lists that are missing,
    files it does not list, and (``verify``) files whose content changed since export."""
    tree = _walk(root)
    if tree.links:
        raise BundleError(f"{root}: symlinks are not allowed in a bundle: {_names(tree.links)}")
    if tree.odd:
        raise BundleError(f"{root}: not regular files: {_names(tree.odd)}")
    listed = manifest["files"]
    missing = sorted(set(listed) - set(tree.files))
    if missing:
        raise BundleError(f"{root}: files listed in its manifest are missing: {_names(missing)}")
    extra = sorted(set(tree.files) - set(listed))
    if extra:
        raise BundleError(f"{root}: files not in the manifest (a bundle holds only what export wrote): "
                          f"{_names(extra)}")
    if verify:
        changed = [f for f, h in _file_hashes(root).items() if listed.get(f) != h]
        if changed:
            raise BundleError(f"{root}: bundle files changed since export: {_names(changed)}")


def bundle_recipe_raw(root: Path) -> dict:
    """The bundle's ``recipe.yaml`` as a mapping, read with the recipe loader (safe, size-limited)."""
    from fusionkit.recipe import load_raw

    return load_raw(root / "recipe.yaml")


_NO = {"", "0", "false", "no", "off", "n", "f"}


def remote_code_requests(raw: dict) -> list[str]:
    """Dotted fields of the encoders' options (at any depth) and of ``text`` that ask for ``trust_remote_code``."""
    found: list[str] = []

    def walk(node, where: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            here = f"{where}.{key}"
            asked = value not in (None, False, 0) and not (isinstance(value, str) and value.strip().lower() in _NO)
            if key == "trust_remote_code" and asked:
                found.append(here)
            walk(value, here)

    for i, enc in enumerate(raw.get("encoders") or []):
        if isinstance(enc, dict):
            walk(enc.get("options"), f"encoders.{i}.options")
    walk(raw.get("text"), "text")
    return found


def _model_fields(raw: dict) -> list[tuple[str, dict, str]]:
    """(dotted field, the mapping holding it, key) of every model reference: encoders' ``model`` options and,
    with ASR, ``text.model``."""
    out = []
    for i, enc in enumerate(raw.get("encoders") or []):
        options = enc.get("options") if isinstance(enc, dict) else None
        if isinstance(options, dict) and isinstance(options.get("model"), str):
            out.append((f"encoders.{i}.options.model", options, "model"))
    text = raw.get("text")
    if isinstance(text, dict) and text.get("source") == "asr" and isinstance(text.get("model"), str):
        out.append(("text.model", text, "model"))
    return out


def _is_folder_ref(root: Path, ref: str) -> bool:
    """Whether a bundle's model reference names a folder (not ``pkg:<distribution>`` nor a hub id)."""
    from fusionkit.modelref import is_pkg_ref

    if is_pkg_ref(ref):
        return False
    return (ref.startswith(("/", "./", "../", "~", "\\")) or Path(ref).is_absolute() or ref.count("/") > 1
            or ".." in Path(ref).parts or os.path.lexists(root / ref))


def _bundle_model_dir(root: Path, ref: str, field: str) -> Path:
    """The folder a bundle's model reference names: relative to the bundle, inside it, reached without symlinks."""
    where = f"{root / 'recipe.yaml'}: {field}: {ref}"
    norm = os.path.normpath(ref)
    if ref.startswith("~") or os.path.isabs(norm) or norm == ".." or norm.startswith(".." + os.sep):
        raise BundleError(f"{where} points outside the bundle; a bundle names its model folders inside itself "
                          "(models/...)")
    here = root
    for part in Path(norm).parts:
        here = here / part
        if here.is_symlink():
            raise BundleError(f"{where} goes through a symlink ({here.relative_to(root).as_posix()})")
    if not here.is_dir():
        raise BundleError(f"{where}: no such model folder in the bundle")
    if not here.resolve().is_relative_to(root.resolve()):
        raise BundleError(f"{where} points outside the bundle")
    return here.resolve()


def localized_models(root: Path, raw: dict) -> dict:
    """A copy of ``raw`` whose model folders are absolute paths inside the bundle (checked); ``pkg:`` references
    and hub ids are left as they are."""
    import copy

    out = copy.deepcopy(raw)
    for field, node, key in _model_fields(out):
        if _is_folder_ref(root, node[key]):
            node[key] = str(_bundle_model_dir(root, node[key], field))
    return out


def typed_recipe(root: Path, raw: dict):
    """The bundle's recipe validated for prediction: the recipe's own model and its encoders' and fusion head's
    options; the dataset plugin, the corpus and the split file are not needed."""
    from pydantic import ValidationError

    from fusionkit.recipe import Recipe, RecipeError, pydantic_lines
    from fusionkit.registry import PluginError, registry

    source = str(root / "recipe.yaml")
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(pydantic_lines(source, exc)) from None
    problems = []
    parts = [("encoder", ("encoders", i), spec) for i, spec in enumerate(recipe.encoders)]
    for kind, loc, spec in parts + [("fusion", ("fusion",), recipe.fusion)]:
        try:
            cls = registry().get(kind, spec.plugin)
        except PluginError as exc:
            problems.append(f"{source}: {'.'.join(map(str, loc))}.plugin: {exc}")
            continue
        try:
            cls.Options.model_validate(spec.options)
        except ValidationError as exc:
            problems += pydantic_lines(source, exc, loc + ("options",))
    if problems:
        raise RecipeError(problems)
    return recipe


def check_identities(root: Path, encoders: dict) -> None:
    """Each encoder's model identity (weights digest) against the one ``encoders.json`` recorded at export."""
    recorded = _read_json(root, "encoders.json")
    entries = {e.get("name"): e for e in recorded if isinstance(e, dict)} if isinstance(recorded, list) else {}
    for name, enc in encoders.items():
        entry = entries.get(name)
        if entry is None:
            raise BundleError(f"{root / 'encoders.json'}: no entry for encoder {name}")
        want = (entry.get("identity") or {}).get("model")
        got = enc.identity().get("model")
        if want != got:
            raise BundleError(f"{root}: encoder {name}: the installed model's identity (weights digest) {got} differs "
                              f"from the one recorded at export ({want}); the head was fitted on that model's features")


def describe(path: str | Path) -> dict:
    """What a bundle loads, from its files alone (no plugin or model is loaded): encoders with plugin, model
    reference and weights digest, fusion head, classes or targets, content hash, and any remote-code request.
    The bundle is checked first (:func:`check_files`, model folders inside it)."""
    root = Path(path)
    manifest = read_manifest(root)
    check_files(root, manifest)
    raw = bundle_recipe_raw(root)
    localized_models(root, raw)
    recorded = _read_json(root, "encoders.json")
    labels = _read_json(root, "labels.json")
    encoders = []
    for i, enc in enumerate(raw.get("encoders") or []):
        entry = recorded[i] if isinstance(recorded, list) and i < len(recorded) else {}
        options = enc.get("options") or {}
        encoders.append({"name": enc.get("name") or enc.get("plugin"), "plugin": enc.get("plugin"),
                         "model": options.get("model"), "weights_digest": (entry.get("identity") or {}).get("model"),
                         "plugin_version": (entry.get("identity") or {}).get("version")})
    text = raw.get("text") or {}
    return {
        "bundle": str(root),
        "content_hash": manifest.get("content_hash"),
        "created": manifest.get("created"),
        "head": manifest.get("head"),
        "fusion": (raw.get("fusion") or {}).get("plugin"),
        "task": (raw.get("task") or {}).get("kind", "classification"),
        **({"targets": labels.get("targets")} if "targets" in labels else {"classes": labels.get("classes")}),
        "encoders": encoders,
        "text": {"source": text.get("source", "dataset"),
                 **({"model": text.get("model")} if text.get("source") == "asr" else {})},
        "trust_remote_code": remote_code_requests(raw),
        "normalize": raw.get("normalize") or "none",
        "files": len(manifest["files"]),
    }


# ---------------------------------------------------------------- checks: what export writes


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


class EnrolmentError(ValueError):
    """Normalisation that cannot be done as asked: a normalised bundle given no enrolment, too few usable enrolment
    clips, or enrolment given to a bundle that does not normalise. The message is one line."""


@dataclass
class Normaliser:
    """Per-encoder statistics that z-score a normalised bundle's features as training z-scored each group.

    Made by :meth:`Bundle.enrol` from unlabelled audio of one speaker or source (``source == "enrolment"``), or by
    :meth:`Bundle.training_normaliser` from the statistics stored in the bundle (``"training corpus"``).
    """

    kind: str  # the bundle's normalize: corpus or speaker
    stats: dict  # encoder name -> fusionkit.pipeline.data.GroupStats
    clips: int  # how many clips the statistics come from
    source: str
    skipped: dict[str, str] = dataclass_field(default_factory=dict)  # enrolment input -> why it could not be used

    def apply(self, name: str, rows) -> np.ndarray:
        """Encoder ``name``'s features of some clips, stacked and z-scored (float32)."""
        from fusionkit.pipeline.data import apply_stats

        if name not in self.stats:
            raise EnrolmentError(f"the normaliser holds no statistics for encoder {name} (made for another bundle?)")
        return apply_stats(rows, self.stats[name])


def _file_key(source) -> tuple | None:
    """What identifies a file's content for the feature memo (path, size, mtime); None for arrays or odd files."""
    if not isinstance(source, (str, Path)):
        return None
    try:
        st = os.stat(source)
        return str(Path(source).resolve()), st.st_size, st.st_mtime_ns
    except OSError:
        return None


MEMO_BYTES = 256 * 2**20
"""Whole-file features kept after enrolment, so that labelling the same files does not encode them again."""


class Bundle:
    """A loaded bundle: ``Bundle.load(path).predict(path_or_array)``."""

    def __init__(self, root: Path, recipe, encoders: dict, head, outputs: list[str],
                 training_stats: tuple[dict, int] | None = None):
        from collections import OrderedDict

        self.root, self.recipe, self.encoders, self.head = root, recipe, encoders, head
        self.regression = recipe.task.kind == "regression"
        #: class names (classification) or target names (regression), in the head's output order
        self.outputs = outputs
        self.classes = [] if self.regression else outputs
        #: ``none``, ``corpus`` or ``speaker``: how training z-scored the features (then predict needs enrolment)
        self.normalize = recipe.normalize
        self._training_stats = training_stats
        self._transcriber = None
        self._memo: OrderedDict = OrderedDict()  # file key -> (features per encoder, transcript)
        self._memo_bytes = 0

    @classmethod
    def load(cls, path: str | Path, verify: bool = True, trust_remote_code: bool = False) -> Bundle:
        """Check the bundle (see :func:`check_files`), then load its head and encoders.

        Nothing about the training data is looked at. A recipe asking for ``trust_remote_code`` is refused
        unless ``trust_remote_code`` is passed here; model folders must lie inside the bundle; each encoder's
        model identity (weights digest) must be the one recorded at export.
        """
        from fusionkit.pipeline.encode import build_encoders
        from fusionkit.recipe import plugin_options
        from fusionkit.sdk.heads import load_head

        root = Path(path)
        check_files(root, read_manifest(root), verify)
        raw = bundle_recipe_raw(root)
        asked = remote_code_requests(raw)
        if asked and not trust_remote_code:
            raise BundleError(f"{root}: its recipe asks for trust_remote_code ({', '.join(asked)}), which runs code "
                              "shipped with a model; if you trust where the bundle came from, pass "
                              "--trust-remote-code (fusionkit.load(path, trust_remote_code=True))")
        recipe = typed_recipe(root, localized_models(root, raw))
        fusion_cls, fusion_options = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)
        head = load_head(fusion_cls, root / "head", fusion_options, recipe.run_seeds()[0])
        labels = json.loads((root / "labels.json").read_text())
        outputs = labels["targets"] if recipe.task.kind == "regression" else labels["classes"]
        encoders = build_encoders(recipe)
        check_identities(root, encoders)
        stats = read_training_stats(root, list(encoders)) if recipe.normalize != "none" else None
        for enc in encoders.values():
            enc.load()
        return cls(root, recipe, encoders, head, outputs, stats)

    @property
    def uses_text(self) -> bool:
        return any(e.modality == "text" for e in self.encoders.values())

    def _texts(self, signals: list, sr: int) -> list[str]:
        if self.recipe.text.source != "asr":
            raise ValueError("this bundle's text encoders need transcripts, and its recipe has no ASR "
                             "(text: {source: asr}); it cannot label raw audio")
        from fusionkit.audio import to_mono_resampled
        from fusionkit.pipeline.transcripts import SAMPLE_RATE, make_transcriber

        if self._transcriber is None:
            self._transcriber = make_transcriber(self.recipe.text)
        return [self._transcriber(to_mono_resampled(x, sr, SAMPLE_RATE)) for x in signals]

    @staticmethod
    def _signal(source, sampling_rate: int | None):
        """(mono signal, its rate): a file read once at its own rate, or an array at ``sampling_rate`` (required;
        integer PCM is scaled to [-1, 1])."""
        from fusionkit.audio import signal_rate, to_mono_resampled
        from fusionkit.pipeline.featurize import load_native

        if isinstance(source, (str, Path)):
            return load_native(source)
        sr = signal_rate(sampling_rate)
        return to_mono_resampled(source, sr, sr), sr

    def _featurize(self, signals: list, sr: int) -> tuple[dict[str, list], list[str] | None]:
        """Each encoder's :class:`~fusionkit.pipeline.featurize.Featurized` outcomes, every signal at its own rate."""
        from fusionkit.pipeline.featurize import featurize

        texts = self._texts(signals, sr) if self.uses_text else None
        outcomes = {}
        for name, enc in self.encoders.items():
            inputs = texts if enc.modality == "text" else signals
            outcomes[name] = list(featurize(enc, inputs, sr))
        return outcomes, texts

    def _outcomes(self, signals: list, sr: int) -> tuple[list[dict | None], list[str] | None, dict]:
        """(per signal: encoder name -> features, None where an encoder failed; transcripts; signal index -> the
        failed outcome)."""
        outcomes, texts = self._featurize(signals, sr)
        failed = {}
        for outs in outcomes.values():
            for out in outs:
                if not out.ok:
                    failed.setdefault(out.index, out)
        feats = [None if i in failed else {name: outcomes[name][i].features for name in self.encoders}
                 for i in range(len(signals))]
        return feats, texts, failed

    def _head_scores(self, feats: list[dict], norm: Normaliser | None) -> list[dict]:
        """The head's scores (class -> probability, or target -> value) for clips' features, normalised by ``norm``
        when the bundle normalises."""
        X = {}
        for name, enc in self.encoders.items():
            rows = [f[name] for f in feats]
            if enc.is_sequence():
                X[name] = rows
            else:
                X[name] = norm.apply(name, rows) if norm is not None else np.stack(rows).astype(np.float32)
        P = self.head.predict(X) if self.regression else self.head.predict_proba(X)
        P = np.asarray(P, dtype=np.float64).reshape(len(feats), len(self.outputs))
        return [dict(zip(self.outputs, map(float, p))) for p in P]

    def _scores(self, signals: list, sr: int, norm: Normaliser | None = None
                ) -> tuple[list[dict | None], list[str] | None, dict]:
        """(scores per signal, None where it failed; transcripts; signal index -> the failed outcome)."""
        feats, texts, failed = self._outcomes(signals, sr)
        ok = [i for i, f in enumerate(feats) if f is not None]
        scores: list[dict | None] = [None] * len(signals)
        for i, score in zip(ok, self._head_scores([feats[i] for i in ok], norm) if ok else []):
            scores[i] = score
        return scores, texts, failed

    # ------------------------------------------------------------ normalisation from enrolment audio

    def enrolment_hint(self) -> str:
        """What to pass to a normalised bundle, in one line."""
        who = "speaker" if self.normalize == "speaker" else "source (corpus, channel, recording set-up)"
        return (f"{self.root}: this bundle was trained with normalize: {self.normalize} (each {self.normalize}'s "
                f"features z-scored with its own statistics), so it needs unlabelled audio of the same {who} to "
                "normalise with: pass --enrol PATH (a folder or files), or --enrol-self [--group-by REGEX] to use "
                "the files being labelled (Python: bundle.predict(x, enrol=bundle.enrol(paths)))")

    def enrol(self, sources, sampling_rate: int | None = None, batch: int = 32) -> Normaliser:
        """A :class:`Normaliser` from unlabelled enrolment audio of one speaker or source: files or signal arrays
        (at ``sampling_rate``), featurized as :meth:`predict` featurizes, each encoder's features' mean and std.

        Inputs that cannot be encoded are listed in ``Normaliser.skipped`` (and warned about); fewer than
        ``MIN_ENROL_CLIPS`` usable ones raise :class:`EnrolmentError`."""
        if self.normalize == "none":
            raise EnrolmentError(f"{self.root}: this bundle was trained with normalize: none; it takes no enrolment")
        from fusionkit.pipeline.data import group_stats

        sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
        feats, skipped = self._enrol_features(sources, sampling_rate, batch)
        if len(feats) < MIN_ENROL_CLIPS:
            why = f" ({next(iter(skipped.items()))[0]}: {next(iter(skipped.values()))})" if skipped else ""
            raise EnrolmentError(f"enrolment: {len(feats)} usable clip(s) of {len(sources)}; at least "
                                 f"{MIN_ENROL_CLIPS} are needed for a mean and a spread{why}")
        if len(feats) < FEW_ENROL_CLIPS:
            log.warning("enrolment: statistics of only %d clips are noisy; %d or more are better", len(feats),
                        FEW_ENROL_CLIPS)
        stats = {name: group_stats([f[name] for f in feats]) for name in self.encoders}
        return Normaliser(self.normalize, stats, len(feats), "enrolment", skipped)

    def training_normaliser(self) -> Normaliser:
        """The training corpus's statistics stored in the bundle. Right only for audio from that corpus's own
        source: for another source this is the raw shift normalisation exists to remove (and for ``normalize:
        speaker`` it is the whole corpus's statistics, not one speaker's)."""
        if self._training_stats is None:
            raise EnrolmentError(f"{self.root}: this bundle was trained with normalize: none; it holds no statistics")
        stats, clips = self._training_stats
        return Normaliser(self.normalize, dict(stats), clips, "training corpus")

    def _enrol_features(self, sources: list, sampling_rate: int | None, batch: int
                        ) -> tuple[list[dict], dict[str, str]]:
        """Features of every enrolment input that every encoder could take, and the others with their reason."""
        feats: list[dict] = []
        skipped: dict[str, str] = {}
        for start in range(0, len(sources), batch):
            part = sources[start:start + batch]
            for i, (got, error) in enumerate(self._whole_files(part, sampling_rate)):
                label = str(part[i]) if isinstance(part[i], (str, Path)) else f"signal {start + i}"
                if got is None:
                    skipped[label] = str(error)
                    log.warning("enrolment: %s skipped: %s", label, error)
                else:
                    feats.append(got[0])
        return feats, skipped

    def _whole_files(self, sources: list, sampling_rate: int | None) -> list[tuple[tuple | None, Exception | None]]:
        """Per source: ((features per encoder, transcript), None), or (None, the error naming the reason); files
        already seen (same path, size and modification time) come from the memo, new ones are decoded, grouped by
        rate, and kept."""
        from fusionkit.audio import AudioError
        from fusionkit.pipeline.featurize import EncodeError

        out: list = [None] * len(sources)
        by_rate: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, src in enumerate(sources):
            key = _file_key(src)
            if key is not None and key in self._memo:
                self._memo.move_to_end(key)
                out[i] = (self._memo[key], None)
                continue
            try:
                x, sr = self._signal(src, sampling_rate)
            except (AudioError, ValueError, OSError) as exc:
                out[i] = (None, exc)
                continue
            by_rate.setdefault(sr, []).append((i, x))
        for sr, items in by_rate.items():
            feats, texts, failed = self._outcomes([x for _, x in items], sr)
            for k, (i, _) in enumerate(items):
                if feats[k] is None:
                    try:
                        failed[k].unwrap()
                    except (AudioError, EncodeError) as exc:
                        out[i] = (None, exc)
                    continue
                out[i] = ((feats[k], texts[k] if texts else None), None)
                self._remember(_file_key(sources[i]), out[i][0])
        return out

    def _remember(self, key: tuple | None, value: tuple) -> None:
        """Keep a file's features for a later whole-file prediction, within ``MEMO_BYTES``."""
        if key is None:
            return
        size = sum(np.asarray(v).nbytes for v in value[0].values())
        self._memo[key] = value
        self._memo_bytes += size
        while self._memo_bytes > MEMO_BYTES and self._memo:
            _, old = self._memo.popitem(last=False)
            self._memo_bytes -= sum(np.asarray(v).nbytes for v in old[0].values())

    def _normaliser(self, enrol, sampling_rate: int | None) -> Normaliser | None:
        """The normaliser ``predict`` uses: ``enrol`` as given (a Normaliser, or enrolment files/arrays), or None
        for a bundle that does not normalise; :class:`EnrolmentError` when the two do not go together."""
        if enrol is None:
            if self.normalize != "none":
                raise EnrolmentError(self.enrolment_hint())
            return None
        if self.normalize == "none":
            raise EnrolmentError(f"{self.root}: this bundle was trained with normalize: none; it takes no enrolment")
        return enrol if isinstance(enrol, Normaliser) else self.enrol(enrol, sampling_rate)

    def features(self, source, sampling_rate: int | None = None) -> dict[str, object]:
        """Each encoder's features of a file or signal array, computed as :meth:`predict` computes them."""
        x, sr = self._signal(source, sampling_rate)
        outcomes, _ = self._featurize([x], sr)
        return {name: outs[0].unwrap(name) for name, outs in outcomes.items()}

    def predict_signals(self, signals: list, sr: int | None = None, enrol=None) -> tuple[list[dict], list[str] | None]:
        """Scores for mono signals at ``sr`` Hz (required: a positive whole number): one dict per signal, class ->
        probability (or target -> value). Each encoder gets the signals resampled to its own rate; a signal
        that cannot be encoded raises :class:`~fusionkit.audio.AudioError` or ``EncodeError`` naming it.
        ``enrol``: as in :meth:`predict`."""
        from fusionkit.audio import signal_rate

        norm = self._normaliser(enrol, sr)
        scores, texts, failed = self._scores(signals, signal_rate(sr), norm)
        for i, out in sorted(failed.items())[:1]:
            out.unwrap(f"signal {i}")
        return scores, texts

    def predict(self, source, sampling_rate: int | None = None, window: float | None = None,
                hop: float | None = None, vad: bool = False, smooth: int = 1, batch: int = 16, enrol=None):
        """Label a file path or a signal array.

        Without ``window``/``vad``: ``{"label", "probabilities"}`` for the whole recording
        (``{"values"}`` for a regression bundle). With them: a list of :class:`Segment`.
        A file is read once at its own rate; an array needs its ``sampling_rate`` (a positive whole number of
        Hz; integer PCM such as int16 is scaled to [-1, 1]). Every encoder gets the signal resampled to its own rate.

        A bundle trained with ``normalize: corpus | speaker`` needs ``enrol``: a :class:`Normaliser` from
        :meth:`enrol`, or the enrolment files/arrays themselves (arrays at ``sampling_rate``); without it
        :class:`EnrolmentError` says what to pass.
        """
        norm = self._normaliser(enrol, sampling_rate)
        if window is None and not vad:
            got, error = self._whole_files([source], sampling_rate)[0]
            if error is not None:
                raise error
            feats, text = got
            out = _result(self._head_scores([feats], norm)[0], self.regression)
            if text:
                out["text"] = text
            return out
        return list(self.timeline(source, sampling_rate, window, hop, vad, smooth, batch, enrol=norm))

    def timeline(self, source, sampling_rate=None, window=None, hop=None, vad=False, smooth=1,
                 batch=16, enrol=None) -> Iterator[Segment]:
        """Windows of a file (read block by block at its own rate) or array, labelled ``batch`` at a time;
        a window that cannot be encoded is left out with a warning. ``enrol``: as in :meth:`predict` (windows are
        normalised with the enrolment clips' statistics)."""
        from fusionkit.audio import signal_rate
        from fusionkit.pipeline.featurize import DEFAULT_SAMPLING_RATE, native_rate
        from fusionkit.windows import iter_windows, smooth_probabilities, speech_regions, window_problem

        problem = window_problem(window, hop, smooth)
        if problem:
            raise ValueError(problem)
        norm = self._normaliser(enrol, sampling_rate)
        window = window or 4.0
        hop = hop or window
        is_file = isinstance(source, (str, Path))
        # an unreadable file's header gives no rate: iter_windows then raises the reason
        rate = (native_rate(source) or DEFAULT_SAMPLING_RATE) if is_file else signal_rate(sampling_rate)
        regions = speech_regions(source, sampling_rate) if vad else None
        spans = iter_windows(source, sampling_rate, window, hop, regions=regions, target_sr=rate)
        segments: list[Segment] = []
        chunk: list = []

        def flush():
            probs, texts, failed = self._scores([x for _, _, x in chunk], rate, norm)
            for i, ((s, e, _), p) in enumerate(zip(chunk, probs)):
                if i in failed:
                    log.warning("%s: window %.2f-%.2f s skipped: %s", source if is_file else "signal", s, e,
                                failed[i].reason)
                    continue
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
