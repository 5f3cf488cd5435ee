"""``--engine local|ray`` and its options (run, bench, encode), and ``fusionkit encode``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

EXIT_INVALID = 2


def engine_options(fn: Callable) -> Callable:
    """Add --engine, --address, --shared-cache and --cpus-per-task to a command."""
    options = [
        click.option("--engine", "engine_kind", type=click.Choice(["local", "ray"]), default=None,
                     help="Where encoding (and a grid's cells) run: local (default) or ray (the ray extra); "
                          "overrides the recipe's or grid's engine block."),
        click.option("--address", default=None, metavar="ADDRESS",
                     help="ray: the cluster to join ('auto': the one running on this node); none starts a local "
                          "instance. Implies --engine ray."),
        click.option("--shared-cache", is_flag=True, default=None,
                     help="ray: workers write cache entries themselves (the cache is on a path all nodes share)."),
        click.option("--cpus-per-task", type=click.IntRange(min=1), default=None,
                     help="ray: CPUs (and threads) each encoder actor and grid cell declares (default 1)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def resolve_engine(current: Any, engine_kind: str | None, address: str | None, shared_cache: bool | None,
                   cpus_per_task: int | None) -> Any:
    """The EngineSpec to use: ``current`` (the recipe's or grid's, may be None) with the options given on top;
    connect to Ray now when it is chosen, so a missing extra or an unreachable cluster is one line and exit 2."""
    from fusionkit.engine import EngineError, is_ray
    from fusionkit.recipe import EngineSpec

    fields = (current.model_dump() if current is not None else {})
    given = {"kind": engine_kind or ("ray" if address else None), "address": address,
             "shared_cache": shared_cache, "cpus_per_task": cpus_per_task}
    fields.update({k: v for k, v in given.items() if v is not None})
    spec = EngineSpec.model_validate(fields) if fields else None
    if not is_ray(spec):
        if address or shared_cache or cpus_per_task:
            _fail("--address, --shared-cache and --cpus-per-task are for --engine ray")
        return spec
    try:
        from fusionkit.engine.ray_engine import connect

        connect(spec)
    except EngineError as exc:
        _fail(str(exc))
    return spec


def _fail(line: str) -> None:
    click.echo(f"error: {line}", err=True)
    sys.exit(EXIT_INVALID)


@click.command("encode")
@click.argument("source", metavar="RECIPE|GRID")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a field of the recipe (of a grid's base recipe).")
@engine_options
def encode_command(source: str, overrides: tuple[str, ...], engine_kind: str | None, address: str | None,
                   shared_cache: bool | None, cpus_per_task: int | None) -> None:
    """Fill the embedding cache for RECIPE (or every dataset x encoder of GRID); fit nothing."""
    from fusionkit.bench import is_grid
    from fusionkit.recipe import RecipeError
    from fusionkit.registry import PluginError

    try:
        if is_grid(source):
            computed, cached, skipped = _encode_grid(Path(source), list(overrides), engine_kind, address,
                                                     shared_cache, cpus_per_task)
        else:
            computed, cached, skipped = _encode_recipe(source, list(overrides), engine_kind, address,
                                                       shared_cache, cpus_per_task)
    except RecipeError as exc:
        for line in exc.lines:
            click.echo(f"error: {line}", err=True)
        sys.exit(EXIT_INVALID)
    except KeyboardInterrupt:
        click.echo(f"error: {source}: interrupted; every embedding written so far is in the cache, so the same "
                   "command resumes where this one stopped", err=True)
        sys.exit(130)
    except (ValueError, OSError, PluginError) as exc:
        click.echo(f"error: {source}: {exc}", err=True)
        sys.exit(1)
    tail = f", {skipped} clip(s) skipped" if skipped is not None else ""
    click.echo(f"{source}: embeddings {computed} computed, {cached} cached{tail}")


def _encode_recipe(source: str, overrides: list[str], *engine_args: Any) -> tuple[int, int, int | None]:
    from fusionkit.pipeline.data import select
    from fusionkit.pipeline.encode import encode_recipe
    from fusionkit.recipe import load_recipe

    recipe = load_recipe(source, overrides)
    recipe.engine = resolve_engine(recipe.engine, *engine_args)
    encoded = encode_recipe(recipe, select(recipe).clips)
    for cid, reason in encoded.skipped.items():
        click.echo(f"skipped: {cid}: {reason}", err=True)
    return encoded.embeddings["computed"], encoded.embeddings["cached"], len(encoded.skipped)


def _encode_grid(path: Path, overrides: list[str], *engine_args: Any) -> tuple[int, int, int | None]:
    """Each dataset x encoder once; an encoder that fails is one line (as in ``fusionkit bench``)."""
    from fusionkit.bench import encode_grid, grid_engine, load_grid

    _, cells = load_grid(path, overrides)
    engine = resolve_engine(grid_engine(path, overrides), *engine_args)
    computed, cached = encode_grid(cells, lambda line: click.echo(line, err=True), engine)
    return computed, cached, None
