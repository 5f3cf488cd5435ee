"""What a run or a grid would refuse before encoding anything, found without running it (``fusionkit validate``).

The recipe's own text is checked when it is read (:mod:`fusionkit.recipe`); here each encoder's model is looked
up (its config, never its weights: ``required_keys`` checks the layers) and the fusion head checks the encoders
it would be given (:func:`fusionkit.pipeline.folds.check_head`). One line per problem, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fusionkit.recipe import Recipe


def recipe_problems(source: str, recipe: Recipe) -> list[str]:
    """The recipe's encoders' problems, else its head's."""
    encoders = [(f"encoders.{i} ({e.key})", e) for i, e in enumerate(recipe.encoders)]
    return model_problems(source, encoders) or head_problems(source, recipe)


def grid_problems(path: Path, cells: list) -> list[str]:
    """Each distinct encoder of a grid's cells (:class:`fusionkit.bench.Cell`) checked once, then each cell's head."""
    from fusionkit.recipe import validate

    specs: dict[str, tuple[str, Any]] = {}
    for cell in cells:
        for e in cell.recipe["encoders"]:
            key = json.dumps({"plugin": e["plugin"], "options": e.get("options") or {}}, sort_keys=True)
            where = f"cell {cell.id}: encoder {e.get('name') or e['plugin']}"
            specs.setdefault(key, (where, SimpleNamespace(plugin=e["plugin"], options=e.get("options") or {})))
    problems = model_problems(str(path), list(specs.values()))
    if problems:
        return problems
    for cell in cells:
        source = f"{path} [{cell.recipe['name']}]"
        problems += head_problems(source, validate(cell.recipe, source)[0])
    return problems


def model_problems(source: str, encoders: list[tuple[str, Any]]) -> list[str]:
    """One line per encoder (``(where, spec)`` pairs, specs with ``plugin`` and ``options``) whose model cannot be
    found or lacks a layer the recipe names."""
    from fusionkit.recipe import plugin_options

    lines = []
    for where, spec in encoders:
        try:
            cls, options = plugin_options("encoder", spec.plugin, spec.options)
            cls(options).required_keys()
        except Exception as exc:  # noqa: BLE001 - a plugin's own failure too: one line, never a traceback
            lines.append(f"{source}: {where}: {_reason(exc)}")
    return lines


def head_problems(source: str, recipe: Recipe) -> list[str]:
    """The fusion head's own check of the recipe's encoders (e.g. fine-tuning blocks the model lacks)."""
    refusal = head_refusal(recipe)
    return [] if refusal is None else [f"{source}: fusion: {_reason(refusal)}"]


def head_refusal(recipe: Recipe) -> Exception | None:
    """What the fusion head raises when it refuses the recipe's encoders as configured
    (:func:`fusionkit.pipeline.folds.check_head`); None when it takes them."""
    from fusionkit.pipeline.folds import check_head

    try:
        check_head(recipe)
    except Exception as exc:  # noqa: BLE001 - a plugin's own failure too: reported, never a traceback
        return exc
    return None


def _reason(exc: Exception) -> str:
    """An expected failure (LayerError, ModelRefError, a missing or unreadable config) in its own words; any
    other exception with its type, since its message may not say what went wrong."""
    return str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
