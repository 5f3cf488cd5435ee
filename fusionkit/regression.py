"""Deprecated: import from :mod:`fusionkit.sdk` (this module is kept for one release)."""

import warnings

from fusionkit.sdk.heads import RegressionHead  # noqa: F401

warnings.warn("fusionkit.regression is deprecated; import RegressionHead from fusionkit.sdk", DeprecationWarning,
              stacklevel=2)
