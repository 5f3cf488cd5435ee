"""fusionkit: speech emotion recognition by fusing audio and text encoders."""

from fusionkit.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "load", "__version__"]


def load(bundle: str):
    """Load an exported model bundle for prediction (see ``fusionkit export``)."""
    from fusionkit.bundle import Bundle

    return Bundle.load(bundle)
