"""Transcripts by ASR (faster-whisper), cached per clip audio digest and model identity.

``run.py`` calls :func:`transcribe_clips` when a text encoder is used and the recipe says
``text: {source: asr}``. Each clip whose audio is transcribed gets ``clip.text``; clips that
cannot be transcribed come back as ``{clip_id: reason}``. A transcript is stored as one small
JSON file, written atomically, under
``<cache>/transcripts/<model key>/<digest[:2]>/<digest>.json``, so a second run transcribes
nothing. ``transcripts.csv`` (clip_id, text) is written into the run folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError

from fusionkit.audio import AudioError, file_digest, load_audio
from fusionkit.fileio import atomic_write_text
from fusionkit.progress import bar
from fusionkit.sdk.base import Clip, Options

log = logging.getLogger("fusionkit")
SAMPLE_RATE = 16000  # what Whisper takes
VERSION = "1"


class TranscriptError(ValueError):
    """A transcription setup problem (bad options, unloadable model); the message is one line."""


class AsrOptions(Options):
    """``text.options`` when ``text.source`` is ``asr`` (decoding settings for faster-whisper)."""

    beam_size: int = Field(5, ge=1, le=20, description="beam search width (1 = greedy)")
    vad_filter: bool = Field(False, description="drop silence with faster-whisper's Silero VAD before decoding")
    condition_on_previous_text: bool = Field(False, description="feed the previous window's text as a prompt")
    initial_prompt: str | None = Field(None, description="text that primes the decoder (names, spelling)")
    compute_type: str = Field("int8", description="CTranslate2 compute type: int8, int8_float32, float32, float16...")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    cpu_threads: int = Field(0, ge=0, description="CTranslate2 threads (0: one per CPU core)")

    def decoding(self) -> dict[str, Any]:
        """The options that change a transcript (part of the cache key)."""
        return {"beam_size": self.beam_size, "vad_filter": self.vad_filter,
                "condition_on_previous_text": self.condition_on_previous_text, "initial_prompt": self.initial_prompt,
                "compute_type": self.compute_type}


def option_problems(raw: dict) -> list[str]:
    """Every problem of ``text.options``, one ``text.options.FIELD: reason`` line each."""
    try:
        AsrOptions.model_validate(raw or {})
    except ValidationError as exc:
        return [f"text.options.{'.'.join(str(p) for p in err['loc']) or '(top level)'}: "
                f"{'unknown field' if err['type'] == 'extra_forbidden' else err['msg']}" for err in exc.errors()]
    return []


def parse_options(raw: dict) -> AsrOptions:
    problems = option_problems(raw)
    if problems:
        raise TranscriptError(problems[0])
    return AsrOptions.model_validate(raw or {})


class TranscriptCache:
    """One JSON file per (model key, audio digest), written atomically."""

    def __init__(self, root: Path, key: str, identity: dict):
        self.dir = Path(root) / "transcripts" / key
        self.dir.mkdir(parents=True, exist_ok=True)
        ident = self.dir / "identity.json"
        if not ident.exists():
            atomic_write_text(ident, json.dumps(identity, indent=2, sort_keys=True))

    def path(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.json"

    def get(self, digest: str) -> str | None:
        try:
            entry = json.loads(self.path(digest).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # missing or damaged: a miss, rewritten later
        text = entry.get("text") if isinstance(entry, dict) else None
        return text if isinstance(text, str) else None

    def put(self, digest: str, text: str, extra: dict) -> None:
        atomic_write_text(self.path(digest), json.dumps({"text": text, **extra}, ensure_ascii=False))


def model_identity(model_ref: str, language: str | None, options: AsrOptions) -> tuple[str, dict, str]:
    """(cache key, identity dict, resolved model folder) for this model and decoding setup."""
    from fusionkit.modelref import ModelRefError, model_digest, resolve_model

    try:
        path = resolve_model(model_ref)
    except ModelRefError as exc:
        raise TranscriptError(f"text.model: {exc}") from None
    if not Path(path).is_dir():
        raise TranscriptError(f"text.model: {model_ref}: faster-whisper needs a local CTranslate2 model folder "
                              "(a path or pkg:<distribution>), not a hub id")
    ident = {"engine": "faster-whisper", "version": VERSION, "model": model_ref, "digest": model_digest(path),
             "language": language, "decoding": options.decoding()}
    blob = json.dumps(ident, sort_keys=True).encode()
    name = Path(path).name if Path(path).name not in ("model", "data") else Path(path).parent.name
    return f"{name}-{hashlib.sha256(blob).hexdigest()[:16]}", ident, path


def load_whisper(path: str, options: AsrOptions):
    """A faster-whisper model on CPU (int8 by default)."""
    try:
        from faster_whisper import WhisperModel
    except ImportError:
        raise TranscriptError("text.source asr needs faster-whisper (pip install 'fusionkit[ctranslate2]')") from None
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # one INFO line per clip otherwise
    threads = options.cpu_threads or (os.cpu_count() or 1)
    try:
        return WhisperModel(path, device=options.device, compute_type=options.compute_type, cpu_threads=threads)
    except Exception as exc:  # noqa: BLE001 - ctranslate2 raises RuntimeError/ValueError with the reason
        reason = f"{type(exc).__name__}: {exc}"
        raise TranscriptError(f"text.model: cannot load {path} with faster-whisper ({reason})") from None


def transcribe_one(model, audio, language: str | None, options: AsrOptions) -> str:
    """The whole clip's text: the segments' texts joined by single spaces."""
    segments, _info = model.transcribe(
        audio, language=language, beam_size=options.beam_size, vad_filter=options.vad_filter,
        condition_on_previous_text=options.condition_on_previous_text, initial_prompt=options.initial_prompt,
    )
    return " ".join(s.text.strip() for s in segments if s.text.strip())


def make_transcriber(spec) -> Callable[[np.ndarray], str]:
    """A function: mono float32 16 kHz signal -> transcript, for the recipe's ``text`` section (not cached).

    Used to label new audio with a saved model (``fusionkit predict``); the model loads on first call.
    """
    options = parse_options(spec.options)
    _key, _ident, path = model_identity(spec.model, spec.language, options)
    model = None

    def transcribe(signal: np.ndarray) -> str:
        nonlocal model
        if model is None:
            model = load_whisper(path, options)
        return transcribe_one(model, np.asarray(signal, dtype=np.float32), spec.language, options)

    return transcribe


def _digests(clips: Sequence[Clip], known: dict[str, str], failed: dict[str, str]) -> dict[str, str]:
    """Audio digests for the clips that have audio (reusing the ones run.py computed)."""
    out = {}
    for clip in clips:
        if clip.id in known:
            out[clip.id] = known[clip.id]
            continue
        if clip.path is None:
            failed[clip.id] = "no audio file to transcribe"
            continue
        try:
            if Path(clip.path).stat().st_size == 0:
                failed[clip.id] = "empty file (0 bytes)"
                continue
            out[clip.id] = file_digest(clip.path)
        except OSError as exc:
            failed[clip.id] = f"cannot read file ({exc.strerror})"
    return out


def transcribe_clips(clips: Sequence[Clip], spec, digests: dict[str, str], cache_root: Path,
                     run_dir: Path | None = None) -> dict[str, str]:
    """Set ``clip.text`` from ASR (cached); return ``{clip_id: reason}`` for clips without a transcript.

    ``spec`` is the recipe's ``text`` section (``model``, ``language``, ``options``).
    """
    start = time.perf_counter()
    options = parse_options(spec.options)
    key, ident, path = model_identity(spec.model, spec.language, options)
    cache = TranscriptCache(cache_root, key, ident)
    failed: dict[str, str] = {}
    known = _digests(clips, digests, failed)
    misses: list[Clip] = []
    cached = 0
    for clip in clips:
        if clip.id not in known:
            continue
        text = cache.get(known[clip.id])
        if text is None:
            misses.append(clip)
        else:
            clip.text = text
            cached += 1
    if misses:
        model = load_whisper(path, options)
        for clip in bar(misses, desc="transcribing", unit="clip"):
            try:
                audio = load_audio(clip.path, SAMPLE_RATE)
            except AudioError as exc:
                failed[clip.id] = str(exc)
                continue
            try:
                text = transcribe_one(model, audio, spec.language, options)
            except Exception as exc:  # noqa: BLE001 - one bad clip costs only itself
                failed[clip.id] = f"ASR failed: {type(exc).__name__}: {exc}"
                continue
            cache.put(known[clip.id], text, {"clip": clip.id, "seconds": round(len(audio) / SAMPLE_RATE, 3)})
            clip.text = text
    for clip in clips:
        if clip.id in known and clip.id not in failed and not clip.text:
            failed[clip.id] = "ASR heard no words"
        if clip.id in failed:
            clip.text = None  # never fall back to the corpus's own text
    log.info("transcripts (%s): %d transcribed, %d from cache, %d without a transcript (%.1f s)",
             spec.model, len(misses) - _hard_failures(misses, failed), cached, len(failed),
             time.perf_counter() - start)
    if run_dir is not None:
        write_csv(Path(run_dir) / "transcripts.csv", [c for c in clips if c.id in known and c.id not in failed])
    return failed


def _hard_failures(misses: Sequence[Clip], failed: dict[str, str]) -> int:
    """Misses that produced no transcript at all (unreadable audio, decoder errors)."""
    return sum(1 for c in misses if c.id in failed and failed[c.id] != "ASR heard no words")


def write_csv(path: Path, clips: Sequence[Clip]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["clip_id", "text"])
    w.writerows([c.id, c.text or ""] for c in clips)
    atomic_write_text(path, buf.getvalue())
