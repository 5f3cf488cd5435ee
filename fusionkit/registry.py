"""The plugin registry: discovery through entry points, isolation, blocking and the listing.

One plugin manager holds every plugin module, built-ins included; each hook is called through
it, one plugin at a time, so that a plugin whose import or hook fails is recorded as broken
(named by distribution and entry point) while the others still register.

Where each fact about a plugin comes from:
  entry points (pyproject.toml)   name, kind (the group) and module
  the registered class            description, modality, requires
  registry.toml                   for built-ins only: the pip extra that installs their requirements

Environment:
  FUSIONKIT_DISABLE_PLUGIN_AUTOLOAD=1   load only the plugins that ship with fusionkit
  FUSIONKIT_BLOCK_PLUGINS=a,b           never load or register the plugins named a and b
                                        (dist:name blocks only the one from that distribution)
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pluggy
import tomllib

from fusionkit import hookspecs

GROUPS = {
    "encoder": "fusionkit.encoders",
    "fusion": "fusionkit.fusions",
    "dataset": "fusionkit.datasets",
}
HOOKS = {"encoder": "register_encoders", "fusion": "register_fusions", "dataset": "register_datasets"}
BUILTIN_DISTRIBUTION = "fusionkit"
CATALOGUE = Path(__file__).with_name("registry.toml")  # built-in plugins: kind, name, pip extra
AUTOLOAD_ENV = "FUSIONKIT_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "FUSIONKIT_BLOCK_PLUGINS"
BLOCKED_REASON = f"blocked by {BLOCK_ENV}"


log = logging.getLogger("fusionkit")


class PluginError(Exception):
    """A plugin problem worth one clear line to the user."""


@dataclass
class PluginInfo:
    """One registered plugin class, or one entry point that could not provide any."""

    name: str
    kind: str
    cls: type | None
    distribution: str
    entry_point: str
    status: str = "installed"  # installed | not installed | broken | blocked | name clash
    reason: str = ""
    entry_name: str = ""  # the entry point's own name (what a dist:name block matches before importing)

    @property
    def origin(self) -> str:
        return "built-in" if self.distribution == BUILTIN_DISTRIBUTION else self.distribution


@dataclass
class Registry:
    """What the plugin manager's hooks registered, plus the entry points that failed or were blocked."""

    plugins: dict[tuple[str, str], PluginInfo] = field(default_factory=dict)
    problems: list[PluginInfo] = field(default_factory=list)  # broken, blocked or clashing entry points
    clashes: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) -> what using the name says
    pm: pluggy.PluginManager | None = field(default=None, repr=False, compare=False)
    _told: set = field(default_factory=set, repr=False, compare=False)

    def names(self, kind: str) -> list[str]:
        return sorted(n for (k, n) in self.plugins if k == kind)

    def get(self, kind: str, name: str) -> type:
        info = self.plugins.get((kind, name))
        clash = self.clashes.get((kind, name))
        if clash is not None and info is None:
            raise PluginError(clash)
        if clash is not None and (kind, name) not in self._told:  # the built-in is used: say so, once
            self._told.add((kind, name))
            log.warning("%s", clash)
        if info is None:
            broken = sorted((p for p in self.problems if p.name == name), key=lambda p: p.kind != kind)
            if broken:
                p = broken[0]
                raise PluginError(f"{kind} plugin '{name}' (from {p.distribution}) is {p.status}: {p.reason}")
            entry = _catalogue_entry(kind, name)
            if entry is not None:
                raise PluginError(f"{kind} plugin '{name}' is not installed: no installed entry point provides it "
                                  f"({_install_hint(entry.get('extra', ''))})")
            raise PluginError(f"unknown {kind} plugin '{name}'{suggest(name, self.names(kind))}{self._broken(kind)}")
        if info.status != "installed":
            raise PluginError(f"{kind} plugin '{name}' is {info.status}: {info.reason}")
        return info.cls  # type: ignore[return-value]

    def _broken(self, kind: str) -> str:
        """The broken entry points of ``kind`` (what they failed to register is unknown), for an unknown name."""
        return "".join(f"; the entry point '{p.entry_name or p.name}' of package {p.distribution} is broken, and may "
                       f"be what provides it: {' '.join(p.reason.split())}"
                       for p in self.problems if p.kind == kind and p.status == "broken")

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


# ---------------------------------------------------------------- blocking


def _blocked() -> frozenset[str]:
    return frozenset(n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip())


def _is_blocked(blocked: Container[str], name: str, dist: str) -> bool:
    """The one blocking rule: ``name`` blocks every plugin of that name; ``dist:name`` only that distribution's.

    Checked for an entry point's name before its module is imported, and for each class name it registers.
    """
    return name in blocked or f"{dist}:{name}" in blocked


# ---------------------------------------------------------------- discovery


@dataclass(frozen=True)
class _Source:
    """Where a plugin module came from: the entry point (and its kind and distribution) that named it."""

    kind: str
    ep: metadata.EntryPoint
    dist: str

    @property
    def plugin_name(self) -> str:
        """The module's name in the plugin manager."""
        return f"{self.dist}:{self.ep.group}:{self.ep.name}"

    def problem(self, status: str, reason: str) -> PluginInfo:
        return PluginInfo(self.ep.name, self.kind, None, self.dist, self.ep.value, status, reason, self.ep.name)


class _Manager(pluggy.PluginManager):
    """fusionkit's plugin manager: a module-level function named like a hook counts even without ``@hookimpl``."""

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name in HOOKS.values() and inspect.isfunction(inspect.getattr_static(plugin, name, None)):
            return {}  # type: ignore[typeddict-item]  # pluggy fills in the defaults
        return opts


def _entry_points() -> Iterator[_Source]:
    """Every plugin entry point, built-ins first, honouring FUSIONKIT_DISABLE_PLUGIN_AUTOLOAD."""
    only_builtin = os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")
    for kind, group in GROUPS.items():
        found = [_Source(kind, ep, ep.dist.name if ep.dist is not None else "?")
                 for ep in metadata.entry_points(group=group)]
        for source in sorted(found, key=lambda s: (s.dist != BUILTIN_DISTRIBUTION, s.ep.name, s.dist)):
            if not (only_builtin and source.dist != BUILTIN_DISTRIBUTION):
                yield source


def _load(pm: pluggy.PluginManager, source: _Source) -> PluginInfo | None:
    """Import the entry point's module and register it with ``pm``; a problem row when that fails."""
    try:
        module = source.ep.load()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any plugin failure is isolated, even sys.exit()
        return source.problem("broken", f"{type(exc).__name__}: {exc}")
    if pm.is_registered(module):  # one module behind two entry points registers once
        return None
    try:
        pm.register(module, name=source.plugin_name)  # checks hook signatures against hookspecs
    except Exception as exc:  # noqa: BLE001 - e.g. pluggy.PluginValidationError
        return source.problem("broken", f"{type(exc).__name__}: {exc}")
    return None


def _call_one(pm: pluggy.PluginManager, hook_name: str, plugin: object, **kwargs: object) -> None:
    """Call ``hook_name`` of one plugin only, through the manager, so that its failure stays its own."""
    others = [p for p in pm.get_plugins() if p is not plugin]
    pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)


def build_registry() -> Registry:
    """Register every plugin module with one plugin manager, call its hooks, and collect what they offer.

    A module that fails to import, or whose hook raises, is recorded as broken and skipped: a hook that raises
    leaves nothing of that call registered, not even the classes it registered before raising. Two plugins of
    one kind with one name never make it fail: a built-in keeps its name and the other is listed as a problem;
    two third-party ones are both listed, and using the name says why.
    """
    pm = _Manager("fusionkit")
    pm.add_hookspecs(hookspecs)
    registry = Registry(pm=pm)
    blocked = _blocked()
    sources: dict[str, _Source] = {}
    found = list(_entry_points())
    for source in found:
        if _is_blocked(blocked, source.ep.name, source.dist):
            registry.problems.append(source.problem("blocked", BLOCKED_REASON))
            continue
        problem = _load(pm, source)
        if problem is not None:
            registry.problems.append(problem)
        elif pm.get_plugin(source.plugin_name) is not None:
            sources[source.plugin_name] = source
    for kind, hook_name in HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            source = sources[impl.plugin_name]
            before = _snapshot(registry)
            try:
                _call_one(pm, hook_name, impl.plugin, register=_registrar(registry, blocked, kind, source))
            except PluginError:
                raise
            except (Exception, SystemExit) as exc:  # noqa: BLE001
                dropped = _roll_back(registry, before)  # a hook that raises leaves nothing of its call registered
                reason = f"{hook_name} raised {type(exc).__name__}: {exc}"
                if dropped:
                    reason += f"; not used: {', '.join(repr(n) for n in dropped)}, which it registered before raising"
                registry.problems.append(source.problem("broken", reason))
    _warn_unmatched_blocks(blocked, registry, found)
    return registry


@dataclass(frozen=True)
class _Snapshot:
    """The registry as it was before one hook call: its tables, and each listed plugin's status and reason
    (a clash rewrites those of the plugins already there)."""

    plugins: dict
    problems: list
    clashes: dict
    states: list


def _snapshot(registry: Registry) -> _Snapshot:
    infos = [*registry.plugins.values(), *registry.problems]
    return _Snapshot(dict(registry.plugins), list(registry.problems), dict(registry.clashes),
                     [(info, info.status, info.reason) for info in infos])


def _roll_back(registry: Registry, before: _Snapshot) -> list[str]:
    """Undo what one hook call registered (plugins, clashes, problems, statuses it changed); the names it added.

    A class the call registered that FUSIONKIT_BLOCK_PLUGINS blocks stays listed as blocked (the block did match)."""
    known = {id(info) for info, _, _ in before.states}
    added = [info for info in [*registry.plugins.values(), *registry.problems] if id(info) not in known]
    registry.plugins.clear()
    registry.plugins.update(before.plugins)
    registry.problems[:] = [*before.problems, *(info for info in added if info.status == "blocked")]
    registry.clashes.clear()
    registry.clashes.update(before.clashes)
    for info, status, reason in before.states:
        info.status, info.reason = status, reason
    return list(dict.fromkeys(info.name for info in added if info.status != "blocked"))


def _warn_unmatched_blocks(blocked: frozenset[str], registry: Registry, sources: list) -> None:
    """A name in FUSIONKIT_BLOCK_PLUGINS that is no plugin nor entry point here blocks nothing: most likely a typo."""
    if not blocked:
        return
    known = {n for s in sources for n in (s.ep.name, f"{s.dist}:{s.ep.name}")}
    for info in [*registry.plugins.values(), *registry.problems]:
        known |= {info.name, f"{info.distribution}:{info.name}"}
    unmatched = sorted(blocked - known)
    if unmatched:
        log.warning("%s names %s, which no installed plugin or entry point is called: nothing blocked by %s",
                    BLOCK_ENV, ", ".join(unmatched), "it" if len(unmatched) == 1 else "them")


def _registrar(registry: Registry, blocked: Container[str], kind: str, source: _Source) -> Callable[[type], None]:
    """The ``register`` callback handed to one plugin's hook for one kind."""

    def register(cls: type) -> None:
        _check_class(cls, kind)
        _add(registry, blocked, PluginInfo(cls.name, kind, cls, source.dist, source.ep.value,
                                           entry_name=source.ep.name))

    return register


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


def _add(registry: Registry, blocked: Container[str], info: PluginInfo) -> None:
    if _is_blocked(blocked, info.name, info.distribution):
        info.status, info.reason = "blocked", BLOCKED_REASON
        registry.problems.append(info)
        return
    key = (info.kind, info.name)
    _check_requirements(info)
    if key in registry.plugins or key in registry.clashes:
        _clash(registry, info)
        return
    registry.plugins[key] = info


def _check_requirements(info: PluginInfo) -> None:
    """Mark ``info`` not installed, with the way to install them, when modules it requires are missing."""
    missing = missing_requirements(info.cls)
    if missing:
        info.status = "not installed"
        if info.distribution == BUILTIN_DISTRIBUTION:
            entry = _catalogue_entry(info.kind, info.name) or {}
            hint = _install_hint(entry.get("extra", ""))
        else:
            hint = f"pip install --upgrade '{info.distribution}' to pull its requirements"
        info.reason = f"needs {', '.join(missing)} ({hint})"


def _block_hint(info: PluginInfo) -> str:
    """The block that stops ``info`` before its module is imported: its distribution and entry point name."""
    return f"{BLOCK_ENV}={info.distribution}:{info.entry_name or info.name}"


def _clash(registry: Registry, info: PluginInfo) -> None:
    """A second plugin of one kind and name. A built-in keeps the name and the other is listed as a problem;
    between third parties neither is used, both are listed, and using the name says why. No command fails."""
    key = (info.kind, info.name)
    other = registry.plugins.get(key)
    if other is not None and info.distribution == BUILTIN_DISTRIBUTION != other.distribution:
        registry.plugins[key] = info  # the built-in keeps its name, whichever registered first
        info, other = other, info
    if other is not None and other.distribution == BUILTIN_DISTRIBUTION:
        info.status = "name clash"
        info.reason = (f"the name of the built-in {info.kind} plugin '{info.name}', which is used instead; "
                       f"uninstall '{info.distribution}', or block it with {_block_hint(info)}")
        registry.problems.append(info)
        registry.clashes[key] = (f"{info.kind} plugin '{info.name}': the built-in is used; '{info.distribution}' "
                                 f"({info.entry_point}) also registers this name ({_block_hint(info)} silences this)")
        return
    clashing = [info] + ([registry.plugins.pop(key)] if other is not None else [])
    for each in clashing:
        each.status = "name clash"
        registry.problems.append(each)
    named = [p for p in registry.problems if (p.kind, p.name) == key and p.status == "name clash"]
    message = (f"{len(named)} {info.kind} plugins are named '{info.name}': "
               + ", ".join(f"one from '{p.distribution}' ({p.entry_point})" for p in named)
               + f"; none is used: uninstall all but one, or block the others, e.g. {_block_hint(named[-1])}")
    for each in named:
        each.reason = message
    registry.clashes[key] = message


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


# ---------------------------------------------------------------- catalogue (registry.toml) and listing


def catalogue() -> list[dict]:
    """The ``[[plugin]]`` entries (kind, name, extra); empty when the file is missing."""
    try:
        with open(CATALOGUE, "rb") as fh:
            return tomllib.load(fh).get("plugin", [])
    except FileNotFoundError:
        return []


def _catalogue_entry(kind: str, name: str) -> dict | None:
    """The registry.toml entry of a built-in plugin, or None."""
    try:
        entries = catalogue()
    except (OSError, KeyError, ValueError):
        return None
    return next((e for e in entries if e.get("kind") == kind and e.get("name") == name), None)


def _install_hint(extra: str) -> str:
    return f"pip install 'fusionkit[{extra}]'" if extra else "reinstall fusionkit"


def plugin_rows(reg: Registry) -> list[dict]:
    """One row per plugin found installed, plus one per built-in whose entry point is missing."""
    missing = {(e["kind"], e["name"]): e for e in catalogue()}
    rows = []
    for info in reg.all():
        missing.pop((info.kind, info.name), None)
        rows.append({
            "kind": info.kind,
            "name": info.name,
            "status": info.status,
            "origin": info.origin,
            "distribution": info.distribution,
            "entry_point": info.entry_point,
            "modality": getattr(info.cls, "modality", ""),
            "description": getattr(info.cls, "description", ""),
            "reason": info.reason,
        })
    for (kind, name), e in missing.items():
        rows.append({
            "kind": kind, "name": name, "status": "not installed", "origin": "built-in",
            "distribution": BUILTIN_DISTRIBUTION, "entry_point": "", "modality": "", "description": "",
            "reason": f"not found among installed entry points ({_install_hint(e.get('extra') or '')})",
        })
    return sorted(rows, key=lambda r: (r["kind"], r["name"]))
