"""The ``fusionkit`` command: the only package that imports click."""

from fusionkit.cli.main import main

__all__ = ["main"]
