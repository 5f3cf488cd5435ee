"""A YAML loader for files people hand to fusionkit (recipes, grids): safe types only, and refused before
anything is built when a key is repeated, nesting is deeper than MAX_DEPTH or there are more than MAX_NODES
values (aliases counted as expanded)."""

from __future__ import annotations

from typing import Any

import yaml

MAX_RECIPE_BYTES = 64 * 1024  # the largest recipe or grid in the repository is 3 kB
MAX_DEPTH = 32  # nesting levels of mappings and lists (the repository's recipes and grids use at most 10)
MAX_NODES = 10_000  # values, aliases counted as expanded (the repository's recipes and grids have at most 300)
SHOWN = 80  # characters of a value echoed in an error line


def shorten(value: Any, limit: int = SHOWN) -> str:
    """``value`` as text, cut to ``limit`` characters with the full length said (error lines stay short)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


class RefusedYAML(yaml.YAMLError):
    """YAML that parses but is not accepted as a recipe; ``line`` is 1-based (0: unknown)."""

    def __init__(self, problem: str, mark=None):
        self.problem = problem
        self.line = mark.line + 1 if mark is not None else 0
        super().__init__(problem)


class RecipeLoader(yaml.SafeLoader):
    """The safe loader, refusing repeated keys, nesting deeper than MAX_DEPTH and more than MAX_NODES values
    (aliases counted as expanded) before anything is built from the document."""

    def __init__(self, stream):
        super().__init__(stream)
        self._open = 0
        self._written = 0  # values composed so far (aliases not expanded): stops a long flat list early
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (height, values after expansion)

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise RefusedYAML(f"alias *{shorten(event.anchor, 40)} refers to a value that contains it",
                               event.start_mark)
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        self._open += 1
        self._written += 1
        try:
            if self._open > MAX_DEPTH:
                raise RefusedYAML(f"nested deeper than {MAX_DEPTH} levels", mark)
            if self._written > MAX_NODES:
                raise RefusedYAML(f"more than {MAX_NODES} values; a recipe needs far fewer", mark)
            node = super().compose_node(parent, index)
        finally:
            self._open -= 1
        self._sizes[id(node)] = self._measure(node, mark)
        return node

    def _measure(self, node, mark) -> tuple[int, int]:
        """(height, values) of a composed node from its children's, refused past the limits."""
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            return 1, 1
        sizes = [self._sizes.get(id(child), (1, 1)) for child in children]
        height = 1 + max((h for h, _ in sizes), default=0)
        count = 1 + sum(c for _, c in sizes)
        if height > MAX_DEPTH:
            raise RefusedYAML(f"nested deeper than {MAX_DEPTH} levels (through aliases)", mark)
        if count > MAX_NODES:
            raise RefusedYAML(f"more than {MAX_NODES} values (aliases expanded); a recipe needs far fewer", mark)
        return height, count

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self._refuse_repeated_keys(node)
        return super().construct_mapping(node, deep=deep)

    def _refuse_repeated_keys(self, node) -> None:
        """A key written twice in one mapping (YAML would keep the last silently); merged keys may be overridden."""
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key, line = self.construct_object(key_node), key_node.start_mark.line + 1
            if key in first:
                raise RefusedYAML(f"key '{shorten(key, 60)}' repeated (first at line {first[key]}); the last one would "
                               "win silently", key_node.start_mark)
            first[key] = line


def safe_load(text: str):
    """Parse recipe YAML with :class:`RecipeLoader` (safe types only)."""
    loader = RecipeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
