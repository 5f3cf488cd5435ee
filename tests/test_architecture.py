"""Layering rules, read from the source (ast) and from fresh interpreters.

click lives only in ``fusionkit/cli/``; the core never imports a plugin package; plugins never
import the CLI; the light entry points import no deep-learning library; ``fusionkit.load`` needs
no click; modules inside ``fusionkit/`` import each other without cycles.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from core_fixtures import ROOT, encoder_module, fake_distribution, fk_env, small_recipe, with_pythonpath  # noqa: F401

CORE = ROOT / "fusionkit"
PLUGINS = ROOT / "plugins"
# deprecated re-exports, kept for one release
SHIMS = {CORE / "interfaces.py", CORE / "heads.py", CORE / "regression.py"}
HEAVY = ("torch", "transformers")
SKIP_DIRS = {"__pycache__", "build", "dist", ".venv", ".pytest_cache", ".hypothesis"}


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py")
                  if not SKIP_DIRS & set(p.relative_to(root).parts) and not p.parent.name.endswith(".egg-info"))


def _module_name(path: Path) -> str:
    """``fusionkit/pipeline/run.py`` -> ``fusionkit.pipeline.run``; a package's ``__init__`` -> the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int, list[str]]]:
    """Every import in ``path`` (module level and inside functions): (module, line, names taken from it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((module, node.lineno, [alias.name for alias in node.names]))
    return found


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def _offenders(files: list[Path], banned: tuple[str, ...]) -> list[str]:
    """file:line of every import of a banned module (or one of its submodules) in ``files``."""
    out = []
    for path in files:
        for module, line, names in _imports(path):
            targets = [module, *(f"{module}.{n}" for n in names)]
            hit = next((t for t in targets for b in banned if t == b or t.startswith(b + ".")), None)
            if hit:
                out.append(f"{_where(path, line)} imports {hit}")
    return out


def test_only_the_cli_package_imports_click():
    files = [p for p in _sources(CORE) + _sources(PLUGINS) if CORE / "cli" not in p.parents]
    assert len(files) > 30  # the scan really reads the core and the plugins
    bad = _offenders(files, ("click",))
    assert not bad, "click outside fusionkit/cli/:\n" + "\n".join(bad)


def test_the_core_never_imports_a_plugin_package():
    bad = _offenders(_sources(CORE), ("fusionkit_plugins", "fusionkit_example"))
    assert not bad, "the core imports a plugin package:\n" + "\n".join(bad)


def test_plugins_never_import_the_cli():
    files = _sources(PLUGINS)
    assert PLUGINS / "fusionkit-example" / "src" / "fusionkit_example" / "energy.py" in files
    bad = _offenders(files, ("fusionkit.cli",))
    assert not bad, "a plugin imports fusionkit.cli:\n" + "\n".join(bad)


def _core_graph() -> dict[str, dict[str, str]]:
    """module -> {imported fusionkit module: where}, over ``fusionkit/`` without the deprecated shims."""
    files = [p for p in _sources(CORE) if p not in SHIMS]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, dict[str, str]] = {m: {} for m in modules}
    for name, path in modules.items():
        for module, line, names in _imports(path):
            # ``from fusionkit.x import y`` imports the module fusionkit.x.y where there is one, else fusionkit.x
            for target in [f"{module}.{n}" if f"{module}.{n}" in modules else module for n in names] or [module]:
                if target in modules and target != name:
                    graph[name].setdefault(target, _where(path, line))
    return graph


def _cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _shortest_cycle(graph: dict[str, dict[str, str]], component: list[str]) -> list[str]:
    """The shortest closed path inside ``component``: [m0, m1, ..., m0]."""
    best: list[str] = []
    for start in component:
        paths = {start: [start]}
        frontier = [start]
        while frontier and not (best and len(paths[frontier[0]]) >= len(best)):
            nxt = []
            for v in frontier:
                for w in graph[v]:
                    if w == start:
                        if not best or len(paths[v]) + 1 < len(best):
                            best = [*paths[v], start]
                    elif w in component and w not in paths:
                        paths[w] = [*paths[v], w]
                        nxt.append(w)
            frontier = nxt
    return best


def _describe(graph: dict[str, dict[str, str]], component: list[str]) -> str:
    path = _shortest_cycle(graph, component)
    steps = "\n".join(f"    {graph[a][b]}: {a} imports {b}" for a, b in zip(path, path[1:]))
    return f"cycle among {len(component)} modules ({', '.join(component)}), e.g.:\n{steps}"


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:2", "a": "b.py:3"}, "c": {"a": "c.py:3"}, "d": {"a": "d.py:4"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _shortest_cycle(graph, ["a", "b", "c"]) == ["a", "b", "a"]
    assert "b.py:3: b imports a" in _describe(graph, ["a", "b", "c"])
    assert _cycles({"a": {"b": "a.py:1"}, "b": {}}) == []


def test_no_import_cycles_inside_fusionkit():
    graph = _core_graph()
    assert {"fusionkit.pipeline.run", "fusionkit.cli.main", "fusionkit.sdk.base"} <= set(graph)
    assert "fusionkit.cli.bench" in graph["fusionkit.cli.main"]  # the graph does see the imports
    cycles = _cycles(graph)
    assert not cycles, "import cycles inside fusionkit/:\n" + "\n".join(_describe(graph, c) for c in cycles)


PROBE = """
import json, sys
{body}
print("@@" + json.dumps(sorted(sys.modules)))
"""


def _modules_after(body: str, env: dict | None = None) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``body``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONKIT_")}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], capture_output=True, text=True,
                          env={**clean, "FUSIONKIT_PROGRESS": "0", **(env or {})}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = next((l for l in proc.stdout.splitlines() if l.startswith("@@")), None)
    assert line is not None, proc.stdout + proc.stderr
    return set(json.loads(line[2:]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_light_entry_points_import_no_deep_learning_library(tmp_path):
    env = {"FUSIONKIT_CACHE_DIR": str(tmp_path)}
    cli = "from fusionkit.cli import main\nmain({args!r}, prog_name='fusionkit', standalone_mode=False)"
    for what, body in (("fusionkit --help", cli.format(args=["--help"])),
                       ("fusionkit validate demo", cli.format(args=["validate", "demo"])),
                       ("import fusionkit", "import fusionkit")):
        modules = _modules_after(body, env)
        assert "fusionkit" in modules
        heavy = _heavy(modules)
        assert not heavy, f"{what} imported {heavy[:5]}; import them inside the function that needs them"


def test_loading_a_bundle_needs_no_click(tmp_path, monkeypatch, fk_env):
    from fusionkit.bundle import export
    from fusionkit.pipeline.run import run
    from fusionkit.recipe import Recipe

    site = fake_distribution(tmp_path / "site", "fk-arch-numpy", {"encoder": {"arch-numpy": "fk_arch_numpy"}},
                             {"fk_arch_numpy": encoder_module("arch-numpy", "ArchNumpy")})
    monkeypatch.syspath_prepend(str(site))
    recipe = small_recipe(encoders=[{"plugin": "arch-numpy"}], fusion={"plugin": "linear"})
    run(Recipe.model_validate(recipe), tmp_path / "run")
    bundle = export(tmp_path / "run", tmp_path / "bundle", fold="0")
    body = f"import fusionkit\nmodel = fusionkit.load({str(bundle)!r})\nassert model.classes, 'no classes'"
    modules = _modules_after(body, with_pythonpath(site, {"FUSIONKIT_CACHE_DIR": str(fk_env)}))
    assert "fusionkit.bundle" in modules and "fk_arch_numpy" in modules  # the bundle was really loaded
    clicks = sorted(m for m in modules if m.split(".")[0] == "click")
    assert not clicks, f"fusionkit.load imported {clicks[:3]}; click belongs to fusionkit.cli only"


def test_every_package_folder_is_in_the_wheel():
    """pyproject's package list names every folder with an ``__init__.py`` (an installed, non-editable copy
    lacked ``fusionkit.engine``: ``fusionkit run`` failed with ModuleNotFoundError)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for top, name in ((CORE, "fusionkit"), (PLUGINS, "fusionkit_plugins")):
        for init in top.rglob("__init__.py"):
            parts = init.parent.relative_to(top).parts
            if not SKIP_DIRS & set(parts) and "fusionkit-example" not in parts:
                found.add(".".join((name, *parts)))
    assert found - listed == set()
