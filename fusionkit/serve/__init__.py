"""``fusionkit serve``: a bundle behind a JSON HTTP API (FastAPI + uvicorn).

:func:`create_app` builds the app for a loaded :class:`~fusionkit.bundle.Bundle`: ``POST /predict`` (an upload
or a raw body; whole-file results batched across requests that arrive together, or a timeline with
``window``/``hop``/``smooth``), ``GET /health`` and FastAPI's own ``/docs``.
"""

from fusionkit.serve.app import create_app
from fusionkit.serve.upload import Limits, UploadError

__all__ = ["Limits", "UploadError", "create_app"]
