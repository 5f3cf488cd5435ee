"""Naming the plugin a failure came from: an exception raised inside a dataset, encoder or fusion head plugin's code
becomes one line that says which plugin, so a user can tell fusionkit's errors from a plugin's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class PluginFailed(ValueError):
    """A plugin's own code raised; the message names the plugin (``dataset 'x': ...``) and keeps the original."""


@contextmanager
def blame(kind: str, name: str) -> Iterator[None]:
    """Re-raise what the code inside raises as :class:`PluginFailed` naming ``kind`` (dataset, encoder, fusion head)
    and ``name``, unless its message names the plugin already; KeyboardInterrupt passes unchanged."""
    prefix = f"{kind} '{name}'"
    try:
        yield
    except (KeyboardInterrupt, PluginFailed):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of a plugin's code: named, chained for -v
        text = str(exc)
        if text.startswith((prefix, f"{name}:", f"{name} ")):
            raise
        own = isinstance(exc, (ValueError, OSError))  # a plugin's own message; else its type says more
        raise PluginFailed(f"{prefix}: {text if own else f'{type(exc).__name__}: {text}'}") from exc
