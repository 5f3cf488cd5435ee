"""docs/plugins.md is a program: its ```python blocks run, so the guide fails when the API it shows changes.

Blocks run in document order in one namespace per document, unless the HTML comment on the line just
before a fence says otherwise: ``<!-- test: namespace=NAME module=MODULE needs=PACKAGE define-only -->``

* ``namespace=NAME``: the block runs with the other blocks of that namespace (a test of its own);
* ``module=MODULE``: the block runs as an importable module of that name (later blocks import it);
* ``needs=PACKAGE``: the namespace is skipped when PACKAGE cannot be imported;
* ``define-only``: the ``test_*`` functions it defines are not called (those of other blocks are, as
  pytest would call them, with ``tmp_path`` and ``monkeypatch``).
"""

from __future__ import annotations

import inspect
import re
import sys
import tempfile
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
MARK = re.compile(r"^\s*<!--\s*test:(?P<marks>[^>]*)-->\s*$")
KEYS = {"namespace", "module", "needs"}
FLAGS = {"define-only"}
MAIN = "main"


@dataclass(frozen=True)
class Block:
    """One ```python block: its first line in the document, its code, and how it is run."""

    line: int
    code: str
    namespace: str = MAIN
    module: str | None = None
    needs: str | None = None
    define_only: bool = False


def parse_marks(text: str, where: str) -> dict:
    """``namespace=x module=y define-only`` -> Block fields; an unknown mark is an error naming ``where``."""
    fields: dict = {}
    for token in text.replace(",", " ").split():
        key, sep, value = token.partition("=")
        if sep and key in KEYS and value:
            fields[key] = value
        elif not sep and token in FLAGS:
            fields[token.replace("-", "_")] = True
        else:
            raise ValueError(f"{where}: unknown test mark '{token}' (known: {', '.join(sorted(KEYS | FLAGS))})")
    return fields


def python_blocks(text: str, source: str = "plugins.md") -> list[Block]:
    """Every ```python block of ``text`` (indented ones too), with the marks on the line before it."""
    blocks = []
    for match in FENCE.finditer(text):
        first = text.count("\n", 0, match.start()) + 2  # the line after the fence
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.match(before)
        fields = parse_marks(mark["marks"], f"{source}:{first - 1}") if mark else {}
        blocks.append(Block(first, textwrap.dedent(match["code"]), **fields))
    opened = len(re.findall(r"^[ \t]*```python", text, re.M))
    if opened != len(blocks):
        raise ValueError(f"{source}: {opened} ```python fences but {len(blocks)} closed blocks")
    return blocks


def namespaces(blocks: list[Block]) -> dict[str, list[Block]]:
    """Blocks grouped by namespace, each group in document order."""
    out: dict[str, list[Block]] = {}
    for block in blocks:
        out.setdefault(block.namespace, []).append(block)
    return out


def new_module(name: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """An empty module registered in sys.modules for the test's duration (pydantic and pluggy look it up)."""
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def call_tests(module: types.ModuleType, before: set[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Call the ``test_*`` functions a block defined, with the fixtures they name."""
    fixtures = {"tmp_path": tmp_path, "monkeypatch": monkeypatch}
    for name, fn in list(vars(module).items()):
        if name.startswith("test_") and name not in before and callable(fn):
            fn(**{p: fixtures[p] for p in inspect.signature(fn).parameters})


def run_block(block: Block, module: types.ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Execute ``block`` in ``module`` (tracebacks name the document's lines)."""
    before = set(vars(module))
    code = compile("\n" * (block.line - 1) + block.code, str(DOC), "exec")
    exec(code, vars(module))  # noqa: S102 - the documentation's own code, run as its reader would
    if not block.define_only:
        call_tests(module, before, tmp_path, monkeypatch)


BLOCKS = python_blocks(DOC.read_text(encoding="utf-8"))


@pytest.mark.parametrize("namespace", sorted(namespaces(BLOCKS)))
def test_code_blocks_run(namespace, tmp_path, monkeypatch):
    group = namespaces(BLOCKS)[namespace]
    for needed in sorted({b.needs for b in group if b.needs}):
        pytest.importorskip(needed)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the blocks' temporary folders land in tmp_path
    shared = new_module(f"plugins_md_{namespace.replace('-', '_')}", monkeypatch)
    for block in group:
        module = new_module(block.module, monkeypatch) if block.module else shared
        run_block(block, module, tmp_path, monkeypatch)


def test_the_guide_covers_every_kind():
    assert len(namespaces(BLOCKS)[MAIN]) >= 6
    code = "\n".join(b.code for b in BLOCKS)
    for base in ("(Encoder)", "(FusionHead)", "(RegressionHead)", "(NeuralHead)", "(Dataset)"):
        assert base in code, f"docs/plugins.md has no runnable example of a {base.strip('()')} subclass"


def test_blocks_are_parsed_with_their_marks_and_lines():
    text = "a\n```python\nx = 1\n```\n<!-- test: namespace=t needs=torch -->\n* item\n\n  ```python\n  y = 2\n  ```\n"
    first, second = python_blocks(text)
    assert (first.line, first.code, first.namespace) == (3, "x = 1\n", MAIN)
    assert second.code == "y = 2\n" and second.namespace == MAIN  # the mark is not on the line before
    marked = python_blocks("<!-- test: module=m define-only -->\n```python\npass\n```\n")[0]
    assert (marked.module, marked.define_only) == ("m", True)
    with pytest.raises(ValueError, match="unknown test mark 'skip'"):
        python_blocks("<!-- test: skip -->\n```python\npass\n```\n")
    with pytest.raises(ValueError, match="1 ```python fences but 0 closed blocks"):
        python_blocks("```python\npass\n")
