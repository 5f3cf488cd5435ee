"""registry.toml, pyproject.toml's entry points and the installed entry points must agree."""

from __future__ import annotations

import tomllib
from collections import Counter
from importlib import metadata

from core_fixtures import ROOT

GROUP_KIND = {"fusionkit.encoders": "encoder", "fusionkit.fusions": "fusion", "fusionkit.datasets": "dataset"}
FIELDS = ("name", "kind", "entry_point", "modality", "distribution", "extra", "default_model", "description")


def catalogue() -> list[dict]:
    with open(ROOT / "registry.toml", "rb") as fh:
        return tomllib.load(fh)["plugin"]


def declared() -> set[tuple[str, str, str]]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        eps = tomllib.load(fh)["project"]["entry-points"]
    return {(name, GROUP_KIND[group], value) for group, table in eps.items() if group in GROUP_KIND
            for name, value in table.items()}


def test_every_catalogue_entry_is_complete_and_unique():
    entries = catalogue()
    for e in entries:
        missing = [f for f in FIELDS if f not in e]
        assert not missing, f"registry.toml: plugin {e.get('name')!r} lacks {missing}"
        assert e["kind"] in GROUP_KIND.values(), f"registry.toml: plugin {e['name']!r}: kind {e['kind']!r}"
        assert e["description"].strip() and "\n" not in e["description"], f"{e['name']}: one-line description"
    dupes = [k for k, n in Counter((e["kind"], e["name"]) for e in entries).items() if n > 1]
    assert not dupes, f"registry.toml lists these twice: {dupes}"


def test_catalogue_matches_pyproject_entry_points():
    listed = {(e["name"], e["kind"], e["entry_point"]) for e in catalogue() if e["distribution"] == "fusionkit"}
    wanted = declared()
    assert not wanted - listed, f"declared in pyproject.toml but not in registry.toml: {sorted(wanted - listed)}"
    assert not listed - wanted, f"in registry.toml but not declared in pyproject.toml: {sorted(listed - wanted)}"


def test_extras_named_in_the_catalogue_exist():
    with open(ROOT / "pyproject.toml", "rb") as fh:
        extras = set(tomllib.load(fh)["project"]["optional-dependencies"])
    for e in catalogue():
        if e["distribution"] == "fusionkit" and e["extra"]:
            assert e["extra"] in extras, f"registry.toml: {e['name']}: extra {e['extra']!r} is not in pyproject.toml"


def test_installed_entry_points_match_pyproject():
    """Catches a stale editable install: run `pip install --no-deps -e .` after editing entry points."""
    installed = {(ep.name, GROUP_KIND[ep.group], ep.value) for ep in metadata.distribution("fusionkit").entry_points
                 if ep.group in GROUP_KIND}
    wanted = declared()
    assert installed == wanted, (f"missing from the install: {sorted(wanted - installed)}; "
                                 f"installed but not declared: {sorted(installed - wanted)}")


def test_catalogue_kind_matches_the_registered_class(tmp_path, monkeypatch):
    """Each built-in entry point registers a plugin of the kind and name the catalogue says."""
    from fusionkit.registry import build_registry

    monkeypatch.setenv("FUSIONKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("FUSIONKIT_BLOCK_PLUGINS", raising=False)
    reg = build_registry()
    broken = [f"{p.name}: {p.reason}" for p in reg.problems if p.status == "broken"]
    assert not broken, f"built-in plugins fail to load: {broken}"
    for e in catalogue():
        info = reg.plugins.get((e["kind"], e["name"]))
        assert info is not None, f"registry.toml: {e['kind']} {e['name']!r} is not registered by {e['entry_point']}"
        assert info.entry_point == e["entry_point"]
        if e["kind"] == "encoder":
            assert e["modality"] == info.cls.modality, f"{e['name']}: modality {e['modality']} vs {info.cls.modality}"
