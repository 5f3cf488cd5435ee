"""Model bundles: ``fusionkit export`` writes one, ``fusionkit predict`` and ``fusionkit.load`` use it.

A bundle is a folder: ``recipe.yaml`` (resolved), ``encoders.json`` (plugin, options, identity),
``head/`` (the fusion head in its own pickle-free format), ``labels.json``, ``models/`` (the local model
folders the recipe names, copied and named relative to the bundle) and ``manifest.json`` (versions, a digest
of every file, and ``content_hash``: SHA-256 of the whole manifest but that field, checked at every load).
Loading needs nothing else: not the corpus, the run folder or the dataset plugin.
A bundle of a run with ``normalize: corpus | speaker`` also holds ``normalization.safetensors``: the training corpus
statistics per encoder (a fallback, used only when asked); predictions normalise with statistics of enrolment audio.
"""

from fusionkit.bundle.export import export
from fusionkit.bundle.files import BUNDLE_FORMAT, BundleError, ExportError, describe
from fusionkit.bundle.model import Bundle, EnrolmentError, Normaliser, Segment

__all__ = ["BUNDLE_FORMAT", "Bundle", "BundleError", "EnrolmentError", "ExportError", "Normaliser", "Segment",
           "describe", "export"]
