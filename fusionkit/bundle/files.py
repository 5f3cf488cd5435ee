"""What a bundle holds and may load: its manifest, file checks, remote-code and model-path rules, the
training statistics file, and a description for ``predict --show``."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUNDLE_FORMAT = 2
"""The manifest's format: 2 hashes the whole manifest (:func:`content_hash`); 1, written by earlier releases,
hashed its ``files`` mapping only. Both load."""
MANIFEST_FORMATS = (1, 2)
NORMALIZATION_FILE = "normalization.safetensors"



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


def content_hash(manifest: dict) -> str:
    """A manifest's content hash: SHA-256 of its canonical JSON (sorted keys, no spaces) without the
    ``content_hash`` field; for a format-1 manifest (earlier releases), of its ``files`` mapping only."""
    if manifest.get("format") == 1:
        return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()
    body = {k: v for k, v in manifest.items() if k != "content_hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()




def write_training_stats(path: Path, prep) -> None:
    """The training corpus's statistics per encoder (raw features of every training clip) as safetensors:
    ``<encoder>/mean`` and ``<encoder>/std``, with the clip count as metadata (``clips``).

    One metadata key only: safetensors writes its metadata in a random order (a Rust HashMap), so two keys made
    two exports of one run differ. The normalisation kind is in the manifest (``normalize.kind``) and the recipe."""
    from safetensors.numpy import save_file

    from fusionkit.pipeline.data import corpus_stats

    stats = corpus_stats(prep.features, prep.train_clips)
    arrays = {f"{name}/{part}": np.ascontiguousarray(getattr(s, part), dtype=np.float64)
              for name, s in stats.items() for part in ("mean", "std")}
    save_file(arrays, str(path), metadata={"clips": str(len(prep.train_clips))})



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


def check_manifest(root: Path, manifest: dict) -> None:
    """Refuse a manifest of a format this release does not read, and one edited after export (its content hash
    does not match). This gives integrity, not authenticity: anyone can write a new manifest with a new hash."""
    path = root / "manifest.json"
    fmt = manifest.get("format")
    if type(fmt) is not int or fmt not in MANIFEST_FORMATS:
        raise BundleError(f"{path}: format {fmt!r} is not one this fusionkit reads "
                          f"({', '.join(map(str, MANIFEST_FORMATS))}; a newer release may have written it)")
    if manifest.get("content_hash") != content_hash(manifest):
        raise BundleError(f"{path}: edited after export (its content hash does not match)")


def check_files(root: Path, manifest: dict, verify: bool = True) -> None:
    """Refuse a manifest edited after export (:func:`check_manifest`, always: it is cheap), symlinks and other
    non-regular files in the bundle, files its manifest lists that are missing, files it does not list, and
    (``verify``) files whose content changed since export."""
    check_manifest(root, manifest)
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


def _modality(plugin: object) -> str | None:
    """The encoder plugin's ``modality`` (its class looked up, nothing loaded); None when it is not installed."""
    from fusionkit.registry import PluginError, registry

    try:
        return str(registry().get("encoder", str(plugin)).modality)
    except PluginError:
        return None


def describe(path: str | Path) -> dict:
    """What a bundle loads, from its files alone (no model is loaded): encoders with plugin, modality, model
    reference and weights digest, fusion head, classes or targets, content hash, and any remote-code request;
    ``text`` (where transcripts come from) only when an encoder reads text (or its plugin, not installed, might),
    else None. The bundle is checked first (:func:`check_files`, model folders inside it)."""
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
                         "modality": _modality(enc.get("plugin")), "model": options.get("model"),
                         "weights_digest": (entry.get("identity") or {}).get("model"),
                         "plugin_version": (entry.get("identity") or {}).get("version"),
                         "trained_on": options.get("device")})
    head_file = _read_json(root, "head/head.json") if (root / "head" / "head.json").is_file() else {}
    text = raw.get("text") or {}
    return {
        "bundle": str(root),
        "content_hash": manifest.get("content_hash"),
        "created": manifest.get("created"),
        "head": manifest.get("head"),
        "fusion": (raw.get("fusion") or {}).get("plugin"),
        "head_trained_on": ((head_file.get("options") or {}) if isinstance(head_file, dict) else {}).get("device"),
        "task": (raw.get("task") or {}).get("kind", "classification"),
        **({"targets": labels.get("targets")} if "targets" in labels else {"classes": labels.get("classes")}),
        "encoders": encoders,
        "text": {"source": text.get("source", "dataset"),
                 **({"model": text.get("model")} if text.get("source") == "asr" else {})}
        if any(e["modality"] != "audio" for e in encoders) else None,
        "trust_remote_code": remote_code_requests(raw),
        "normalize": raw.get("normalize") or "none",
        "files": len(manifest["files"]),
    }


