"""Run an encoder over clips through the cache: batches of similar length, decoding ahead, skips with reasons."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from fusionkit.audio import AudioError, duration, file_digest, load_audio, text_digest
from fusionkit.pipeline.cache import EmbeddingCache
from fusionkit.sdk.base import Clip, Encoder
from fusionkit.progress import bar

log = logging.getLogger("fusionkit")


@dataclass
class EncodeResult:
    features: dict[str, np.ndarray] = field(default_factory=dict)
    computed: int = 0
    cached: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


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
) -> EncodeResult:
    """Features for every clip the encoder can take; misses are encoded and cached."""
    start = time.perf_counter()
    result = EncodeResult()
    cache = EmbeddingCache(cache_root, encoder.cache_key(), encoder.identity())
    required = encoder.required_keys()
    misses: list[tuple[Clip, str]] = []
    for clip in clips:
        key = _key(encoder, clip, audio_digests)
        if key is None:
            result.skipped[clip.id] = "no transcript" if encoder.modality == "text" else "no readable audio file"
            continue
        arrays = cache.get(key, required)
        selected = _select(encoder, arrays) if arrays is not None else None
        if selected is None:  # not cached, or an entry this version of the encoder cannot use
            misses.append((clip, key))
        else:
            result.features[clip.id] = selected
            result.cached += 1
    if misses:
        encoder.load()
        name = label or encoder.name
        with bar(total=len(misses), desc=f"encoding {name}", unit="clip") as progress:
            for batch, inputs, failures in _batches(encoder, misses):
                result.skipped.update(failures)
                for (clip, key), arrays in _encode_safely(encoder, batch, inputs, result.skipped):
                    try:
                        selected = encoder.select(arrays)
                    except Exception as exc:  # noqa: BLE001 - one clip's odd output costs only that clip
                        result.skipped[clip.id] = f"{encoder.name} output unusable: {type(exc).__name__}: {exc}"
                        continue
                    cache.put(key, arrays)
                    result.features[clip.id] = selected
                    result.computed += 1
                progress.update(len(batch) + len(failures))
    result.seconds = time.perf_counter() - start
    return result


def _select(encoder: Encoder, arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    """The encoder's view of a cached entry, or None when the entry does not fit it."""
    try:
        return encoder.select(arrays)
    except Exception:  # noqa: BLE001 - e.g. an entry written by an older version: re-encode
        log.debug("%s: cached entry unusable; re-encoding", encoder.name, exc_info=True)
        return None


def _encode_safely(encoder, batch, inputs, skipped) -> Iterator:
    """Encode a batch; if it fails, retry clip by clip so one bad clip costs only itself."""
    try:
        yield from zip(batch, encoder.encode_batch(inputs))
        return
    except Exception as exc:  # noqa: BLE001
        if len(batch) == 1:
            skipped[batch[0][0].id] = f"{encoder.name} failed: {type(exc).__name__}: {exc}"
            return
    for item, x in zip(batch, inputs):
        yield from _encode_safely(encoder, [item], [x], skipped)


def _batches(encoder: Encoder, misses: list[tuple[Clip, str]]):
    """Yield (batch, inputs, failures); audio is sorted by length and decoded one batch ahead."""
    size = max(1, encoder.batch_size())
    if encoder.modality == "text":
        misses = sorted(misses, key=lambda m: len(m[0].text or ""))
        for i in range(0, len(misses), size):
            batch = misses[i : i + size]
            yield batch, [c.text for c, _ in batch], {}
        return
    misses = sorted(misses, key=lambda m: duration(m[0].path))
    groups = [misses[i : i + size] for i in range(0, len(misses), size)]

    def decode(group):
        ok, inputs, failures = [], [], {}
        for clip, key in group:
            try:
                inputs.append(load_audio(clip.path, encoder.sample_rate))
                ok.append((clip, key))
            except AudioError as exc:
                failures[clip.id] = str(exc)
                log.warning("%s: skipped: %s", clip.path, exc)
            except Exception as exc:  # noqa: BLE001 - a decoder bug on one file must not end the run
                failures[clip.id] = f"cannot decode ({type(exc).__name__}: {exc})"
                log.warning("%s: skipped: cannot decode (%s: %s)", clip.path, type(exc).__name__, exc)
        return ok, inputs, failures

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(decode, groups[0]) if groups else None
        for nxt in groups[1:] + [None]:
            current = pending.result()
            pending = pool.submit(decode, nxt) if nxt is not None else None
            yield current
