"""What a run or a grid would refuse before encoding anything, found without running it (``fusionkit validate``).

The recipe's own text is checked when it is read (:mod:`fusionkit.recipe`); here each encoder's model is looked
up (its config, never its weights: ``required_keys`` checks the layers), the fusion head checks the encoders
it would be given (:func:`head_refusal`), and the corpus is read and split as the run
will split it (:func:`planned_split`). One line per problem, never a traceback. A run makes the same checks
before it encodes anything.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from fusionkit.blame import blame
from fusionkit.recipe import Recipe

if TYPE_CHECKING:
    from fusionkit.pipeline.data import Selection

log = logging.getLogger("fusionkit")


class RecipeMismatch(ValueError):
    """The recipe does not fit its corpus or its encoders (a split the corpus cannot give, normalising frame
    sequences); found before anything is encoded. The message is one line."""


def check_normalize(recipe: Recipe) -> None:
    """``normalize`` z-scores pooled vectors: refuse it, before encoding, for encoders that give frame sequences."""
    if recipe.normalize == "none":
        return
    from fusionkit.pipeline.encode import build_encoders

    seq = [name for name, encoder in build_encoders(recipe).items() if encoder.is_sequence()]
    if seq:
        raise RecipeMismatch(f"normalize: {recipe.normalize} needs pooled features; {', '.join(seq)} "
                             f"give{'s' if len(seq) == 1 else ''} frame sequences (pooling: none)")


def planned_split(recipe: Recipe, selection: Selection) -> Selection:
    """The selection with the clips no fold of the split uses passed over (listed with the reason, never encoded);
    :class:`RecipeMismatch` when the split cannot be made on the corpus (too few speakers for ``split.folds``, no
    sessions, no predefined partitions, a ``split.file`` that lists no clip ...). The folds are made as the run
    makes them after encoding, for every seed; a cross-corpus run has one fold of all clips."""
    from fusionkit.pipeline.splits import make_folds

    if selection.test:
        return selection
    if recipe.split.kind in ("speaker-kfold", "speaker-stratified", "loso"):
        missing = [c.id for c in selection.train if c.speaker is None or not str(c.speaker).strip()]
        if missing:
            raise RecipeMismatch(f"dataset '{recipe.data.dataset}': {len(missing)} clip(s) have no speaker (e.g. "
                                 f"{missing[0]}); split.kind '{recipe.split.kind}' keeps speakers apart and needs one "
                                 "for every clip")
    used = np.zeros(len(selection.train), dtype=bool)
    for seed in recipe.run_seeds():
        try:
            folds = make_folds(selection.train, recipe.split, seed, selection.partitions)
        except ValueError as exc:
            raise RecipeMismatch(str(exc)) from None
        for fold in folds:
            used[fold.train] = used[fold.test] = True
    if used.all():
        return selection
    reason = {"file": f"not listed in split.file ({recipe.split.file})",
              "predefined": "in none of split.train / split.test's partitions"}.get(recipe.split.kind,
                                                                                    "in no fold of the split")
    left = [c.id for c, u in zip(selection.train, used) if not u]
    log.warning("split: %d clip(s) are %s and are left out (e.g. %s); all are listed under skipped in metrics.json",
                len(left), reason, ", ".join(left[:3]))
    return replace(selection, train=[c for c, u in zip(selection.train, used) if u],
                   passed_over={**selection.passed_over, **{cid: reason for cid in left}})


def _corpus_key(recipe: Recipe) -> str:
    """What :func:`corpus_refusal` depends on, as a string: cells sharing it share the answer."""
    fields = {"data", "test_data", "task", "split", "seed", "seeds", "normalize", "encoders"}
    return json.dumps(recipe.model_dump(mode="json", include=fields), sort_keys=True, default=str)


def corpus_refusal(recipe: Recipe) -> Exception | None:
    """What a run raises, before encoding, about the recipe's corpus and split (:func:`planned_split`) or its
    ``normalize`` (:func:`check_normalize`); None when there is nothing."""
    from fusionkit.pipeline.data import select

    try:
        check_normalize(recipe)
        planned_split(recipe, select(recipe))
    except Exception as exc:  # noqa: BLE001 - a plugin's own failure too: reported, never a traceback
        return exc
    return None


def data_problems(source: str, recipe: Recipe) -> list[str]:
    """:func:`corpus_refusal` as one line, else none."""
    refusal = corpus_refusal(recipe)
    return [] if refusal is None else [f"{source}: {_reason(refusal)}"]


def recipe_problems(source: str, recipe: Recipe) -> list[str]:
    """The recipe's encoders' problems, else its head's."""
    encoders = [(f"encoders.{i} ({e.key})", e) for i, e in enumerate(recipe.encoders)]
    return model_problems(source, encoders) or head_problems(source, recipe)


def grid_problems(path: Path, cells: list) -> list[str]:
    """Each distinct encoder of a grid's cells (:class:`fusionkit.bench.Cell`) checked once, then each cell's head
    and corpus (:func:`cell_refusals`); a problem several cells share is one line naming how many
    (:func:`grouped_lines`)."""
    from fusionkit.recipe import validate

    encoders: dict[str, tuple[Any, list[str]]] = {}
    for cell in cells:
        for e in cell.recipe["encoders"]:
            key = json.dumps({"plugin": e["plugin"], "options": e.get("options") or {}}, sort_keys=True)
            spec = SimpleNamespace(plugin=e["plugin"], options=e.get("options") or {},
                                   name=e.get("name") or e["plugin"])
            encoders.setdefault(key, (spec, []))[1].append(_cell_name(cell))
    problems = []
    for spec, ids in encoders.values():
        for line in model_problems("", [(f"encoder {spec.name}", spec)]):
            problems += [(cid, line.removeprefix(": ")) for cid in ids]
    if problems:
        return grouped_lines(path, problems)
    recipes = [(_cell_name(cell), validate(cell.recipe, f"{path} [{cell.recipe['name']}]")[0]) for cell in cells]
    problems = [(name, f"fusion: {_reason(exc)}" if where == "fusion" else _reason(exc))
                for name, where, exc in cell_refusals(recipes)]
    return grouped_lines(path, problems)


def cell_refusals(recipes: list[tuple[str, Recipe]]) -> list[tuple[str, str, Exception]]:
    """``(name, where, exception)`` of each named recipe (a grid's cell) a run would refuse before encoding: its
    head (``where`` "fusion", :func:`head_refusal`), else its corpus and split ("data", :func:`corpus_refusal`),
    each distinct corpus and split read once."""
    refused, corpora = [], {}
    for name, recipe in recipes:
        exc = head_refusal(recipe)
        if exc is not None:
            refused.append((name, "fusion", exc))
            continue
        key = _corpus_key(recipe)
        if key not in corpora:
            corpora[key] = corpus_refusal(recipe)
        if corpora[key] is not None:
            refused.append((name, "data", corpora[key]))
    return refused


def _cell_name(cell: Any) -> str:
    """A grid cell as its dataset, encoders and head name it (ravdess/base-l4/linear)."""
    return f"{cell.dataset}/{cell.encoders}/{cell.head}"


def grouped_lines(path: Path, problems: list[tuple[str, str]]) -> list[str]:
    """One line per distinct problem: the cell it is in, or how many cells share it and the first few."""
    cells_of: dict[str, list[str]] = {}
    for cell, problem in problems:
        names = cells_of.setdefault(problem, [])
        if cell not in names:
            names.append(cell)
    lines = []
    for problem, names in cells_of.items():
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        where = f"[{names[0]}]" if len(names) == 1 else f"[{len(names)} cells: {shown}]"
        lines.append(f"{path} {where}: {problem}")
    return lines


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
    """What the fusion head raises when it cannot be made with the recipe's options, or refuses the recipe's
    encoders as configured (its ``check_encoders``, e.g. fine-tuning more blocks than the model has above the
    cached layer); None when it takes them."""
    from fusionkit.pipeline.encode import build_encoders
    from fusionkit.recipe import plugin_options

    try:
        head_cls, options = plugin_options("fusion", recipe.fusion.plugin, recipe.fusion.options)
        with blame("fusion head", recipe.fusion.plugin):
            head_cls(options, seed=0)  # a head that cannot even be made
        check = getattr(head_cls, "check_encoders", None)  # a head need not subclass the SDK's Head
        if check is not None:
            check(options, build_encoders(recipe))
    except Exception as exc:  # noqa: BLE001 - a plugin's own failure too: reported, never a traceback
        return exc
    return None


def _reason(exc: Exception) -> str:
    """An expected failure (LayerError, ModelRefError, a missing or unreadable config) in its own words; any
    other exception with its type, since its message may not say what went wrong."""
    return str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
