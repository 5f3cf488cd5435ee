"""The public plugin SDK: everything a plugin author imports.

* hooks: :data:`hookimpl` (the hook specifications are documented in :mod:`fusionkit.hookspecs`);
* bases: :class:`Dataset`, :class:`Clip`, :class:`Encoder`, :class:`FusionHead`,
  :class:`RegressionHead`, and :class:`Options` for every plugin's options model;
* helpers, imported from their modules: :mod:`fusionkit.sdk.layers` (layer selection and
  pooling), :mod:`fusionkit.sdk.heads` (standardisation, validation splits, persistence),
  :mod:`fusionkit.sdk.neural` and :mod:`fusionkit.sdk.training` (torch heads and their training loop),
  :mod:`fusionkit.sdk.ensemble` (late fusion).

Importing this package imports neither torch nor transformers.
"""

from fusionkit.hookspecs import hookimpl
from fusionkit.sdk.base import Clip, Dataset, Encoder, Features, FusionHead, LayerChoice, Options, Pooling
from fusionkit.sdk.heads import HeadFileError
from fusionkit.sdk.regression import RegressionHead

__all__ = [
    "Clip", "Dataset", "Encoder", "Features", "FusionHead", "HeadFileError", "LayerChoice", "Options", "Pooling",
    "RegressionHead", "hookimpl",
]
