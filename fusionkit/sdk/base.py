"""The three plugin kinds: Dataset, Encoder and FusionHead.

Plugins subclass these and register the class through a hook (see
:mod:`fusionkit.hookspecs`). Each class carries a pydantic ``Options`` model: the
recipe's ``options:`` mapping for that plugin is validated against it.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Sequence, Union

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict


class Options(BaseModel):
    """Base of every plugin options model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


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
    """A corpus. ``clips()`` lists every utterance with its label and speaker."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    requires: ClassVar[tuple[str, ...]] = ()
    needs_root: ClassVar[bool] = True

    def __init__(self, root: Path | None, options: Options):
        self.root = root
        self.options = options

    @abstractmethod
    def clips(self) -> list[Clip]:
        """Every clip of the corpus (unreadable audio is found later, when decoded)."""

    def partitions(self) -> dict[str, str] | None:
        """Clip id -> predefined partition name ("train"/"dev"/"test"), where the corpus has one."""
        return None


# ---------------------------------------------------------------- encoders

Pooling = Literal["mean", "mean+std", "max", "none"]


def _distinct_layers(v):
    if isinstance(v, list) and (not v or len(set(v)) != len(v)):
        raise ValueError("layers list must be non-empty without repeats")
    return v


LayerChoice = Annotated[Union[int, list[int], Literal["all"]], AfterValidator(_distinct_layers)]
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

    # -- opensmile-style convenience: one API for a signal, a file, many files
    def process_signal(self, signal: np.ndarray, sampling_rate: int) -> np.ndarray:
        from fusionkit.audio import to_mono_resampled

        self.load()
        x = to_mono_resampled(signal, sampling_rate, self.sample_rate)
        return self.select(self.encode_batch([x])[0])

    def process_file(self, path: str | Path) -> np.ndarray:
        from fusionkit.audio import load_audio

        self.load()
        return self.select(self.encode_batch([load_audio(path, self.sample_rate)])[0])

    def process_files(self, paths: Sequence[str | Path]) -> list[np.ndarray]:
        return [self.process_file(p) for p in paths]


# ---------------------------------------------------------------- fusion heads

Features = Union[np.ndarray, list]  # (N, D), (N, L, D), or a list of N (T_i, D) arrays


class FusionHead(ABC):
    """A classifier over one or more encoders' features, fitted once per fold.

    ``X`` maps encoder name -> features for the same N clips (same order). ``y``
    holds class indices into ``classes``. ``groups`` holds each clip's speaker,
    so that a head that needs a validation set can draw it from other speakers.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    requires: ClassVar[tuple[str, ...]] = ()
    accepts_sequences: ClassVar[bool] = False

    def __init__(self, options: Options, seed: int = 0):
        self.options = options
        self.seed = seed

    @abstractmethod
    def fit(
        self,
        X: dict[str, Features],
        y: np.ndarray,
        classes: list[str],
        groups: np.ndarray | None = None,
    ) -> None: ...

    @abstractmethod
    def predict_proba(self, X: dict[str, Features]) -> np.ndarray:
        """(N, len(classes)) class probabilities."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted head into ``directory`` (no pickle: safetensors, native formats, JSON)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, options: Options, seed: int = 0) -> "FusionHead": ...
