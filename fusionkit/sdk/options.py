"""The base of every plugin's options model (the recipe's ``options:`` mapping is validated against it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    """Base of every plugin options model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
