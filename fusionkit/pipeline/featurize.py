"""``featurize``: the one way from inputs (files, signals at any rate, texts) to an encoder's features.

Training (:func:`fusionkit.pipeline.encode.encode_clips`), bundles (:class:`fusionkit.bundle.Bundle`) and
``Encoder.process_signal``/``process_file``/``process_files`` all go through it: each signal reaches the
encoder at the encoder's ``sample_rate``, in batches of ``batch_size()``, and one bad input costs only itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fusionkit.audio import AudioError, load_audio, signal_warning, to_mono_resampled

log = logging.getLogger("fusionkit")

DEFAULT_SAMPLING_RATE = 16000
"""The rate a signal array is taken to have when it comes without one (``Bundle.predict``)."""


class EncoderLike(Protocol):
    """What featurize uses of a :class:`fusionkit.sdk.base.Encoder` (which calls featurize itself)."""

    name: str
    modality: str
    sample_rate: int

    def batch_size(self) -> int: ...

    def encode_batch(self, inputs: Sequence[Any]) -> list[dict[str, np.ndarray]]: ...

    def select(self, arrays: dict[str, np.ndarray]) -> np.ndarray: ...



class EncodeError(ValueError):
    """An input the encoder could not turn into features; the message is the reason."""


@dataclass
class Featurized:
    """One input's outcome: the encoder's arrays (cached as they are) and the selected features, or the reason."""

    index: int  # position in the inputs given to featurize
    arrays: dict[str, np.ndarray] | None = None
    features: np.ndarray | None = None
    reason: str | None = None
    error: BaseException | None = field(default=None, repr=False)
    warning: str | None = None  # audio that is silent or very short (fusionkit.audio.signal_warning): kept, flagged

    @property
    def ok(self) -> bool:
        return self.reason is None

    def unwrap(self, label: str | None = None) -> np.ndarray:
        """The features; else :class:`AudioError` (unreadable audio) or :class:`EncodeError`, naming ``label``."""
        if self.reason is None:
            return self.features
        message = f"{label}: {self.reason}" if label else self.reason
        if isinstance(self.error, AudioError):
            raise AudioError(message) from self.error
        raise EncodeError(message) from self.error


def featurize(encoder: EncoderLike, inputs: Sequence[Any], sampling_rate: int | None = None) -> Iterator[Featurized]:
    """Features of every input: one :class:`Featurized` per input, in input order, batch by batch.

    Inputs are strings for a text encoder; for an audio encoder, files (``str``/``Path``, decoded at the
    encoder's ``sample_rate``) or signal arrays at ``sampling_rate`` (mixed to mono, resampled to that rate).
    Batches hold ``encoder.batch_size()`` inputs in the order given; audio is decoded one batch ahead on a
    thread. A batch that fails (raises, or returns a result count other than its input count) is retried input by
    input, so one bad input costs only itself, with a reason; the first such batch of a call logs one warning
    naming the encoder and why. The encoder must be loaded (:meth:`Encoder.load`).
    """
    inputs = list(inputs)
    retried: list[str] = []  # the first failed batch's reason, once it has been told
    _check_inputs(encoder, inputs, sampling_rate)
    size = max(1, encoder.batch_size())
    groups = [range(i, min(i + size, len(inputs))) for i in range(0, len(inputs), size)]
    for ready, failed in _prepared(encoder, inputs, groups, sampling_rate):
        warnings = {} if encoder.modality == "text" else {i: signal_warning(x, encoder.sample_rate) for i, x in ready}
        for out in sorted([*failed, *_encoded(encoder, ready, retried)], key=lambda out: out.index):
            if warnings.get(out.index) is not None:
                out.warning = str(warnings[out.index])
            yield out


def native_rate(path: str | Path) -> int | None:
    """A file's sampling rate from its header; None when the header cannot be read."""
    import soundfile as sf

    try:
        return int(sf.info(str(path)).samplerate)
    except Exception:  # noqa: BLE001 - load_audio gives the reason when the file is read
        return None


def load_native(path: str | Path) -> tuple[np.ndarray, int]:
    """A file's mono signal at its own sampling rate, and that rate; :class:`AudioError` with the reason otherwise."""
    sr = native_rate(path) or DEFAULT_SAMPLING_RATE  # an unreadable header: load_audio raises the reason
    return load_audio(path, sr), sr


def _is_file(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def _check_inputs(encoder: EncoderLike, inputs: list, sampling_rate: int | None) -> None:
    if encoder.modality == "text":
        wrong = [type(x).__name__ for x in inputs if not isinstance(x, str)]
        if wrong:
            raise TypeError(f"{encoder.name}: a text encoder takes strings, got {wrong[0]}")
        return
    if sampling_rate is not None and (not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0):
        raise ValueError(f"sampling_rate: expected a positive integer (Hz), got {sampling_rate!r}")
    if sampling_rate is None and not all(_is_file(x) for x in inputs):
        raise ValueError(f"{encoder.name}: signal arrays need their sampling_rate")


def _prepared(encoder: EncoderLike, inputs: list, groups: list[range], sampling_rate: int | None
              ) -> Iterator[tuple[list[tuple[int, Any]], list[Featurized]]]:
    """Per group: ``(index, input ready for encode_batch)`` pairs and the inputs that could not be decoded.

    Texts go as they are; audio is decoded (files) or resampled (signals) one group ahead on a thread.
    """
    if encoder.modality == "text":
        for group in groups:
            yield [(i, inputs[i]) for i in group], []
        return

    def decode(group: range) -> tuple[list[tuple[int, np.ndarray]], list[Featurized]]:
        ready, failed = [], []
        for i in group:
            x = inputs[i]
            name = str(x) if _is_file(x) else f"signal {i}"
            try:
                signal = (load_audio(x, encoder.sample_rate) if _is_file(x)
                          else to_mono_resampled(x, sampling_rate, encoder.sample_rate))
                ready.append((i, signal))
            except AudioError as exc:
                failed.append(Featurized(i, reason=str(exc), error=exc))
                log.warning("%s: skipped: %s", name, exc)
            except Exception as exc:  # noqa: BLE001 - a decoder bug on one input must not end the run
                failed.append(Featurized(i, reason=f"cannot decode ({type(exc).__name__}: {exc})", error=exc))
                log.warning("%s: skipped: cannot decode (%s: %s)", name, type(exc).__name__, exc)
        return ready, failed

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(decode, groups[0]) if groups else None
        for nxt in groups[1:] + [None]:
            current = pending.result()
            pending = pool.submit(decode, nxt) if nxt is not None else None
            yield current


def _encoded(encoder: EncoderLike, ready: list[tuple[int, Any]], retried: list[str] | None = None
             ) -> Iterator[Featurized]:
    """Encode and select; an output :meth:`Encoder.select` refuses, or one holding NaN or inf, costs only its
    own input (and is never cached)."""
    for index, arrays, error in _encode_safely(encoder, ready, retried):
        if error is not None:
            yield Featurized(index, reason=f"{encoder.name} failed: {type(error).__name__}: {error}", error=error)
            continue
        try:
            features = encoder.select(arrays)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - one input's odd output costs only that input
            yield Featurized(index, reason=f"{encoder.name} output unusable: {type(exc).__name__}: {exc}", error=exc)
            continue
        bad = non_finite(arrays, features)
        if bad:
            yield Featurized(index, reason=f"{encoder.name} output not finite: {bad}", error=EncodeError(bad))
            continue
        yield Featurized(index, arrays, features)


def non_finite(arrays: Any, features: Any = None) -> str | None:
    """Where NaN or inf sits in an encoder's arrays (or selected features), in words; None when all are finite."""
    named = dict(arrays) if isinstance(arrays, dict) else {}
    if features is not None:
        named["(selected features)"] = features
    for key, value in named.items():
        try:
            x = np.asarray(value)
            if x.dtype.kind in "fc" and not np.all(np.isfinite(x)):
                nan, inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
                return f"{key} holds {nan} NaN and {inf} inf value(s) of {x.size}"
        except (TypeError, ValueError):
            continue  # not numeric: select() decides whether it is usable
    return None


def _encode_safely(encoder: EncoderLike, batch: list[tuple[int, Any]], retried: list[str] | None = None
                   ) -> Iterator[tuple[int, dict | None, BaseException | None]]:
    """``(index, arrays, None)`` per input, or ``(index, None, error)``; a failing batch is retried one by one.

    The retry hides a plugin bug and costs the batching, so the first failing batch is told (a warning naming the
    encoder and the reason) unless ``retried`` already holds a reason: a list kept by the caller, one per call.
    """
    if not batch:
        return
    try:
        outputs = list(encoder.encode_batch([x for _, x in batch]))
        if len(outputs) != len(batch):
            raise ValueError(f"encode_batch returned {len(outputs)} results for {len(batch)} inputs")
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - sys.exit() in an encoder is its failure, not fusionkit's
        if len(batch) == 1:
            yield batch[0][0], None, exc
            return
        if retried is None or not retried:
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("%s: a batch of %d failed (%s); its inputs are retried one by one",
                        encoder.name, len(batch), reason)
            if retried is not None:
                retried.append(reason)
        for item in batch:
            yield from _encode_safely(encoder, [item])
        return
    for (index, _), arrays in zip(batch, outputs):
        yield index, arrays, None
