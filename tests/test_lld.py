"""lld encoder: descriptor/functional layout, pitch sanity, edge cases, and the chroma (numba) crash guard."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("librosa")

from ssl_fixtures import voiced  # noqa: E402

from fusionkit_plugins.lld import ALL_DESCRIPTORS, LLDEncoder, LLDOptions  # noqa: E402

# rows per descriptor with the default n_mfcc=20, n_mels=40
ROWS = {"mfcc": 20, "mfcc_delta": 20, "mfcc_delta2": 20, "chroma": 12, "mel": 40, "zcr": 1, "rms": 1,
        "contrast": 7, "flatness": 1, "centroid": 1, "bandwidth": 1, "rolloff": 1, "pitch": 2}


def test_chroma_with_fixed_tuning_does_not_crash_the_process():
    """librosa's tuning estimate (piptrack) segfaults numba here; a crash kills the process, so run it in one."""
    code = textwrap.dedent("""
        import numpy as np
        from fusionkit_plugins.lld import LLDEncoder, LLDOptions
        t = np.arange(16000) / 16000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        enc = LLDEncoder(LLDOptions(descriptors=["chroma"], functionals=["mean"]))
        chroma = enc.process_signal(tone, 16000)
        assert chroma.shape == (12,), chroma.shape
        assert int(np.argmax(chroma)) == 9, chroma  # A (440 Hz) is chroma bin 9 with C = 0
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.strip().endswith("ok")


def test_default_layout_is_every_descriptor_times_every_functional():
    enc = LLDEncoder(LLDOptions())
    (arrays,) = enc.encode_batch([voiced(1.3)])
    rows = sum(ROWS[d] for d in ALL_DESCRIPTORS)
    assert arrays["features"].shape == (rows * 4,) and arrays["features"].dtype == np.float32
    assert np.all(np.isfinite(arrays["features"]))


@pytest.mark.parametrize("descriptors,functionals", [
    (["mfcc"], ["mean"]),
    (["rms", "zcr", "pitch"], ["mean", "std", "median", "q10", "q90", "skew", "kurtosis"]),
    (["contrast", "mfcc_delta2"], ["min", "max"]),
])
def test_descriptor_and_functional_choices(descriptors, functionals):
    enc = LLDEncoder(LLDOptions(descriptors=descriptors, functionals=functionals, workers=1))
    vec = enc.process_signal(voiced(0.9, seed=3), 16000)
    assert vec.shape == (sum(ROWS[d] for d in descriptors) * len(functionals),)
    assert np.all(np.isfinite(vec))


def test_pitch_follows_the_fundamental():
    enc = LLDEncoder(LLDOptions(descriptors=["pitch"], functionals=["median"]))
    for f0 in (120.0, 240.0):
        logf0, voiced_frac = enc.process_signal(voiced(1.0, f0=f0), 16000)
        assert voiced_frac == 1.0
        assert abs(2**logf0 - f0) / f0 < 0.03


def test_batches_match_single_clips_and_edge_cases_are_finite():
    enc = LLDEncoder(LLDOptions(workers=2))
    clips = [voiced(1.1, seed=1), np.zeros(16000, np.float32), voiced(0.03, seed=2), voiced(2.0, seed=4)]
    batched = enc.encode_batch(clips)
    for x, got in zip(clips, batched):
        assert np.all(np.isfinite(got["features"]))
        np.testing.assert_allclose(got["features"], enc.encode_batch([x])[0]["features"], rtol=1e-6)


def test_blas_thread_limit_is_restored():
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    LLDEncoder(LLDOptions(descriptors=["mel"])).encode_batch([voiced(0.5), voiced(0.6)])
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == before


def test_constant_rows_give_zero_skew_and_kurtosis_without_a_warning_from_any_thread():
    """Constant descriptor rows have no skew or kurtosis: 0, and scipy's warning about them stays quiet even when
    clips are computed in threads (warnings.catch_warnings is not thread-safe)."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from fusionkit_plugins.lld import _functionals

    frames = np.vstack([np.full(50, 3.0), np.linspace(0, 1, 50) ** 2])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda _: _functionals(frames, ["skew", "kurtosis"]), range(32)))
    assert not [w for w in seen if issubclass(w.category, RuntimeWarning)]
    for out in outs:
        assert out[0] == 0 and out[2] == 0 and np.isfinite(out).all() and out[1] != 0
