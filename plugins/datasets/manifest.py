"""``manifest``: your own corpus, listed in a CSV or JSON Lines file.

Columns (names configurable in options): ``path`` (relative to the manifest's folder, or
absolute), ``label`` (may be empty: unlabelled clips are dropped for classification but kept
for regression), ``speaker``; optional ``id`` (default: the path without suffix), ``text``,
``partition`` (e.g. train/dev/test, for ``split: {kind: predefined}``), ``session`` (for
``split: {kind: session}``). Every other column is kept in meta; numbers such as
``valence``/``arousal`` serve as regression targets.
``data.root`` is the manifest file itself (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``) or a
folder holding ``options.file``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pydantic import Field

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Clip, Dataset, Options


class ManifestOptions(Options):
    file: str = Field("manifest.csv", description="manifest name inside data.root, when data.root is a folder")
    id_column: str = "id"
    path_column: str = "path"
    label_column: str = "label"
    speaker_column: str = "speaker"
    text_column: str = "text"
    partition_column: str = "partition"
    session_column: str = "session"


class ManifestError(ValueError):
    pass


def read_rows(path: Path) -> list[dict]:
    """Rows of a CSV/TSV or JSON Lines manifest, as dicts."""
    if not path.exists():
        raise ManifestError(f"{path}: manifest not found")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ManifestError(f"{path}:{n}: each line must be a JSON object, got {type(row).__name__}")
            rows.append(row)
        return rows
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    return list(csv.DictReader(text.splitlines(), delimiter=delimiter))


def _cell(row: dict, column: str) -> str | None:
    value = row.get(column)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


class Manifest(Dataset):
    name = "manifest"
    description = "any corpus listed in a CSV/JSONL file (path, label, speaker, optional text, partition, session)"
    Options = ManifestOptions

    def manifest_path(self) -> Path:
        if self.root is None:
            raise ManifestError("the manifest dataset needs data.root (the manifest file or its folder)")
        root = Path(self.root)
        return root / self.options.file if root.is_dir() else root

    def clips(self) -> list[Clip]:
        o = self.options
        path = self.manifest_path()
        rows = read_rows(path)
        line = 1 if path.suffix.lower() in (".jsonl", ".ndjson") else 2
        columns = set().union(*(r.keys() for r in rows)) if rows else set()
        missing = [c for c in (o.path_column, o.speaker_column) if rows and c not in columns]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}")
        own = {o.id_column, o.path_column, o.label_column, o.speaker_column, o.text_column}
        out, seen = [], {}
        for n, row in enumerate(rows, line):
            audio = _cell(row, o.path_column)
            speaker = _cell(row, o.speaker_column)
            if speaker is None:
                raise ManifestError(f"{path}:{n}: {o.speaker_column} is empty (every clip needs a speaker)")
            if audio is None and _cell(row, o.text_column) is None:
                raise ManifestError(f"{path}:{n}: neither {o.path_column} nor {o.text_column} is given")
            full = None
            if audio:
                full = Path(audio) if Path(audio).is_absolute() else path.parent / audio
            cid = _cell(row, o.id_column) or (Path(audio).with_suffix("").as_posix() if audio else f"row{n}")
            if cid in seen:
                raise ManifestError(f"{path}:{n}: clip id {cid!r} repeats line {seen[cid]}")
            seen[cid] = n
            meta = {k: v for k, v in row.items() if k not in own}
            if o.partition_column != "partition" and o.partition_column in row:
                meta["partition"] = _cell(row, o.partition_column)
            if o.session_column != "session" and o.session_column in row:
                meta["session"] = _cell(row, o.session_column)
            out.append(Clip(id=cid, path=full, label=_cell(row, o.label_column), speaker=speaker,
                            text=_cell(row, o.text_column), meta=meta))
        return out

    def partitions(self) -> dict[str, str] | None:
        parts = {c.id: str(c.meta["partition"]) for c in self.clips() if c.meta.get("partition")}
        return parts or None


@hookimpl
def register_datasets(register):
    register(Manifest)
