"""Deprecated: import from :mod:`fusionkit.sdk` (this module is kept for one release)."""

import warnings

from fusionkit.sdk.base import *  # noqa: F401,F403
from fusionkit.sdk.base import Clip, Dataset, Encoder, Features, FusionHead, LayerChoice, Options, Pooling  # noqa: F401

warnings.warn("fusionkit.interfaces is deprecated; import from fusionkit.sdk", DeprecationWarning, stacklevel=2)
