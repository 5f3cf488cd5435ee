"""Deprecated: import from :mod:`fusionkit.sdk.heads` (this module is kept for one release)."""

import warnings

from fusionkit.sdk.heads import *  # noqa: F401,F403

warnings.warn("fusionkit.heads is deprecated; import from fusionkit.sdk.heads", DeprecationWarning, stacklevel=2)
