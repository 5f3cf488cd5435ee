"""The fusionkit hook specifications: the one place a plugin author reads.

A plugin is a Python module named by a package entry point in one of the groups
``fusionkit.encoders``, ``fusionkit.fusions`` or ``fusionkit.datasets``. It
implements one or more of the hooks below with ``@fusionkit.hookimpl``. Each
hook receives a ``register`` callback; call it once per class the plugin offers::

    from fusionkit.sdk import hookimpl
    from fusionkit.sdk.base import Encoder

    class MyEncoder(Encoder):
        name = "my-encoder"
        ...

    @hookimpl
    def register_encoders(register):
        register(MyEncoder)

The entry point's group gives the plugin's kind; its name only names the module
(a module that fails, or whose hook raises, is listed as broken under it). The
registered class's ``name`` is the plugin's name, the one recipes and ``fusionkit
plugins list`` use; the class also gives what the listing shows: ``description``,
``modality`` and ``requires`` (the import names it needs; a missing one makes it
"not installed"). Each module's hooks are called on their own through the plugin
manager: a hook that raises marks that entry point broken and the other plugins
still register.

Keep heavy imports (torch, transformers, ...) inside methods, never at module
level: fusionkit imports every plugin module to list them, and ``fusionkit
--help`` or ``fusionkit plugins list`` must stay fast.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("fusionkit")
hookimpl = pluggy.HookimplMarker("fusionkit")


@hookspec
def register_encoders(register: Callable[[type], None]) -> None:
    """Register :class:`fusionkit.sdk.base.Encoder` subclasses (audio or text embeddings)."""


@hookspec
def register_fusions(register: Callable[[type], None]) -> None:
    """Register :class:`fusionkit.sdk.base.FusionHead` subclasses (classifiers over embeddings)."""


@hookspec
def register_datasets(register: Callable[[type], None]) -> None:
    """Register :class:`fusionkit.sdk.base.Dataset` subclasses (corpora that yield clips)."""
