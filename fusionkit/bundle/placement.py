"""Where a loaded bundle's parts run: the device each was trained on where this machine has it, else the CPU.

A bundle trained on a GPU (``device: cuda`` in its encoders' or head's options) still loads on a machine without
one, and a bundle can be moved to the device named when it is loaded (``fusionkit predict --device``,
``fusionkit.load(path, device=...)``). Only parts whose options have a ``device`` field are placed.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("fusionkit")


def placed(saved: str, asked: str | None, part: str) -> str:
    """The device ``part`` runs on: ``asked`` when given (``auto``: CUDA if present, else the CPU), else ``saved``
    where this machine has it, else ``cpu`` (said in one warning).

    Raises :class:`fusionkit.sdk.torch_models.DeviceError` (one line naming ``part``) when ``asked`` is not here.
    """
    if (asked or saved) == "cpu":  # nothing to check: torch is not imported (the onnx runtime loads no torch)
        return "cpu"
    from fusionkit.sdk.torch_models import DeviceError, resolve_device

    if asked is not None:
        device = resolve_device(asked, part)
        return device.type if asked == "auto" else asked
    try:
        resolve_device(saved, part)
    except DeviceError:
        log.warning("%s: trained on %s, which this machine does not have: running on cpu", part, saved)
        return "cpu"
    return saved


def place_recipe(recipe: Any, asked: str | None) -> None:
    """Set, in place, the ``device`` option of the recipe's encoders that have one (the head is placed from its own
    saved options, :func:`place_head`)."""
    from fusionkit.registry import registry

    if asked is not None:  # the machine must have the device asked for, whatever parts the bundle holds
        placed("cpu", asked, "bundle")
    for spec in recipe.encoders:
        field = registry().get("encoder", spec.plugin).Options.model_fields.get("device")
        if field is not None:
            spec.options["device"] = placed(str(spec.options.get("device", field.default)), asked,
                                            f"encoder {spec.key}")


def place_head(head: Any, asked: str | None) -> None:
    """Point a loaded head whose options have a ``device`` at the device it runs on here (its saved options name
    the device it was trained on)."""
    options = getattr(head, "options", None)
    saved = getattr(options, "device", None)
    if saved is None:
        return
    where = placed(str(saved), asked, f"head {getattr(head, 'name', type(head).__name__)}")
    if where != saved:
        head.options = options.model_copy(update={"device": where})
