"""The three plugin kinds: Dataset, Encoder and FusionHead.

Plugins subclass these and register the class through a hook (see
:mod:`fusionkit.hookspecs`). Each class carries a pydantic ``Options`` model: the
recipe's ``options:`` mapping for that plugin is validated against it. The fusion-head
bases live in :mod:`fusionkit.sdk.heads` and are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator

from fusionkit.sdk.features import Features
from fusionkit.sdk.heads import FusionHead, RegressionHead
from fusionkit.sdk.options import Options

__all__ = [
    "Clip", "Dataset", "Encoder", "Features", "FusionHead", "LayerChoice", "Options", "Pooling", "RegressionHead",
]


# ---------------------------------------------------------------- datasets


@dataclass
class Clip:
    """One utterance: where its audio is, what it says, who said it, how it was labelled."""

    id: str
    path: Path | None
    label: str | None
    speaker: str
    text: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Dataset(ABC):
    """A corpus. ``clips()`` lists every utterance with its label and speaker.

    A file (or label-file row) that ``clips()`` passes over is reported with :meth:`skip`, never only
    logged: a run lists it under ``skipped`` in metrics.json, in its printed summary and in report.md.
    """

    name: ClassVar[str]
    modality: ClassVar[str] = "audio+text"  # what its clips carry (shown by `fusionkit plugins list`)
    description: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    requires: ClassVar[tuple[str, ...]] = ()
    needs_root: ClassVar[bool] = True

    def __init__(self, root: Path | None, options: Options):
        self.root = root
        self.options = options
        self.skipped: dict[str, str] = {}

    @abstractmethod
    def clips(self) -> list[Clip]:
        """Every clip of the corpus (unreadable audio is found later, when decoded); what it passes over goes
        through :meth:`skip`."""

    def skip(self, item: str | Path, reason: str) -> None:
        """Report a file (or a row of a label file) that :meth:`clips` passes over, with the reason.

        ``item`` is shown relative to the dataset root when it lies under it. Reporting the same item
        twice (``clips()`` called again) keeps one entry.
        """
        if not isinstance(getattr(self, "skipped", None), dict):  # a subclass that did not call __init__
            self.skipped = {}
        self.skipped[self._shown(item)] = reason

    def _shown(self, item: str | Path) -> str:
        """``item`` relative to the root (``/`` separators) when it lies under it, else as given."""
        if isinstance(item, Path) and self.root is not None:
            try:
                return item.relative_to(Path(self.root)).as_posix()
            except ValueError:
                pass
        return str(item)

    def partitions(self) -> dict[str, str] | None:
        """Clip id -> predefined partition name ("train"/"dev"/"test"), where the corpus has one."""
        return None


# ---------------------------------------------------------------- encoders

Pooling = Literal["mean", "mean+std", "max", "none"]


def _distinct_layers(v):
    if isinstance(v, list) and (not v or len(set(v)) != len(v)):
        raise ValueError("layers list must be non-empty without repeats")
    return v


LayerChoice = Annotated[int | list[int] | Literal["all"], AfterValidator(_distinct_layers)]
"""A layer index, a list of distinct indices, or "all"."""


class Encoder(ABC):
    """Turns a clip's audio (or text) into arrays that are cached, then into features.

    The split between :meth:`encode_batch` and :meth:`select` is what makes the
    cache useful: ``encode_batch`` returns everything worth keeping for a clip
    (for a layered model, every layer's pooled states); ``select`` picks what the
    recipe asked for (a layer, a pooling) from those cached arrays. Options named
    in ``view_options`` only affect ``select``, so changing them encodes nothing.
    """

    name: ClassVar[str]
    modality: ClassVar[Literal["audio", "text"]] = "audio"
    description: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    requires: ClassVar[tuple[str, ...]] = ()
    view_options: ClassVar[frozenset[str]] = frozenset()
    # options that change how fast, never what, is computed: not part of the cache key
    runtime_options: ClassVar[frozenset[str]] = frozenset({"batch_size", "workers", "threads"})
    version: ClassVar[str] = "1"
    sample_rate: int = 16000

    def __init__(self, options: Options):
        self.options = options

    # -- identity (cache key)
    def model_identity(self) -> str | None:
        """A string that changes when the model's weights change (e.g. a file digest)."""
        return None

    def identity(self) -> dict[str, Any]:
        opts = self.options.model_dump(mode="json", exclude=set(self.view_options) | set(self.runtime_options))
        return {
            "plugin": self.name,
            "version": self.version,
            "options": opts,
            "model": self.model_identity(),
        }

    def cache_key(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True).encode()
        return f"{self.name}-{hashlib.sha256(blob).hexdigest()[:16]}"

    def precision(self) -> str | None:
        """The precision the model runs in here, for encoders with a ``precision`` option (``auto`` decided for this
        machine and the ``device`` option); None for the others."""
        choice = getattr(self.options, "precision", None)
        if choice is None:
            return None
        from fusionkit.sdk.torch_models import resolve_precision

        return resolve_precision(choice, getattr(self.options, "device", "cpu"))

    def run_info(self) -> dict[str, Any]:
        """How this encoder computes, for metrics.json (the resolved precision, where it has one)."""
        precision = self.precision()
        return {} if precision is None else {"precision": precision}

    # -- work
    def load(self) -> None:
        """Load the model (called once, before the first batch). Heavy imports go here."""

    def batch_size(self) -> int:
        return int(getattr(self.options, "batch_size", 8))

    @abstractmethod
    def encode_batch(self, inputs: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        """Inputs are mono float32 signals at ``sample_rate`` (audio) or strings (text).

        Return one dict of arrays per input; it is cached as is.
        """

    def required_keys(self) -> set[str]:
        """Cached arrays that :meth:`select` needs; a cache entry without them is re-encoded."""
        return set()

    def select(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """Features for a fusion head: a vector (D,), layers (L, D) or a sequence (T, D)."""
        (only,) = arrays.values()
        return only

    def is_sequence(self) -> bool:
        """True when :meth:`select` returns a (T, D) sequence rather than a pooled vector."""
        return False

    # -- fine-tuning (optional): encoders whose upper blocks a head (``fine-tune``) may train
    def fine_tune_blocks(self, blocks: int | None = None) -> int | None:
        """How many blocks :meth:`trainable_top` would train, checked from the model's config alone (no weights
        are loaded, nothing is encoded): a ``ValueError`` in one line when the options cannot be fine-tuned.
        None: no early check (the ``fine-tune`` head itself refuses an encoder without ``trainable_top``)."""
        return None

    def trainable_top(self, blocks: int | None = None) -> tuple[Any, dict[str, Any]]:
        """A trainable torch copy of the model's blocks after the selected layer, holding the model's own weights,
        and a JSON-able spec from which :meth:`build_top` rebuilds it.

        The module maps that layer's frames ``(B, T, D)`` and a ``(B, T)`` mask (True on real frames) to the
        frames of the last block it runs; ``blocks`` says how many blocks to run (None: up to the model's last).
        """
        raise NotImplementedError(f"encoder '{self.name}' cannot be fine-tuned: it offers no trainable_top")

    @classmethod
    def build_top(cls, spec: dict[str, Any]) -> Any:
        """The module of :meth:`trainable_top` rebuilt from its spec with fresh weights (a saved head loads its own)."""
        raise NotImplementedError(f"encoder '{cls.name}' cannot rebuild fine-tuned blocks: it offers no build_top")

    # -- opensmile-style convenience: one API for a signal, a file, many files, computed as in a run
    #    (fusionkit.pipeline.featurize); a failure raises AudioError or EncodeError with the reason
    def process_signal(self, signal: np.ndarray, sampling_rate: int) -> np.ndarray:
        """Features of a signal at ``sampling_rate`` (resampled to :attr:`sample_rate`)."""
        from fusionkit.pipeline.featurize import featurize

        self.load()
        (out,) = featurize(self, [signal], sampling_rate)
        return out.unwrap()

    def process_file(self, path: str | Path) -> np.ndarray:
        """Features of an audio file (decoded at :attr:`sample_rate`)."""
        return self.process_files([path])[0]

    def process_files(self, paths: Sequence[str | Path]) -> list[np.ndarray]:
        """Features of each file, in batches of :meth:`batch_size`; the first file that fails raises."""
        from fusionkit.pipeline.featurize import featurize

        self.load()
        paths = list(paths)
        return [out.unwrap(str(paths[out.index])) for out in featurize(self, paths)]
