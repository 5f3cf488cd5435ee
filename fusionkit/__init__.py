"""fusionkit: speech emotion recognition by fusing audio and text encoders.

``fusionkit.load(bundle)`` loads an exported model; plugin authors import from :mod:`fusionkit.sdk`.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load", "__version__"]


def load(bundle: str, trust_remote_code: bool = False, device: str | None = None):
    """Load an exported model bundle for prediction (see ``fusionkit export``).

    A bundle whose recipe asks for ``trust_remote_code`` is refused unless ``trust_remote_code=True`` is passed.
    ``device`` (cpu, cuda, cuda:N, mps, auto) moves every part that has a device option there; by default each
    runs where it was trained when this machine has that device, else on the CPU.
    """
    from fusionkit.bundle import Bundle

    return Bundle.load(bundle, trust_remote_code=trust_remote_code, device=device)


def __getattr__(name: str):
    if name == "hookimpl":  # the pre-SDK spelling ``from fusionkit import hookimpl``, kept for one release
        import warnings

        from fusionkit.hookspecs import hookimpl

        warnings.warn("fusionkit.hookimpl is deprecated; import it from fusionkit.sdk", DeprecationWarning,
                      stacklevel=2)
        return hookimpl
    raise AttributeError(f"module 'fusionkit' has no attribute {name!r}")
