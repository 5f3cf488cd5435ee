"""The augment stage of a run (``augment:`` in a recipe): perturbed copies of the training clips.

Each clip that some fold trains on gets ``copies`` copies, its audio sped up or slowed down (resampling, as
Kaldi-style speed perturbation: tempo and pitch together) and mixed with white noise at a drawn SNR. The draws
are fixed by the spec's seed, the copy's number and the clip's content, so a copy is the same in every run
and is cached like a clip (under its own key, in the encoder's cache). A copy keeps its clip's label and
speaker and joins the training side of every fold that trains on its clip; test sides never see one. Text
encoders give a copy its clip's features (the words do not change).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from fractions import Fraction

import numpy as np

from fusionkit.audio import AudioError, load_audio
from fusionkit.pipeline.cache import EmbeddingCache, writing_behind
from fusionkit.pipeline.data import Prepared
from fusionkit.pipeline.encode import build_encoders, load_encoder, split_cached
from fusionkit.pipeline.featurize import DEFAULT_SAMPLING_RATE, featurize, native_rate
from fusionkit.progress import bar
from fusionkit.recipe import AugmentSpec, Recipe
from fusionkit.sdk.base import Clip, Encoder

log = logging.getLogger("fusionkit")

CHUNK = 32  # copies decoded and perturbed at a time (their signals are held in memory only for that long)


def copy_id(clip_id: str, k: int) -> str:
    """The id of clip ``clip_id``'s ``k``-th copy (1-based) in a run's features."""
    return f"{clip_id}#aug{k}"


def copy_digest(audio_digest: str, spec: AugmentSpec, k: int) -> str:
    """The cache key of a copy: its clip's audio digest, the spec and the copy's number."""
    text = json.dumps({"audio": audio_digest, "k": k, **spec.model_dump(mode="json")}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def perturb(x: np.ndarray, sr: int, spec: AugmentSpec, audio_digest: str, k: int) -> np.ndarray:
    """Copy ``k`` of the signal ``x`` (mono, ``sr`` Hz): speed-perturbed, then noise added (float32)."""
    from scipy.signal import resample_poly

    rng = np.random.default_rng([spec.seed, k, int(audio_digest[:15], 16)])
    y = np.asarray(x, dtype=np.float64)
    if spec.speed is not None:
        factor = Fraction(float(rng.uniform(*spec.speed))).limit_denominator(50)
        if factor != 1:  # faster = fewer samples at the same rate
            y = resample_poly(y, factor.denominator, factor.numerator)
    if spec.noise_snr_db is not None:
        snr = float(rng.uniform(*spec.noise_snr_db))
        power = float(np.mean(y**2)) if len(y) else 0.0
        y = y + rng.standard_normal(len(y)) * np.sqrt(power / 10 ** (snr / 10))
    return y.astype(np.float32)


def training_clips(recipe: Recipe, prep: Prepared) -> list[Clip]:
    """The clips some fold trains on (every clip of ``data`` under cross-validation), in clip order."""
    from fusionkit.pipeline.folds import plan_folds

    used = set()
    for _, fold in plan_folds(recipe, prep):
        used.update(int(i) for i in fold.train)
    return [c for i, c in enumerate(prep.clips) if i in used]


def augment(recipe: Recipe, prep: Prepared) -> Prepared:
    """``prep`` with the copies' features added and ``copies`` (clip id -> its copies' ids) filled; itself when
    the recipe has no ``augment``. A copy that cannot be made or encoded is left out, counted and named."""
    spec = recipe.augment
    if spec is None:
        return prep
    from fusionkit.fileio import default_cache_dir

    start = time.perf_counter()
    clips = [c for c in training_clips(recipe, prep) if c.id in prep.digests]  # audio hashed by the encode stage
    digests = prep.digests
    wanted = [(c, k) for c in clips for k in range(1, spec.copies + 1)]
    cache_root = recipe.cache.dir or default_cache_dir()
    features = {name: dict(f) for name, f in prep.features.items()}
    failed: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    for name, encoder in build_encoders(recipe).items():
        if encoder.modality == "text":
            for c, k in wanted:
                features[name][copy_id(c.id, k)] = features[name][c.id]
            continue
        counts[name] = _encode_copies(encoder, name, wanted, digests, spec, cache_root, features[name], failed)
    copies: dict[str, list[str]] = {}
    for c, k in wanted:
        cid = copy_id(c.id, k)
        if cid not in failed and all(cid in f for f in features.values()):
            copies.setdefault(c.id, []).append(cid)
    if failed:
        first = next(iter(failed.items()))
        log.warning("augment: %d of %d copies left out (first: %s: %s)", len(failed), len(wanted), *first)
    info = {**spec.model_dump(mode="json"), "clips": len(clips), "made": sum(map(len, copies.values())),
            "left_out": dict(sorted(failed.items())), "per_encoder": counts,
            "seconds": round(time.perf_counter() - start, 2)}
    log.info("augment: %d copies of %d training clips (%s)", info["made"], len(clips),
             ", ".join(f"{n}: {c['computed']} computed, {c['cached']} cached" for n, c in counts.items()))
    return replace(prep, features=features, copies=copies, augment=info)


def _encode_copies(encoder: Encoder, name: str, wanted: Sequence[tuple[Clip, int]], digests: dict[str, str],
                   spec: AugmentSpec, cache_root, out: dict, failed: dict[str, str]) -> dict[str, int]:
    """Each copy's features from the cache, or made and encoded (CHUNK at a time) and cached; into ``out``."""
    cache = EmbeddingCache(cache_root, encoder.cache_key(), encoder.identity())
    hits, pending = split_cached(encoder, cache, [((c, k), copy_digest(digests[c.id], spec, k)) for c, k in wanted])
    for (c, k), selected in hits:
        out[copy_id(c.id, k)] = selected
    misses = [(c, k, key) for (c, k), key in pending]
    if misses:
        load_encoder(encoder, name)
        rate = getattr(encoder, "sample_rate", None)
        with bar(total=len(misses), desc=f"encoding {name} (augmented copies)", unit="copy") as progress, \
                writing_behind(cache) as put:
            for start in range(0, len(misses), CHUNK):
                chunk = misses[start : start + CHUNK]
                made = _signals(chunk, rate, digests, spec, failed)
                by_rate: dict[int, list[tuple[tuple, np.ndarray]]] = {}
                for item, (x, sr) in made:
                    by_rate.setdefault(sr, []).append((item, x))
                for sr, group in by_rate.items():
                    for result in featurize(encoder, [x for _, x in group], sr):
                        c, k, key = group[result.index][0]
                        if result.ok:
                            put(key, result.arrays)
                            out[copy_id(c.id, k)] = result.features
                        else:
                            failed[copy_id(c.id, k)] = f"{name}: {result.reason}"
                progress.update(len(chunk))
    return {"computed": len(misses) - sum(1 for c, k, _ in misses if copy_id(c.id, k) in failed),
            "cached": len(wanted) - len(misses)}


def _signals(chunk, rate: int | None, digests: dict[str, str], spec: AugmentSpec,
             failed: dict[str, str]) -> list[tuple[tuple, tuple[np.ndarray, int]]]:
    """The perturbed signals of a chunk of copies, each at the encoder's rate (or its file's own)."""
    made = []
    for item in chunk:
        c, k, _ = item
        try:
            sr = rate or native_rate(c.path) or DEFAULT_SAMPLING_RATE
            made.append((item, (perturb(load_audio(c.path, sr), sr, spec, digests[c.id], k), sr)))
        except (AudioError, OSError, ValueError) as exc:
            failed[copy_id(c.id, k)] = f"{c.path}: {exc}"
    return made
