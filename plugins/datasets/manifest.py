"""``manifest``: your own corpus, listed in a CSV or JSON Lines file.

Columns: ``path`` (relative to the manifest's folder or absolute), ``label``, ``speaker``;
optional ``id``, ``text``, ``partition`` (train/dev/test), ``session``; any other column is kept as metadata.
``data.root`` is the manifest file itself, or a folder holding ``options.file``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pydantic import Field

from fusionkit import hookimpl
from fusionkit.interfaces import Clip, Dataset, Options


class ManifestOptions(Options):
    file: str = Field("manifest.csv", description="manifest name inside data.root, when data.root is a folder")
    path_column: str = "path"
    label_column: str = "label"
    speaker_column: str = "speaker"
    text_column: str = "text"


class ManifestError(ValueError):
    pass


class Manifest(Dataset):
    name = "manifest"
    description = "any corpus listed in a CSV/JSONL file (path, label, speaker, optional text)"
    Options = ManifestOptions

    def manifest_path(self) -> Path:
        root = Path(self.root)
        return root / self.options.file if root.is_dir() else root

    def rows(self) -> list[dict]:
        path = self.manifest_path()
        if not path.exists():
            raise ManifestError(f"{path}: manifest not found")
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            rows = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ManifestError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            return rows
        return list(csv.DictReader(text.splitlines()))

    def clips(self) -> list[Clip]:
        o = self.options
        path = self.manifest_path()
        rows = self.rows()
        missing = [c for c in (o.path_column, o.label_column, o.speaker_column) if rows and c not in rows[0]]
        if missing:
            raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}")
        out = []
        for n, row in enumerate(rows, 2):
            audio = row.get(o.path_column) or None
            full = (path.parent / audio) if audio and not Path(audio).is_absolute() else (Path(audio) if audio else None)
            cid = str(row.get("id") or (Path(audio).with_suffix("").as_posix() if audio else f"row{n}"))
            meta = {k: v for k, v in row.items() if k not in (o.path_column, o.label_column, o.speaker_column, o.text_column)}
            out.append(Clip(id=cid, path=full, label=(row.get(o.label_column) or None),
                            speaker=str(row.get(o.speaker_column, "")), text=row.get(o.text_column) or None, meta=meta))
        return out

    def partitions(self):
        parts = {c.id: c.meta["partition"] for c in self.clips() if c.meta.get("partition")}
        return parts or None


@hookimpl
def register_datasets(register):
    register(Manifest)
