"""``folders``: any corpus described by its folder layout, with no manifest to write.

Each audio file under ``data.root`` (any depth) is placed by its path relative to the root, e.g.
``liuchang/angry/201.wav``: its label and speaker come either from

* ``label_from`` / ``speaker_from``: a folder of the path (``{folder: -1}`` is the file's own
  folder, ``{folder: 0}`` the first under root), a field of the file name (``{field: 0, sep: "_"}``),
  or a regular expression (``{regex: ...}``, also applied to a chosen folder or field to cut it), or
* ``pattern``: one regular expression searched in the relative path, with named groups ``label``
  and ``speaker`` (optionally ``id`` and ``text``; other named groups go to meta, e.g. ``session``
  for ``split: {kind: session}`` and ``partition`` for ``split: {kind: predefined}``).

A file that cannot be placed (no such folder or field, the expression does not match, an empty
value, a hidden file, a repeated id) is never dropped silently: :meth:`Folders.survey` lists it with
the reason, ``fusionkit validate`` prints the list and a run reports it. Files whose suffix is not an
audio one are counted per suffix.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path, PurePosixPath

from pydantic import Field, field_validator, model_validator

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Clip, Dataset, Options
from fusionkit_plugins.datasets.common import corpus_dir

log = logging.getLogger("fusionkit")

OWN_GROUPS = frozenset({"label", "speaker", "id", "text"})
SHOWN = 5  # unplaced files named in a run's warning


class PlaceError(ValueError):
    """Why one file cannot be placed (its label or speaker cannot be read from its path)."""


def _regex(value: str | None) -> str | None:
    """``value`` when it compiles as a regular expression, else a one-line error."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression ({exc})") from None
    return value


class Part(Options):
    """Where one value (a label, a speaker) is read from a file's path relative to the root."""

    folder: int | None = Field(None, description="a folder of the relative path: 0 the first under root, "
                                                 "-1 the file's own folder, -2 the one above it")
    field: int | None = Field(None, description="a field of the file name without its suffix, split at sep "
                                                "(0 the first, -1 the last)")
    sep: str = Field("_", min_length=1, description="separator of the file-name fields")
    regex: str | None = Field(None, description="searched in the chosen folder or field, else in the whole "
                                                "relative path; the value is its first group, else the whole match")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return _regex(value)

    @model_validator(mode="after")
    def _one_source(self) -> Part:
        if self.folder is not None and self.field is not None:
            raise ValueError("give folder or field, not both")
        if self.folder is None and self.field is None and self.regex is None:
            raise ValueError("give folder, field or regex")
        return self

    def take(self, rel: PurePosixPath) -> str:
        """The value this part names in ``rel``, or :class:`PlaceError` saying why there is none."""
        piece = rel.as_posix()
        if self.folder is not None:
            folders = rel.parts[:-1]
            if not -len(folders) <= self.folder < len(folders):
                where = f"the path has {len(folders)} folder(s)" if folders else "the file lies directly under root"
                raise PlaceError(f"no folder {self.folder} ({where})")
            piece = folders[self.folder]
        elif self.field is not None:
            fields = rel.stem.split(self.sep)
            if not -len(fields) <= self.field < len(fields):
                raise PlaceError(f"no field {self.field} in {rel.stem!r} split at {self.sep!r} "
                                 f"({len(fields)} field(s))")
            piece = fields[self.field]
        if self.regex is not None:
            piece = _search(self.regex, piece)
        return piece.strip()


def _search(regex: str, text: str) -> str:
    """The first group (else the whole match) of ``regex`` searched in ``text``."""
    m = re.search(regex, text)
    if m is None:
        raise PlaceError(f"regex {regex} does not match {text!r}")
    value = m.group(1) if m.re.groups else m.group(0)
    return value or ""


class FoldersOptions(Options):
    pattern: str | None = Field(None, description="regular expression searched in each file's path relative to "
                                                  "root (/ separators): named groups label and speaker, optionally "
                                                  "id and text; other named groups go to meta")
    label_from: Part | None = Field(None, description="where the label is: {folder: N}, {field: N, sep: S}, {regex: R}")
    speaker_from: Part | None = Field(None, description="where the speaker is (same forms as label_from)")
    suffixes: list[str] = Field([".wav", ".flac"], min_length=1, description="audio file suffixes (any case)")

    @field_validator("pattern")
    @classmethod
    def _pattern_groups(cls, value: str | None) -> str | None:
        if value is None:
            return None
        missing = [g for g in ("label", "speaker") if g not in re.compile(_regex(value)).groupindex]
        if missing:
            raise ValueError(f"needs the named group(s) {', '.join(f'(?P<{g}>...)' for g in missing)}")
        return value

    @field_validator("suffixes")
    @classmethod
    def _dotted(cls, value: list[str]) -> list[str]:
        names = [s.strip().lower().lstrip(".") for s in value]
        if not all(names):
            raise ValueError("a suffix is empty")
        return sorted({f".{s}" for s in names})

    @model_validator(mode="after")
    def _one_description(self) -> FoldersOptions:
        parts = [n for n in ("label_from", "speaker_from") if getattr(self, n) is not None]
        if self.pattern is not None and parts:
            raise ValueError(f"give pattern or label_from/speaker_from, not both ({', '.join(parts)} given)")
        if self.pattern is None and len(parts) < 2:
            need = [n for n in ("label_from", "speaker_from") if n not in parts]
            raise ValueError(f"describe the layout: give pattern (named groups label and speaker), or label_from "
                             f"and speaker_from ({' and '.join(need)} missing)")
        return self


@dataclass
class Survey:
    """What a walk of the corpus folder found: the clips, the files it could not place, the other files."""

    root: Path
    clips: list[Clip] = dataclass_field(default_factory=list)
    unplaced: list[tuple[str, str]] = dataclass_field(default_factory=list)  # (path relative to root, reason)
    other: Counter = dataclass_field(default_factory=Counter)  # files without an audio suffix, per suffix


def _hidden(rel: PurePosixPath) -> bool:
    return any(part.startswith(".") for part in rel.parts)


class Folders(Dataset):
    """A corpus read from its folder layout: label and speaker from folders, file-name fields or a regex."""

    name = "folders"
    description = "any corpus described by its folder layout (label/speaker from folders, name fields or a regex)"
    Options = FoldersOptions

    def __init__(self, root: Path | None, options: FoldersOptions):
        super().__init__(root, options)
        self._survey: Survey | None = None
        self.unplaced: list[tuple[str, str]] = []

    def survey(self) -> Survey:
        """Walk the corpus once: every audio file placed as a clip or listed with the reason it could not be."""
        if self._survey is None:
            root = corpus_dir(self.root, self.name)
            found = Survey(root)
            seen: dict[str, str] = {}
            for path in sorted(root.rglob("*")):
                self._visit(path, root, found, seen)
            self._survey = found
        return self._survey

    def _visit(self, path: Path, root: Path, found: Survey, seen: dict[str, str]) -> None:
        """Place one file of the walk in ``found`` (a clip, an unplaced file or an other file)."""
        if path.is_dir():
            return
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if path.suffix.lower() not in self.options.suffixes:
            found.other[path.suffix.lower() or "(no suffix)"] += 1
            return
        try:
            clip = self._place(path, rel)
            if clip.id in seen:
                raise PlaceError(f"clip id {clip.id!r} is already used by {seen[clip.id]}")
        except PlaceError as exc:
            found.unplaced.append((rel.as_posix(), str(exc)))
            return
        seen[clip.id] = rel.as_posix()
        found.clips.append(clip)

    def _place(self, path: Path, rel: PurePosixPath) -> Clip:
        """The clip of one audio file, or :class:`PlaceError` with the reason it cannot be placed."""
        if not path.is_file():
            raise PlaceError("not a readable file (a link to nothing?)")
        if _hidden(rel):
            raise PlaceError("hidden (a name in its path starts with '.', e.g. a macOS ._ file)")
        values = self._values(rel)
        for key in ("label", "speaker"):
            if not values.get(key):
                raise PlaceError(f"empty {key}")
        meta = {k: v for k, v in values.items() if k not in OWN_GROUPS}
        return Clip(id=values.get("id") or rel.with_suffix("").as_posix(), path=path, label=values["label"],
                    speaker=values["speaker"], text=values.get("text") or None, meta=meta)

    def _values(self, rel: PurePosixPath) -> dict[str, str]:
        """label, speaker (and id, text, meta groups) of a relative path, as the options describe them."""
        o = self.options
        if o.pattern is None:
            out = {}
            for key, part in (("label", o.label_from), ("speaker", o.speaker_from)):
                try:
                    out[key] = part.take(rel)
                except PlaceError as exc:
                    raise PlaceError(f"{key}: {exc}") from None
            return out
        m = re.search(o.pattern, rel.as_posix())
        if m is None:
            raise PlaceError("does not match pattern")
        return {k: (v or "").strip() for k, v in m.groupdict().items()}

    def clips(self) -> list[Clip]:
        found = self.survey()
        self.unplaced = list(found.unplaced)
        for rel, why in found.unplaced:  # listed under skipped in a run's metrics.json and report
            self.skip(rel, why)
        if found.unplaced:
            first = "; ".join(f"{p}: {why}" for p, why in found.unplaced[:SHOWN])
            more = f"; and {len(found.unplaced) - SHOWN} more" if len(found.unplaced) > SHOWN else ""
            log.warning("%s: %d audio file(s) could not be placed (%s%s); `fusionkit validate` lists them",
                        found.root, len(found.unplaced), first, more)
        return list(found.clips)

    def partitions(self) -> dict[str, str] | None:
        """Clip id -> the ``partition`` group of ``pattern``, when it has one (for ``split: {kind: predefined}``)."""
        parts = {c.id: c.meta["partition"] for c in self.survey().clips if c.meta.get("partition")}
        return parts or None


@hookimpl
def register_datasets(register):
    register(Folders)
