"""``fusionkit export --onnx``: ONNX graphs of a bundle's encoders and head, written into the bundle and listed in
its manifest (so the bundle's checks cover them)."""

from __future__ import annotations

import json
from pathlib import Path

ONNX_DIR = "onnx"
ONNX_INDEX = f"{ONNX_DIR}/onnx.json"
ONNX_FORMAT = 1


def export_onnx(bundle_dir: str | Path, trust_remote_code: bool = False) -> dict:
    """Write ``onnx/`` into an exported bundle: a graph per encoder whose plugin has an ONNX export (``whisper``)
    and one for a ``linear`` head; what has none is listed under ``skipped`` with the reason. Returns the index
    written to ``onnx/onnx.json``; :class:`~fusionkit.bundle.ExportError` when nothing could be exported."""
    from fusionkit.bundle import Bundle, ExportError
    from fusionkit.bundle.files import check_identities
    from fusionkit.recipe import safe_name

    root = Path(bundle_dir)
    # the checks of Bundle.load without loading the encoders: each graph loads the model it exports, in float32
    recipe, head, _, encoders = Bundle.read_parts(root, trust_remote_code=trust_remote_code)
    check_identities(root, encoders)
    _remove_listed(root)
    out = root / ONNX_DIR
    out.mkdir(exist_ok=True)
    index: dict = {"format": ONNX_FORMAT, "encoders": {}, "head": None, "skipped": {}}
    for name, enc in encoders.items():
        why = _encoder_problem(enc)
        if why:
            index["skipped"][f"encoder {name}"] = why
            continue
        from fusionkit.onnx.whisper import export_whisper

        entry = export_whisper(enc, out / f"encoder-{safe_name(name)}.onnx")
        index["encoders"][name] = {"plugin": enc.name, **entry}
    if recipe.fusion.plugin == "linear" and recipe.task.kind != "regression":
        from fusionkit.onnx.linear import export_linear

        index["head"] = {"plugin": "linear", **export_linear(head, out / "head-linear.onnx")}
    else:
        index["skipped"]["head"] = f"fusion head {recipe.fusion.plugin}: no ONNX export (linear only)"
    if not index["encoders"] and index["head"] is None:
        out.rmdir()
        raise ExportError(f"{root}: nothing to export to ONNX ({'; '.join(index['skipped'].values())})")
    (root / ONNX_INDEX).write_text(json.dumps(index, indent=2))
    _relist(root)
    return index


def _encoder_problem(enc) -> str | None:
    """Why an encoder has no ONNX export; None when it has one."""
    if enc.name != "whisper":
        return f"plugin {enc.name}: no ONNX export (whisper only); it runs with its plugin"
    if enc.options.pooling == "none":
        return "whisper with pooling none (frame sequences): no ONNX export"
    return None


def _remove_listed(root: Path) -> None:
    """Files of an earlier ONNX export (listed in the manifest) are removed before writing new ones."""
    from fusionkit.bundle.files import read_manifest

    for rel in read_manifest(root)["files"]:
        if rel.startswith(f"{ONNX_DIR}/"):
            (root / rel).unlink(missing_ok=True)


def _relist(root: Path) -> None:
    """Rewrite the manifest's file list, content hash and versions to cover the ONNX files (a format-1 manifest
    becomes the current format, its hash covering the whole manifest)."""
    from importlib import metadata

    from fusionkit.bundle.files import BUNDLE_FORMAT, _file_hashes, content_hash, read_manifest
    from fusionkit.fileio import atomic_write_text

    manifest = read_manifest(root)
    for dist in ("onnx", "onnxruntime"):
        try:
            manifest.setdefault("versions", {})[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    manifest["format"] = BUNDLE_FORMAT
    manifest["onnx"] = ONNX_INDEX
    manifest["files"] = _file_hashes(root)
    manifest["content_hash"] = content_hash(manifest)
    atomic_write_text(root / "manifest.json", json.dumps(manifest, indent=2))
