"""registry.toml, pyproject.toml's entry points and the installed entry points must agree."""

from __future__ import annotations

from collections import Counter
from importlib import metadata

import tomllib
from core_fixtures import ROOT

GROUP_KIND = {"fusionkit.encoders": "encoder", "fusionkit.fusions": "fusion", "fusionkit.datasets": "dataset"}
FIELDS = {"name", "kind", "extra"}  # the rest is known from the entry point or the class: one source per fact


def catalogue() -> list[dict]:
    with open(ROOT / "registry.toml", "rb") as fh:
        return tomllib.load(fh)["plugin"]


def declared() -> set[tuple[str, str, str]]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        eps = tomllib.load(fh)["project"]["entry-points"]
    return {(name, GROUP_KIND[group], value) for group, table in eps.items() if group in GROUP_KIND
            for name, value in table.items()}


def test_the_package_reads_the_repository_catalogue():
    from fusionkit.registry import CATALOGUE

    assert CATALOGUE.resolve() == (ROOT / "registry.toml").resolve()


def test_every_catalogue_entry_is_complete_unique_and_holds_only_its_own_facts():
    entries = catalogue()
    for e in entries:
        assert set(e) == FIELDS, f"registry.toml: plugin {e.get('name')!r} has {sorted(e)}, wanted {sorted(FIELDS)}"
        assert e["kind"] in GROUP_KIND.values(), f"registry.toml: plugin {e['name']!r}: kind {e['kind']!r}"
    dupes = [k for k, n in Counter((e["kind"], e["name"]) for e in entries).items() if n > 1]
    assert not dupes, f"registry.toml lists these twice: {dupes}"


def test_catalogue_matches_pyproject_entry_points():
    listed = {(e["name"], e["kind"]) for e in catalogue()}
    wanted = {(name, kind) for name, kind, _ in declared()}
    assert not wanted - listed, f"declared in pyproject.toml but not in registry.toml: {sorted(wanted - listed)}"
    assert not listed - wanted, f"in registry.toml but not declared in pyproject.toml: {sorted(listed - wanted)}"


def test_extras_named_in_the_catalogue_exist():
    with open(ROOT / "pyproject.toml", "rb") as fh:
        extras = set(tomllib.load(fh)["project"]["optional-dependencies"])
    for e in catalogue():
        if e["extra"]:
            assert e["extra"] in extras, f"registry.toml: {e['name']}: extra {e['extra']!r} is not in pyproject.toml"


def test_installed_entry_points_match_pyproject():
    """Catches a stale editable install: run `pip install --no-deps -e .` after editing entry points."""
    installed = {(ep.name, GROUP_KIND[ep.group], ep.value) for ep in metadata.distribution("fusionkit").entry_points
                 if ep.group in GROUP_KIND}
    wanted = declared()
    assert installed == wanted, (f"missing from the install: {sorted(wanted - installed)}; "
                                 f"installed but not declared: {sorted(installed - wanted)}")


def test_each_builtin_entry_point_registers_its_named_class(tmp_path, monkeypatch):
    """Each built-in entry point registers a class of its kind and name, which carries its own description."""
    from fusionkit.registry import build_registry

    monkeypatch.setenv("FUSIONKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("FUSIONKIT_BLOCK_PLUGINS", raising=False)
    reg = build_registry()
    broken = [f"{p.name}: {p.reason}" for p in reg.problems if p.status == "broken"]
    assert not broken, f"built-in plugins fail to load: {broken}"
    for name, kind, value in declared():
        info = reg.plugins.get((kind, name))
        assert info is not None, f"pyproject.toml: {kind} {name!r} is not registered by {value}"
        assert info.entry_point == value
        description = getattr(info.cls, "description", "")
        assert description.strip() and "\n" not in description, f"{name}: wants a one-line description"
        assert info.cls.modality in {"encoder": {"audio", "text"}, "fusion": {"any"},
                                     "dataset": {"audio+text", "text+audio"}}[kind], f"{name}: {info.cls.modality}"


def test_plugin_classes_carry_no_extra_attribute():
    """The pip extra of a built-in is registry.toml's fact alone; an ``extra`` on a class would drift from it."""
    from fusionkit.registry import build_registry

    reg = build_registry()
    stale = [info.name for info in reg.plugins.values() if hasattr(info.cls, "extra")]
    assert not stale, f"classes with an 'extra' attribute: {stale}"
