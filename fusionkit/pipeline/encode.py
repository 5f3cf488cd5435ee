"""Encoding clips for a run: :func:`~fusionkit.pipeline.featurize.featurize` over the clips the cache lacks,
shortest first, each cached as the encoder returned it; skipped clips keep their reason."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from fusionkit.audio import duration, file_digest, text_digest
from fusionkit.pipeline.cache import EmbeddingCache, writing_behind
from fusionkit.pipeline.featurize import (  # noqa: F401 - featurize and its outcome, re-exported
    DEFAULT_SAMPLING_RATE,
    EncodeError,
    Featurized,
    featurize,
    load_native,
    native_rate,
)
from fusionkit.progress import bar
from fusionkit.sdk.base import Clip, Encoder
from fusionkit.sdk.layers import LayerError

T = TypeVar("T")

log = logging.getLogger("fusionkit")


@dataclass
class EncodeResult:
    features: dict[str, np.ndarray] = field(default_factory=dict)
    computed: int = 0
    cached: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    flagged: dict[str, str] = field(default_factory=dict)  # clip id -> why its audio looks silent or very short


AUDIO_NOTE = "_audio_warning"
"""A cache entry's array holding (UTF-8) why its clip's audio looks silent or very short, so that a run served from
the cache flags the clip as the run that encoded it did; :meth:`Encoder.select` never sees it."""


def with_note(arrays: dict[str, np.ndarray], warning: str | None) -> dict[str, np.ndarray]:
    """The arrays to cache: the encoder's, plus :data:`AUDIO_NOTE` where the clip was flagged."""
    return {**arrays, AUDIO_NOTE: np.frombuffer(warning.encode(), dtype=np.uint8)} if warning else arrays


def entry_note(arrays: dict[str, np.ndarray]) -> str | None:
    """The :data:`AUDIO_NOTE` of a cached entry, if any."""
    note = arrays.get(AUDIO_NOTE)
    return None if note is None else np.asarray(note, dtype=np.uint8).tobytes().decode("utf-8", "replace")


def clip_digests(clips: Sequence[Clip]) -> tuple[dict[str, str], dict[str, str]]:
    """Content digest of every clip's audio file; (digests, skipped reasons)."""
    digests, skipped = {}, {}
    for clip in bar(clips, desc="hashing audio", unit="clip", leave=False):
        if clip.path is None:
            continue
        try:
            if Path(clip.path).stat().st_size == 0:
                skipped[clip.id] = "empty file (0 bytes)"
                continue
            digests[clip.id] = file_digest(clip.path)
        except FileNotFoundError:
            skipped[clip.id] = f"file not found ({clip.path})"
        except OSError as exc:
            skipped[clip.id] = f"cannot read file ({exc.strerror})"
    return digests, skipped


def _key(encoder: Encoder, clip: Clip, audio_digests: dict[str, str]) -> str | None:
    if encoder.modality == "text":
        return text_digest(clip.text) if clip.text else None
    return audio_digests.get(clip.id)


def encode_clips(
    encoder: Encoder,
    clips: Sequence[Clip],
    cache_root: Path,
    audio_digests: dict[str, str],
    label: str | None = None,
    engine: EngineSpec | None = None,
) -> EncodeResult:
    """Features for every clip the encoder can take; misses are encoded (shortest first) and cached.

    With the ray ``engine`` the misses are encoded by Ray actors, in the same batches (the same features)."""
    start = time.perf_counter()
    result = EncodeResult()
    cache = EmbeddingCache(cache_root, encoder.cache_key(), encoder.identity())
    keyed: list[tuple[Clip, str]] = []
    for clip in clips:
        key = _key(encoder, clip, audio_digests)
        if key is None:
            result.skipped[clip.id] = "no transcript" if encoder.modality == "text" else "no readable audio file"
        else:
            keyed.append((clip, key))
    notes: list[tuple[Clip, str]] = []
    try:
        hits, misses = split_cached(encoder, cache, keyed, notes)
    except LayerError as exc:  # required_keys checks the recipe's layers against the model: before any encoding
        raise LayerError(f"{label or encoder.name}: {exc}") from None
    for clip, selected in hits:
        result.features[clip.id] = selected
    result.flagged.update((clip.id, note) for clip, note in notes)
    result.cached = len(hits)
    if misses:
        misses = _by_length(encoder, misses)
        inputs = [clip.text if encoder.modality == "text" else clip.path for clip, _ in misses]
        with bar(total=len(misses), desc=f"encoding {label or encoder.name}", unit="clip") as progress, \
                writing_behind(cache) as put:
            for out in _featurize(encoder, inputs, [key for _, key in misses], cache, label, engine):
                clip, key = misses[out.index]
                if out.ok:
                    if out.arrays is not None:  # None: written by a ray worker on a shared cache path
                        put(key, with_note(out.arrays, out.warning))  # a cache that cannot be written warns once
                    result.features[clip.id] = out.features
                    result.computed += 1
                    if out.warning:
                        result.flagged[clip.id] = out.warning
                else:
                    result.skipped[clip.id] = out.reason
                progress.update(1)
    result.seconds = time.perf_counter() - start
    return result


def split_cached(encoder: Encoder, cache: EmbeddingCache, keyed: Sequence[tuple[T, str]],
                 notes: list[tuple[T, str]] | None = None) -> tuple[list[tuple[T, np.ndarray]], list[tuple[T, str]]]:
    """(item, features) of the items whose cache entry the encoder can use, and the (item, key) to encode: not
    cached, or an entry this version of the encoder cannot use. ``notes`` gets (item, note) for the hits whose
    entry says their audio looks silent or very short."""
    required = encoder.required_keys()
    hits, misses = [], []
    for item, key in keyed:
        arrays = cache.get(key, required)
        selected = cached_view(encoder, arrays) if arrays is not None else None
        if selected is None:
            misses.append((item, key))
        else:
            hits.append((item, selected))
            note = entry_note(arrays)
            if note and notes is not None:
                notes.append((item, note))
    return hits, misses


def _featurize(encoder: Encoder, inputs: list, keys: list[str], cache: EmbeddingCache, label: str | None,
               engine: EngineSpec | None) -> Iterator[Featurized]:
    """featurize here (the encoder loaded in this process), or on the ray engine's actors."""
    from fusionkit.engine import is_ray

    if not is_ray(engine):
        load_encoder(encoder, label)
        yield from featurize(encoder, inputs)
        return
    from fusionkit.engine.ray_data import featurize_on_ray

    shared = (str(cache.root), cache.dir.name, encoder.identity()) if engine.shared_cache else None
    yield from featurize_on_ray(encoder, inputs, keys, label or encoder.name, engine, load_encoder, shared)


def load_encoder(encoder: Encoder, label: str | None = None) -> None:
    """``encoder.load()``; a ``sys.exit()`` in it is an :class:`EncodeError` naming the encoder, not an exit."""
    from fusionkit.blame import blame

    try:
        with blame("encoder", label or encoder.name):
            encoder.load()
    except SystemExit as exc:
        raise EncodeError(f"{label or encoder.name}: the encoder's load() called sys.exit({exc.code!r})") from None


def cached_view(encoder: Encoder, arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    """The encoder's view of a cached entry, or None when the entry does not fit it."""
    try:
        return encoder.select({k: v for k, v in arrays.items() if k != AUDIO_NOTE})
    except (Exception, SystemExit):  # noqa: BLE001 - e.g. an entry written by an older version: re-encode
        log.debug("%s: cached entry unusable; re-encoding", encoder.name, exc_info=True)
        return None


def _by_length(encoder: Encoder, misses: list[tuple[Clip, str]]) -> list[tuple[Clip, str]]:
    """Shortest first, so that a batch holds clips of similar length."""
    if encoder.modality == "text":
        return sorted(misses, key=lambda m: len(m[0].text or ""))
    return sorted(misses, key=lambda m: duration(m[0].path))


def _encode_one(encoder: Encoder, clips: Sequence[Clip], cache_root: Path, digests: dict[str, str], name: str,
                isolate: bool, engine: EngineSpec | None = None) -> EncodeResult:
    """:func:`encode_clips`; with ``isolate``, an encoder failing as a whole skips every clip with the reason."""
    if not isolate:
        return encode_clips(encoder, clips, cache_root, digests, label=name, engine=engine)
    try:
        return encode_clips(encoder, clips, cache_root, digests, label=name, engine=engine)
    except Exception as exc:  # noqa: BLE001 - the grid records the failure in the cells that use this encoder
        reason = f"encoder failed: {type(exc).__name__}: {exc}"
        log.debug("%s: %s", name, reason, exc_info=True)
        return EncodeResult(skipped={c.id: reason for c in clips})


# ---------------------------------------------------------------- the encode stage of a run

if TYPE_CHECKING:
    from fusionkit.recipe import EngineSpec, Recipe


@dataclass
class Encoded:
    """Every encoder's features of a run's clips, and the clips that could not be taken (with the reason)."""

    features: dict[str, dict[str, np.ndarray]]  # encoder name -> clip id -> features
    sequences: dict[str, bool]  # encoder name -> gives frame sequences
    skipped: dict[str, str]
    embeddings: dict  # metrics.json's counts: computed, cached, per_encoder, cache_dir
    seconds: float
    digests: dict[str, str] = field(default_factory=dict)  # clip id -> content digest of its audio file
    flagged: dict[str, str] = field(default_factory=dict)  # clip id -> why its audio looks silent or very short


def build_encoders(recipe: Recipe) -> dict[str, Encoder]:
    """The recipe's encoder plugins by name, with their options validated."""
    from fusionkit.blame import blame
    from fusionkit.recipe import plugin_options

    out = {}
    for spec in recipe.encoders:
        cls, options = plugin_options("encoder", spec.plugin, spec.options)
        with blame("encoder", spec.key):
            out[spec.key] = cls(options)
    return out


def encode_recipe(recipe: Recipe, clips: Sequence[Clip], run_dir: Path | None = None,
                  isolate: bool = False) -> Encoded:
    """Hash the audio, transcribe it when ``text.source`` is asr, and encode every clip with every encoder
    through the cache; a clip an encoder cannot take is skipped with its reason.

    ``isolate`` (benchmark grids): an encoder that fails as a whole (its model does not load, ...) skips every
    clip with the reason instead of ending the call, so the other encoders are still encoded."""
    from fusionkit.fileio import default_cache_dir

    encoders = build_encoders(recipe)
    cache_root = recipe.cache.dir or default_cache_dir()
    skipped: dict[str, str] = {}
    digests: dict[str, str] = {}
    if any(e.modality == "audio" for e in encoders.values()):
        digests, skipped = clip_digests(clips)
    if any(e.modality == "text" for e in encoders.values()) and recipe.text.source == "asr":
        from fusionkit.pipeline.transcripts import transcribe_clips

        skipped.update(transcribe_clips(clips, recipe.text, digests, cache_root, run_dir))
    features, sequences, counts, flagged = {}, {}, {}, {}
    start = time.perf_counter()
    for name, encoder in encoders.items():
        result = _encode_one(encoder, clips, cache_root, digests, name, isolate, recipe.engine)
        for cid, reason in result.skipped.items():
            skipped.setdefault(cid, f"{name}: {reason}")
        for cid, warning in result.flagged.items():
            flagged.setdefault(cid, warning)
        features[name] = result.features
        sequences[name] = encoder.is_sequence()
        info = encoder.run_info() if hasattr(encoder, "run_info") else {}  # e.g. a torch encoder's precision
        counts[name] = {"computed": result.computed, "cached": result.cached, "seconds": round(result.seconds, 2),
                        "cache_key": encoder.cache_key(), **info}
        log.info("%s: %d embeddings computed, %d from cache (%.1f s)%s", name, result.computed, result.cached,
                 result.seconds, "".join(f", {k} {v}" for k, v in info.items()))
    embeddings = {"computed": sum(c["computed"] for c in counts.values()),
                  "cached": sum(c["cached"] for c in counts.values()),
                  "per_encoder": counts, "cache_dir": str(cache_root)}
    return Encoded(features, sequences, skipped, embeddings, time.perf_counter() - start, digests, flagged)
