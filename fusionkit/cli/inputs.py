"""Audio inputs named on a command line: files as given, folders replaced by the audio files under them; what a
folder holds besides readable audio is listed with the reason (``predict``, ``predict --enrol``, ``serve --enrol``)."""

from __future__ import annotations

import os
from pathlib import Path


def expand_audio_paths(paths) -> tuple[list[Path], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(files to label, files that cannot be read, entries passed over): files as given; folders replaced by
    the audio files under them, sorted; every other entry under a folder is listed with the reason."""
    files: list[Path] = []
    broken: list[tuple[Path, str]] = []
    passed: list[tuple[Path, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            found, bad, other = _scan_folder(p)
            files, broken, passed = files + found, broken + bad, passed + other
        else:
            files.append(p)
    return files, broken, passed


HIDDEN_FILE = "hidden (its name starts with '.', e.g. a macOS ._ file)"
HIDDEN_FOLDER = "hidden folder (its name starts with '.'; not searched)"


def _scan_folder(folder: Path) -> tuple[list[Path], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Audio files under ``folder`` (symlinks to files followed, to folders not); unreadable or dangling ones;
    and what is passed over: hidden files and folders (names starting with '.', as the dataset readers skip
    them) and what is not audio by its name."""
    from fusionkit.windows import AUDIO_SUFFIXES

    files, broken, passed = [], [], []
    for here, dirs, names in os.walk(folder):
        for name in sorted(dirs):
            if name.startswith("."):
                passed.append((Path(here) / name, HIDDEN_FOLDER))
            elif (Path(here) / name).is_symlink():
                passed.append((Path(here) / name, "a symlink to a folder (not followed)"))
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in sorted(names):
            q = Path(here) / name
            audio = q.suffix.lower() in AUDIO_SUFFIXES
            if name.startswith("."):
                passed.append((q, HIDDEN_FILE))
            elif q.is_symlink() and not q.exists():
                reason = f"dangling symlink (to {os.readlink(q)}, which does not exist)"
                (broken if audio else passed).append((q, reason))
            elif not q.is_file():
                passed.append((q, "not a regular file"))
            elif not audio:
                passed.append((q, f"not an audio file name ({q.suffix or 'no suffix'})"))
            elif not os.access(q, os.R_OK):
                broken.append((q, "not readable (permission denied)"))
            else:
                files.append(q)
    return sorted(files), broken, passed
