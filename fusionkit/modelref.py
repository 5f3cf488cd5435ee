"""Model references: a local folder, a hub id, or ``pkg:<distribution>`` (a model shipped on PyPI).

``resolve_model(ref)`` turns a reference into something ``from_pretrained`` (or a
CTranslate2 loader) takes:

* a local path (``./models/x``, ``~/w``, ``/abs``) -> that folder, which must exist;
* ``pkg:<distribution>`` -> the model folder inside an installed package. Models
  split across several packages (``foo-part1`` + ``foo-part2``, ``bar-part-001..005``)
  are found by their common name; their fragments (``model.bin.part1``,
  ``x.zip.001``...) are joined once into ``default_cache_dir()/models/`` (zips are
  extracted) and reused afterwards. ``pkg:foo-part1``, ``pkg:foo-part2`` and ``pkg:foo``
  name the same model;
* anything else (``openai/whisper-base``) -> returned unchanged: a hub id left to
  ``from_pretrained`` (which works only where the hub is reachable).

``model_digest(path)`` is a cheap content identity for cache keys.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PKG_PREFIX = "pkg:"
# files a model folder is recognised by (any one of them next to a config.json)
WEIGHT_FILES = ("model.bin", "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
# "<name>-part1", "<name>_part_001", "<name>-part-2": one of several packages holding one model
_PART_DIST = re.compile(r"^(?P<stem>.+?)[-_.]?part[-_.]?(?P<idx>\d+)$")
# "model.bin.part1", "model.bin.part_2", "all-mpnet-base-v2.zip.001": fragments of one file
_FRAGMENT = re.compile(r"^(?P<base>.+?)\.(?:part[-_]?(?P<idx1>\d+)|(?P<idx2>\d{3}))$")
_SKIP_NAMES = {"__init__.py", "RECORD", "INSTALLER", "METADATA", "WHEEL", "REQUESTED", "direct_url.json"}


class ModelRefError(ValueError):
    """A model reference that cannot be resolved; the message is one line naming it and the reason."""


def is_pkg_ref(ref: str) -> bool:
    return str(ref).startswith(PKG_PREFIX)


def resolve_model(ref: str) -> str:
    """A local directory for ``ref`` (or, for a hub id, the id itself)."""
    ref = str(ref).strip()
    if not ref:
        raise ModelRefError("model reference is empty")
    if is_pkg_ref(ref):
        return str(resolve_pkg(ref[len(PKG_PREFIX):].strip(), ref))
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelRefError(f"{ref}: not a model folder (a file)")
        return str(path.resolve())
    if ref.startswith(("/", "./", "../", "~")) or ref.count("/") > 1:
        raise ModelRefError(f"{ref}: no such model folder")
    return ref  # a hub id, left to from_pretrained


# ---------------------------------------------------------------- pkg: references


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class _Part:
    dist: metadata.Distribution
    idx: int


def _installed() -> dict[str, metadata.Distribution]:
    out = {}
    for d in metadata.distributions():
        name = d.metadata.get("Name") if d.metadata else None
        if name:
            out.setdefault(_norm(name), d)
    return out


def _parts(name: str, ref: str) -> tuple[str, list[_Part]]:
    """(stem, installed distributions holding the model), several when it is split into parts."""
    installed = _installed()
    want = _norm(name)
    m = _PART_DIST.match(want)
    stem = m.group("stem") if m else want
    parts = []
    for dname, dist in installed.items():
        pm = _PART_DIST.match(dname)
        if pm and _norm(pm.group("stem")) == stem:
            parts.append(_Part(dist, int(pm.group("idx"))))
    if parts:
        parts.sort(key=lambda p: p.idx)
        if m and not any(_norm(p.dist.metadata["Name"]) == want for p in parts):
            raise ModelRefError(f"{ref}: distribution not installed (pip install {name})")
        return stem, parts
    if want in installed:
        return want, [_Part(installed[want], 0)]
    raise ModelRefError(f"{ref}: distribution not installed (pip install {name})")


def _files(dist: metadata.Distribution) -> list[Path]:
    out = []
    for f in dist.files or []:
        if f.name in _SKIP_NAMES or "__pycache__" in f.parts or any(p.endswith(".dist-info") for p in f.parts):
            continue
        if f.parts and f.parts[0] == "..":
            continue  # console scripts and the like, outside site-packages
        p = Path(f.locate())
        if p.is_file():
            out.append(p)
    return out


def _model_dir(files: list[Path]) -> Path | None:
    """The shallowest folder holding a config.json next to a weights file (or a sentence-transformers modules.json)."""
    dirs = {p.parent for p in files}
    good = [d for d in dirs if (d / "config.json").is_file()
            and (any((d / w).is_file() for w in WEIGHT_FILES) or (d / "modules.json").is_file())]
    return min(good, key=lambda d: (len(d.parts), str(d))) if good else None


def _fragments(files: list[Path]) -> dict[str, list[tuple[int, Path]]]:
    groups: dict[str, list[tuple[int, Path]]] = {}
    for p in files:
        m = _FRAGMENT.match(p.name)
        if m:
            idx = int(m.group("idx1") or m.group("idx2"))
            groups.setdefault(m.group("base"), []).append((idx, p))
    for frags in groups.values():
        frags.sort()
    return groups


def resolve_pkg(name: str, ref: str | None = None) -> Path:
    """The model folder of an installed distribution, joining split files into the cache when needed."""
    ref = ref or f"{PKG_PREFIX}{name}"
    if not name:
        raise ModelRefError(f"{ref}: expected pkg:<distribution>")
    stem, parts = _parts(name, ref)
    files = [f for p in parts for f in _files(p.dist)]
    frags = _fragments(files)
    if not frags:
        found = _model_dir(files)
        if found is None:
            dist_name = parts[0].dist.metadata["Name"]
            raise ModelRefError(f"{ref}: no model folder (config.json + weights) in distribution {dist_name}")
        return found
    for base, items in frags.items():
        idxs = [i for i, _ in items]
        expected = list(range(idxs[0], idxs[0] + len(idxs)))
        if idxs != expected or idxs[0] not in (0, 1):
            missing = sorted(set(range(1, max(idxs) + 1)) - set(idxs))
            raise ModelRefError(f"{ref}: fragments of {base} are incomplete (missing part {missing}); "
                                f"install every {stem}-part package")
    return _assemble(stem, parts, files, frags, ref)


def _assembly_id(stem: str, parts: list[_Part], frags: dict) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(f"{p.dist.metadata['Name']}=={p.dist.version};".encode())
    for base, items in sorted(frags.items()):
        for i, f in items:
            h.update(f"{base}:{i}:{f.stat().st_size};".encode())
    return f"{stem}-{h.hexdigest()[:12]}"


def _assemble(stem: str, parts: list[_Part], files: list[Path], frags: dict, ref: str) -> Path:
    from fusionkit.fileio import default_cache_dir

    root = default_cache_dir() / "models"
    target = root / _assembly_id(stem, parts, frags)
    if (target / ".complete").is_file():
        return _model_dir_in(target, ref)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{target.name}.", suffix=".tmp"))
    tmp.chmod(0o755)
    try:
        fragment_files = {f for items in frags.values() for _, f in items}
        frag_dirs = {f.parent for f in fragment_files}
        # companions: the other files in the folders that hold fragments (config.json, tokenizer...)
        for f in files:
            if f in fragment_files or f.parent not in frag_dirs:
                continue
            shutil.copy2(f, tmp / f.name)
        for base, items in frags.items():
            joined = tmp / base
            with open(joined, "wb") as out:
                for _, f in items:
                    with open(f, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 22)
            if zipfile.is_zipfile(joined):
                _extract(joined, tmp, ref)
                joined.unlink()
        (tmp / ".complete").write_text(ref + "\n")
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / ".complete").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _model_dir_in(target, ref)


def _extract(archive: Path, dest: Path, ref: str) -> None:
    dest_resolved = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                out = (dest / member).resolve()
                if dest_resolved not in out.parents and out != dest_resolved:
                    raise ModelRefError(f"{ref}: archive {archive.name} has an unsafe member path {member!r}")
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise ModelRefError(f"{ref}: joined archive {archive.name} is not a valid zip ({exc})") from None


def _model_dir_in(target: Path, ref: str) -> Path:
    files = [p for p in target.rglob("*") if p.is_file()]
    found = _model_dir(files)
    if found is None:
        raise ModelRefError(f"{ref}: no model folder (config.json + weights) after joining into {target}")
    return found


# ---------------------------------------------------------------- identity


def model_digest(path: str | Path, head_bytes: int = 1 << 20) -> str:
    """Content identity of a model folder: file names and sizes, small files in full, big files' first/last MB.

    A hub id (no such folder) is its own identity.
    """
    p = Path(path).expanduser()
    if not p.exists():
        return f"hub:{path}"
    h = hashlib.blake2b(digest_size=16)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    for f in files:
        size = f.stat().st_size
        rel = f.name if p.is_file() else f.relative_to(p).as_posix()
        h.update(f"{rel}\0{size}\0".encode())
        with open(f, "rb") as fh:
            if size <= 2 * head_bytes:
                h.update(fh.read())
            else:
                h.update(fh.read(head_bytes))
                fh.seek(size - head_bytes)
                h.update(fh.read(head_bytes))
    return h.hexdigest()
