"""The public plugin SDK: everything a plugin author imports.

* hooks: :data:`hookimpl` (the hook specifications are documented in :mod:`fusionkit.hookspecs`);
* bases: :class:`Dataset`, :class:`Clip`, :class:`Encoder`, :class:`FusionHead`,
  :class:`RegressionHead`, and :class:`Options` for every plugin's options model;
* helpers, imported from their modules: :mod:`fusionkit.sdk.layers` (layer selection and
  pooling), :mod:`fusionkit.sdk.heads` (the head bases, standardisation, validation splits,
  persistence), :mod:`fusionkit.sdk.neural` (:class:`~fusionkit.sdk.neural.NeuralHead`: a torch head
  supplies its network) and :mod:`fusionkit.sdk.training` (the building blocks of networks and the
  training loop), :mod:`fusionkit.sdk.ensemble` (late fusion), :mod:`fusionkit.sdk.torch_models`
  (devices, threads and transformers model loading for torch encoders).

Importing this package imports neither torch nor transformers.
"""

from fusionkit.hookspecs import hookimpl
from fusionkit.sdk.base import Clip, Dataset, Encoder, LayerChoice, Pooling
from fusionkit.sdk.features import Features
from fusionkit.sdk.heads import FusionHead, HeadFileError, RegressionHead
from fusionkit.sdk.options import Options

__all__ = [
    "Clip", "Dataset", "Encoder", "Features", "FusionHead", "HeadFileError", "LayerChoice", "Options", "Pooling",
    "RegressionHead", "hookimpl",
]
