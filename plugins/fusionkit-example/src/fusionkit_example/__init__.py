"""fusionkit-example: a third-party fusionkit plugin package to copy from."""

__version__ = "0.1.0"
