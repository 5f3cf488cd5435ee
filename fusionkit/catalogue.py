"""registry.toml: the catalogue of built-in plugins, merged with what is actually installed."""

from __future__ import annotations

import tomllib
from pathlib import Path

from fusionkit.plugins import Registry

CATALOGUE = Path(__file__).with_name("registry.toml")  # a link to the repository's registry.toml


def catalogue() -> list[dict]:
    """The ``[[plugin]]`` entries; empty when the file is missing (listing still shows what is installed)."""
    try:
        with open(CATALOGUE, "rb") as fh:
            return tomllib.load(fh).get("plugin", [])
    except FileNotFoundError:
        return []


def plugin_rows(reg: Registry) -> list[dict]:
    """One row per plugin known to the catalogue or found installed."""
    entries = {(e["kind"], e["name"]): e for e in catalogue()}
    rows = []
    for info in reg.all():
        entry = entries.pop((info.kind, info.name), {})
        cls = info.cls
        rows.append({
            "kind": info.kind,
            "name": info.name,
            "status": info.status,
            "origin": info.origin,
            "distribution": info.distribution,
            "entry_point": info.entry_point,
            "modality": getattr(cls, "modality", entry.get("modality", "")) if info.kind == "encoder" else entry.get("modality", ""),
            "description": getattr(cls, "description", "") or entry.get("description", ""),
            "reason": info.reason,
        })
    for (kind, name), e in entries.items():
        extra = e.get("extra") or ""
        rows.append({
            "kind": kind, "name": name, "status": "not installed", "origin": "built-in",
            "distribution": e.get("distribution", "fusionkit"), "entry_point": e["entry_point"],
            "modality": e.get("modality", ""), "description": e.get("description", ""),
            "reason": f"not found among installed entry points (pip install 'fusionkit[{extra}]')" if extra
            else "not found among installed entry points (reinstall fusionkit)",
        })
    return sorted(rows, key=lambda r: (r["kind"], r["name"]))
