"""The plugin registry: discovery through entry points, isolation, blocking and the catalogue.

One plugin manager; plugins come from package entry points, built-ins included.

Environment:
  FUSIONKIT_DISABLE_PLUGIN_AUTOLOAD=1   load only the plugins that ship with fusionkit
  FUSIONKIT_BLOCK_PLUGINS=a,b           never load or register the plugins named a and b
                                        (dist:name blocks only the one from that distribution)
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pluggy

from fusionkit import hookspecs

GROUPS = {
    "encoder": "fusionkit.encoders",
    "fusion": "fusionkit.fusions",
    "dataset": "fusionkit.datasets",
}
HOOKS = {"encoder": "register_encoders", "fusion": "register_fusions", "dataset": "register_datasets"}
BUILTIN_DISTRIBUTION = "fusionkit"
CATALOGUE = Path(__file__).with_name("registry.toml")  # built-in plugins: name, kind, extra
AUTOLOAD_ENV = "FUSIONKIT_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "FUSIONKIT_BLOCK_PLUGINS"


class PluginError(Exception):
    """A plugin problem worth one clear line to the user."""


@dataclass
class PluginInfo:
    name: str
    kind: str
    cls: type | None
    distribution: str
    entry_point: str
    status: str = "installed"  # installed | not installed | broken | blocked
    reason: str = ""

    @property
    def origin(self) -> str:
        return "built-in" if self.distribution == BUILTIN_DISTRIBUTION else self.distribution


@dataclass
class Registry:
    plugins: dict[tuple[str, str], PluginInfo] = field(default_factory=dict)
    problems: list[PluginInfo] = field(default_factory=list)  # broken or blocked entry points

    def names(self, kind: str) -> list[str]:
        return sorted(n for (k, n) in self.plugins if k == kind)

    def get(self, kind: str, name: str) -> type:
        info = self.plugins.get((kind, name))
        if info is None:
            broken = sorted((p for p in self.problems if p.name == name), key=lambda p: p.kind != kind)
            if broken:
                p = broken[0]
                raise PluginError(f"{kind} plugin '{name}' (from {p.distribution}) is {p.status}: {p.reason}")
            entry = _catalogue_entry(kind, name)
            if entry is not None:
                raise PluginError(f"{kind} plugin '{name}' is not installed: no installed entry point provides it "
                                  f"({_install_hint(entry.get('extra', ''))})")
            raise PluginError(f"unknown {kind} plugin '{name}'{suggest(name, self.names(kind))}")
        if info.status != "installed":
            raise PluginError(f"{kind} plugin '{name}' is {info.status}: {info.reason}")
        return info.cls  # type: ignore[return-value]

    def all(self) -> list[PluginInfo]:
        return sorted([*self.plugins.values(), *self.problems], key=lambda p: (p.kind, p.name))


def suggest(name: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return hint + (f" (known: {', '.join(choices)})" if choices else "")


def missing_requirements(cls: type) -> list[str]:
    """Import names the plugin needs that are not installed (checked without importing them).

    Only the top-level package is looked up: ``find_spec("torch.nn")`` would import torch.
    """
    out = []
    for mod in getattr(cls, "requires", ()):
        try:
            if importlib.util.find_spec(mod.split(".")[0]) is None:
                out.append(mod)
        except (ImportError, ValueError):
            out.append(mod)
    return out


def _blocked() -> set[str]:
    return {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}


def _is_blocked(blocked: set[str], name: str, dist: str) -> bool:
    """``name`` blocks every plugin of that name; ``dist:name`` only the one from that distribution."""
    return name in blocked or f"{dist}:{name}" in blocked


def _catalogue_entry(kind: str, name: str) -> dict | None:
    """The registry.toml entry of a built-in plugin, or None."""
    try:
        entries = catalogue()
    except (OSError, KeyError, ValueError):
        return None
    return next((e for e in entries if e.get("kind") == kind and e.get("name") == name), None)


def _install_hint(extra: str) -> str:
    return f"pip install 'fusionkit[{extra}]'" if extra else "reinstall fusionkit"


def _check_class(cls: object, kind: str) -> None:
    """A registered plugin is a class with a string ``name`` and a pydantic ``Options`` model.

    (Duck-typed on purpose: a fusion head need not subclass FusionHead, e.g. regression heads.)
    """
    from pydantic import BaseModel

    if not isinstance(cls, type):
        raise TypeError(f"registered {cls!r}, which is not a class")
    options = getattr(cls, "Options", None)
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise TypeError(f"{cls.__name__} has no Options model (a subclass of fusionkit.sdk.base.Options)")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise TypeError(f"{cls.__name__} has no 'name' (a non-empty string class attribute)")


def _entry_points():
    """Every (kind, entry point) pair, built-ins first, honouring the environment switches."""
    only_builtin = os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")
    for kind, group in GROUPS.items():
        found = [(ep, ep.dist.name if ep.dist is not None else "?") for ep in metadata.entry_points(group=group)]
        for ep, dist in sorted(found, key=lambda e: (e[1] != BUILTIN_DISTRIBUTION, e[0].name, e[1])):
            if only_builtin and dist != BUILTIN_DISTRIBUTION:
                continue
            yield kind, ep, dist


def build_registry() -> Registry:
    """Import every plugin module, call its register hook, and collect what it offers.

    A module that fails to import, or whose hook raises, is recorded as broken and
    skipped. Two plugins of one kind with one name are an error naming both sources.
    """
    pm = pluggy.PluginManager("fusionkit")
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    blocked = _blocked()
    for name in blocked:
        pm.set_blocked(name)
    seen_modules: set[int] = set()
    for kind, ep, dist in _entry_points():
        if _is_blocked(blocked, ep.name, dist):
            registry.problems.append(
                PluginInfo(ep.name, kind, None, dist, ep.value, "blocked", f"blocked by {BLOCK_ENV}")
            )
            continue
        try:
            module = ep.load()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any plugin failure is isolated, even sys.exit()
            registry.problems.append(
                PluginInfo(ep.name, kind, None, dist, ep.value, "broken", f"{type(exc).__name__}: {exc}")
            )
            continue
        if id(module) in seen_modules:
            continue
        seen_modules.add(id(module))
        try:
            pm.register(module, name=f"{dist}:{ep.group}:{ep.name}")  # checks hook signatures
        except Exception as exc:  # noqa: BLE001 - e.g. pluggy.PluginValidationError
            registry.problems.append(
                PluginInfo(ep.name, kind, None, dist, ep.value, "broken", f"{type(exc).__name__}: {exc}")
            )
            continue
        for hook_kind, hook_name in HOOKS.items():
            hook = getattr(module, hook_name, None)
            if hook is None:
                continue

            def register(cls: type, _kind: str = hook_kind, _ep=ep, _dist=dist) -> None:
                _check_class(cls, _kind)
                _add(registry, blocked, PluginInfo(cls.name, _kind, cls, _dist, _ep.value))

            try:
                hook(register=register)
            except PluginError:
                raise
            except (Exception, SystemExit) as exc:  # noqa: BLE001
                registry.problems.append(
                    PluginInfo(ep.name, kind, None, dist, ep.value, "broken", f"{hook_name} raised {type(exc).__name__}: {exc}")
                )
    return registry


def _add(registry: Registry, blocked: set[str], info: PluginInfo) -> None:
    if _is_blocked(blocked, info.name, info.distribution):
        info.status, info.reason = "blocked", f"blocked by {BLOCK_ENV}"
        registry.problems.append(info)
        return
    key = (info.kind, info.name)
    if key in registry.plugins:
        other = registry.plugins[key]
        raise PluginError(
            f"two {info.kind} plugins are named '{info.name}': one from distribution "
            f"'{other.distribution}' ({other.entry_point}), one from '{info.distribution}' "
            f"({info.entry_point}); uninstall one, or block one with "
            f"{BLOCK_ENV}={info.distribution}:{info.name}"
        )
    missing = missing_requirements(info.cls)
    if missing:
        info.status = "not installed"
        if info.distribution == BUILTIN_DISTRIBUTION:
            entry = _catalogue_entry(info.kind, info.name) or {}
            hint = _install_hint(entry.get("extra", ""))
        else:
            hint = f"pip install --upgrade '{info.distribution}' to pull its requirements"
        info.reason = f"needs {', '.join(missing)} ({hint})"
    registry.plugins[key] = info


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry()
    return _REGISTRY


def reset() -> None:
    global _REGISTRY
    _REGISTRY = None


# ---------------------------------------------------------------- catalogue (registry.toml)


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
