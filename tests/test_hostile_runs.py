"""Runs and grids that survive faults, and nothing dropped silently.

Files a dataset passes over and labels left out are reported; TESS as commonly redistributed is read whole;
Ctrl-C stops a grid; NaN/inf embeddings are per-clip failures; run folders never mix; a grid goes on when an
encoder fails everywhere; plugin name clashes and sys.exit() stay contained; read-only caches and full disks
are survived or named.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from core_fixtures import fake_distribution, fk_env, run_cli, small_recipe, with_pythonpath, write_recipe  # noqa: F401

SR = 16000
EMOTION_FOLDERS = {  # the emotion words of the files, and the folder names of a common TESS copy
    "angry": ("OAF_angry", "YAF_angry"), "disgust": ("OAF_disgust", "YAF_disgust"), "fear": ("OAF_Fear", "YAF_fear"),
    "happy": ("OAF_happy", "YAF_happy"), "neutral": ("OAF_neutral", "YAF_neutral"),
    "ps": ("OAF_Pleasant_surprise", "YAF_pleasant_surprised"), "sad": ("OAF_Sad", "YAF_sad"),
}
CLASSES = {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy", "neutral": "neutral",
           "ps": "surprised", "sad": "sad"}


@lru_cache(maxsize=256)
def _audio_bytes(seed: int, seconds: float, sr: int, fmt: str) -> bytes:
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(seed)
    y = 0.3 * np.sin(2 * np.pi * (150 + 7 * seed) * t) + rng.normal(0, 0.02, len(t))
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def tiny_wav(path: Path, seed: int, seconds: float = 0.01, sr: int = SR, fmt: str = "WAV") -> Path:
    """A short noisy tone (WAV, or another format under any name); 40 distinct signals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_audio_bytes(seed % 40, seconds, sr, fmt))
    return path


def tess_tree(root: Path, words: list[str], seconds: float = 0.01) -> dict[str, str]:
    """A TESS copy as commonly redistributed: 30% of each folder's files renamed into ``testnew/<n>test<name>``,
    two AIFF files named .wav, one 96 kHz file. Returns clip id -> class."""
    expected, n = {}, 0
    for emotion, folders in EMOTION_FOLDERS.items():
        for speaker, folder in zip(("OAF", "YAF"), folders):
            for word in words:
                stem = f"{speaker}_{word}_{emotion}"
                renamed = n % 10 < 3
                path = root / "testnew" / f"{n}test{stem}.wav" if renamed else root / folder / f"{stem}.wav"
                fmt = "AIFF" if n in (5, 17) else "WAV"
                tiny_wav(path, n, seconds, sr=96000 if n == 11 else SR, fmt=fmt)
                expected[stem] = CLASSES[emotion]
                n += 1
    return expected


# ---------------------------------------------------------------- item 3: tess and passed-over files


def test_tess_reads_the_whole_redistributed_layout(tmp_path):
    from fusionkit.sdk.base import Options
    from fusionkit_plugins.datasets.tess import Tess

    words = [f"w{i:03d}" for i in range(200)]
    expected = tess_tree(tmp_path, words, seconds=0.002)
    tiny_wav(tmp_path / "testnew" / "notes.wav", 1)  # no TESS name: passed over, with the reason
    tiny_wav(tmp_path / "OAF_angry" / "._OAF_w000_angry.wav", 2)  # a macOS resource fork
    ds = Tess(tmp_path, Options())
    clips = ds.clips()
    assert len(clips) == len(expected) == 2800
    assert {c.id: c.label for c in clips} == expected
    assert sum(c.path.parent.name == "testnew" for c in clips) == 840
    assert {(c.speaker, c.label) for c in clips} == {(s, k) for s in ("OAF", "YAF") for k in CLASSES.values()}
    assert set(ds.skipped) == {"testnew/notes.wav", "OAF_angry/._OAF_w000_angry.wav"}
    assert "not a TESS file name" in ds.skipped["testnew/notes.wav"]
    assert "hidden" in ds.skipped["OAF_angry/._OAF_w000_angry.wav"]


def test_passed_over_files_are_in_metrics_report_and_summary(tmp_path, fk_env):
    from fusionkit.cli import main

    root = tmp_path / "tess"
    tess_tree(root, ["back", "bar"], seconds=0.3)  # 28 clips: renamed files, AIFF named .wav, 96 kHz among them
    tiny_wav(root / "testnew" / "readme.wav", 3)
    recipe = small_recipe(name="tess-odd", data={"dataset": "tess", "root": str(root)},
                          encoders=[{"plugin": "lld", "options": {"descriptors": ["mfcc", "rms"], "workers": 1}}],
                          split={"kind": "loso"})
    path = write_recipe(tmp_path / "r.yaml", recipe)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", str(path), "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_clips"] == 28
    assert m["skipped"] == [{"clip": "testnew/readme.wav", "reason": "tess: not a TESS file name (e.g. "
                             "OAF_back_angry.wav, or testnew/12testOAF_back_angry.wav)"}]
    assert "28 clips, 2 folds, 1 skipped" in r.output and "skipped: testnew/readme.wav: tess: " in r.output
    report = (out / "report.md").read_text()
    assert "## Skipped clips (1)" in report and "`testnew/readme.wav`: tess: not a TESS file name" in report


def test_folders_unplaced_files_are_skipped_entries(tmp_path, fk_env):
    from fusionkit.pipeline.data import select
    from fusionkit.recipe import Recipe

    for spk in ("s1", "s2"):
        for label in ("angry", "sad"):
            tiny_wav(tmp_path / spk / label / "1.wav", 1)
    tiny_wav(tmp_path / "stray.wav", 2)
    recipe = Recipe.model_validate(small_recipe(data={"dataset": "folders", "root": str(tmp_path), "options": {
        "label_from": {"folder": -1}, "speaker_from": {"folder": 0}}}))
    selection = select(recipe)
    assert len(selection.train) == 4
    assert selection.passed_over == {"stray.wav": "folders: label: no folder -1 (the file lies directly under root)"}


def test_labels_left_out_are_counted_per_label_and_printed(tmp_path, fk_env, caplog):
    from fusionkit.pipeline.data import select
    from fusionkit.pipeline.report import _excluded_lines
    from fusionkit.recipe import Recipe

    rows = ["path,label,speaker", *[f"a{i}.wav,happy,s{i % 2}" for i in range(4)], "b.wav,Happy,s1",
            "c.wav,Happy,s2", "d.wav,sad,s1", "e.wav,sad,s2", "f.wav,calm,s1", "g.wav,,s2"]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    recipe = Recipe.model_validate(small_recipe(data={"dataset": "manifest", "root": str(tmp_path),
                                                      "labels": {"include": ["happy", "sad"]}}))
    with caplog.at_level("WARNING", logger="fusionkit"):
        selection = select(recipe)
    assert len(selection.train) == 6
    assert selection.labels["data"]["excluded"] == {"Happy": 2, "(no label)": 1, "calm": 1}
    assert "4 clip(s) left out by data.labels: Happy 2, (no label) 1, calm 1" in caplog.text
    assert "'Happy' ~ 'happy'" in caplog.text
    assert _excluded_lines(selection.labels) == ["- Left out of data by label (4 clips): Happy (2), (no label) (1), "
                                                 "calm (1)."]


# ---------------------------------------------------------------- item 4: Ctrl-C stops a grid

SLOW_DATASET = """
    import multiprocessing, os, time
    from pathlib import Path
    from fusionkit.sdk import hookimpl
    from fusionkit_plugins.datasets.synthetic import Synthetic

    class Slow(Synthetic):
        name = "slow-synthetic"

        def clips(self):
            with open(os.environ["FK_SLOW_LOG"], "a") as fh:
                fh.write(f"{os.getpid()}\\n")
            if multiprocessing.parent_process() is not None:  # a grid cell, in a worker: take long
                time.sleep(120)
            return super().clips()

    @hookimpl
    def register_datasets(register):
        register(Slow)
"""

SLOW_GRID = """
name: slow
base: base.yaml
axes:
  fusion:
    - {name: a, plugin: xgboost, options: {n_estimators: 5}}
    - {name: b, plugin: xgboost, options: {n_estimators: 6}}
    - {name: c, plugin: xgboost, options: {n_estimators: 7}}
"""


def _alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_ctrl_c_stops_a_grid_promptly(tmp_path):
    if not Path("/proc").exists():
        pytest.skip("needs /proc")
    site = fake_distribution(tmp_path / "site", "fk-slow", {"dataset": {"slow-synthetic": "fk_slow"}},
                             {"fk_slow": SLOW_DATASET})
    base = small_recipe(data={"dataset": "slow-synthetic", "options": {"speakers": 4, "clips_per_class": 1}},
                        encoders=[{"plugin": "lld", "options": {"descriptors": ["rms"], "workers": 1}}])
    write_recipe(tmp_path / "base.yaml", base)
    (tmp_path / "grid.yaml").write_text(SLOW_GRID)
    log = tmp_path / "clips.log"
    env = {**os.environ, **with_pythonpath(site, {"FUSIONKIT_CACHE_DIR": str(tmp_path / "cache"),
                                                  "FUSIONKIT_PROGRESS": "0", "FK_SLOW_LOG": str(log)})}
    # a terminal's Ctrl-C: restore Python's handler, since a test run started in the background (no job
    # control) inherits SIGINT as ignored, and so would the command
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from fusionkit.cli import main; sys.argv[0] = 'fusionkit'; main()")
    proc = subprocess.Popen([sys.executable, "-c", code, "bench", str(tmp_path / "grid.yaml"), "--out",
                             str(tmp_path / "out"), "--workers", "1"], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and any(int(p) != proc.pid for p in log.read_text().split()):
                break  # a worker is fitting a cell
            time.sleep(0.2)
        workers = [int(p) for p in log.read_text().split() if int(p) != proc.pid]
        assert len(workers) == 1, proc.poll()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
        start = time.monotonic()
        _, err = proc.communicate(timeout=90)  # generous: CI machines can be loaded
        assert time.monotonic() - start < 60
        assert proc.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
        time.sleep(1.0)
        assert [int(p) for p in log.read_text().split() if int(p) != proc.pid] == workers  # no new cell started
        assert not _alive(workers[0])
        assert not list((tmp_path / "out" / "cells").glob("*/cell.json"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------------------------- item 5: NaN/inf embeddings


def _clips(tmp_path: Path, n: int = 4) -> list:
    from fusionkit.sdk.base import Clip

    return [Clip(id=f"c{i}", path=tiny_wav(tmp_path / f"c{i}.wav", i, seconds=0.1 + 0.05 * i), label="x",
                 speaker=f"s{i % 2}") for i in range(n)]


def _encoder(behaviour):
    from fusionkit.sdk.base import Encoder
    from fusionkit.sdk.base import Options as BaseOptions

    class Probe(Encoder):
        name = "probe"
        Options = BaseOptions

        def encode_batch(self, inputs):
            return [behaviour(x) for x in inputs]

    return Probe(BaseOptions())


def _encode(encoder, clips, cache):
    from fusionkit.pipeline.encode import clip_digests, encode_clips

    digests, _ = clip_digests(clips)
    return encode_clips(encoder, clips, cache, digests), digests


def test_non_finite_embeddings_are_per_clip_failures_never_cached(tmp_path, fk_env):
    from fusionkit.pipeline.cache import EmbeddingCache

    long_is_nan = _encoder(lambda x: {"features": np.array([np.nan if len(x) > 3000 else 1.0, np.inf if len(x) > 3500
                                                            else 2.0], dtype=np.float32)})
    clips = _clips(tmp_path)  # c2 and c3 are longer than 3000 samples
    result, digests = _encode(long_is_nan, clips, tmp_path / "cache")
    assert sorted(result.features) == ["c0", "c1"]
    assert result.skipped["c2"] == "probe output not finite: features holds 1 NaN and 0 inf value(s) of 2"
    assert result.skipped["c3"] == "probe output not finite: features holds 1 NaN and 1 inf value(s) of 2"
    cache = EmbeddingCache(tmp_path / "cache", long_is_nan.cache_key())
    assert not cache.path(digests["c2"]).exists() and cache.path(digests["c0"]).exists()


def test_a_cache_entry_holding_nan_is_recomputed(tmp_path, fk_env):
    from safetensors.numpy import save_file

    from fusionkit.pipeline.cache import EmbeddingCache

    fine = _encoder(lambda x: {"features": np.array([len(x), 1.0], dtype=np.float32)})
    clips = _clips(tmp_path, 2)
    _, digests = _encode(fine, clips, tmp_path / "cache")
    cache = EmbeddingCache(tmp_path / "cache", fine.cache_key())
    save_file({"features": np.array([np.nan, 1.0], dtype=np.float32)}, str(cache.path(digests["c0"])))
    result, _ = _encode(fine, clips, tmp_path / "cache")
    assert (result.computed, result.cached) == (1, 1)
    assert np.all(np.isfinite(result.features["c0"]))
    assert np.all(np.isfinite(cache.get(digests["c0"])["features"]))  # rewritten


# ---------------------------------------------------------------- item 7: run folders


def test_runs_started_in_one_second_get_their_own_folders(tmp_path, monkeypatch, fk_env):
    import fusionkit.pipeline.run as run_module
    from fusionkit.recipe import Recipe

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2024, 5, 1, 12, 0, 0)

    monkeypatch.setattr(run_module, "datetime", Frozen)
    monkeypatch.chdir(tmp_path)
    recipe = Recipe.model_validate(small_recipe())
    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(run_module.default_run_dir(recipe))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({p.resolve() for p in made}) == 6 and all(p.is_dir() for p in made)
    assert sorted(p.name for p in made)[:2] == ["small-20240501-120000", "small-20240501-120000-2"]


# ---------------------------------------------------------------- item 8: a grid goes on past a failed encoder

ALWAYS_FAILS = """
    import numpy as np
    from fusionkit.sdk import hookimpl
    from fusionkit.sdk.base import Encoder

    class AlwaysFails(Encoder):
        name = "allfail"

        def encode_batch(self, inputs):
            raise RuntimeError("this encoder fails on every clip")

    @hookimpl
    def register_encoders(register):
        register(AlwaysFails)
"""

FAILING_GRID = """
name: failing
base: base.yaml
axes:
  encoders:
    - name: rms
      encoders: [{plugin: lld, options: {descriptors: [rms], workers: 1}}]
    - name: bad
      encoders: [{plugin: allfail}]
"""


def test_an_encoder_failing_on_every_clip_fails_its_cells_and_the_grid_goes_on(tmp_path, monkeypatch, fk_env):
    from fusionkit.cli import main

    site = fake_distribution(tmp_path / "site", "fk-allfail", {"encoder": {"allfail": "fk_allfail"}},
                             {"fk_allfail": ALWAYS_FAILS})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", with_pythonpath(site)["PYTHONPATH"])  # the cell workers find it too
    write_recipe(tmp_path / "base.yaml", small_recipe(data={"dataset": "synthetic", "options": {
        "speakers": 4, "clips_per_class": 1}}))
    (tmp_path / "grid.yaml").write_text(FAILING_GRID)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["bench", str(tmp_path / "grid.yaml"), "--out", str(out), "--workers", "1"],
                           catch_exceptions=False)
    assert r.exit_code == 1, r.output
    rows = {row["encoders"]: row for row in (json.loads(p.read_text()) for p in out.glob("cells/*/cell.json"))}
    assert rows["rms"]["status"] == "done"
    assert rows["bad"]["status"] == "failed" and "this encoder fails on every clip" in rows["bad"]["error"]
    assert "encoder bad (plugin allfail) failed on every clip" in r.output  # as the grid names it
    assert "1 cells done, 1 failed" in r.output


def test_a_grid_file_is_read_with_the_recipe_loader(tmp_path, fk_env):
    from fusionkit.bench import load_grid
    from fusionkit.recipe import RecipeError

    write_recipe(tmp_path / "base.yaml", small_recipe())
    (tmp_path / "grid.yaml").write_text("name: a\nbase: base.yaml\nname: b\n")
    with pytest.raises(RecipeError, match=r"grid.yaml:3: key 'name' repeated \(first at line 1\)"):
        load_grid(tmp_path / "grid.yaml", [])


# ---------------------------------------------------------------- item 13: plugin isolation

SNEAKY = """
    import os
    from pathlib import Path
    Path(os.environ["FK_SNEAKY_MARK"]).write_text("imported")
""" + """
    import numpy as np
    from fusionkit.sdk import hookimpl
    from fusionkit.sdk.base import Encoder

    class Sneaky(Encoder):
        name = "lld"

        def encode_batch(self, inputs):
            return [{"features": np.zeros(2, dtype=np.float32)} for _ in inputs]

    @hookimpl
    def register_encoders(register):
        register(Sneaky)
"""


def test_a_clash_with_a_builtin_keeps_the_builtin_and_says_so(tmp_path):
    site = fake_distribution(tmp_path / "site", "fk-sneaky", {"encoder": {"sneaky": "fk_sneaky"}},
                             {"fk_sneaky": SNEAKY})
    mark = tmp_path / "imported"
    env = with_pythonpath(site, {"FUSIONKIT_CACHE_DIR": str(tmp_path / "cache"), "FK_SNEAKY_MARK": str(mark)})
    proc = run_cli(["plugins", "list", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    rows = [r for r in json.loads(proc.stdout) if r["name"] == "lld"]
    assert {(r["distribution"], r["status"]) for r in rows} == {("fusionkit", "installed"), ("fk-sneaky", "name clash")}
    (clash,) = [r for r in rows if r["status"] == "name clash"]
    assert "FUSIONKIT_BLOCK_PLUGINS=fk-sneaky:sneaky" in clash["reason"]
    recipe = write_recipe(tmp_path / "r.yaml", small_recipe())
    proc = run_cli(["validate", str(recipe)], env)
    assert proc.returncode == 0, proc.stderr
    assert "encoder plugin 'lld': the built-in is used; 'fk-sneaky' (fk_sneaky) also registers this name" in proc.stderr
    # the block the listing suggests stops the module before it is imported
    mark.unlink()
    proc = run_cli(["plugins", "list"], {**env, "FUSIONKIT_BLOCK_PLUGINS": "fk-sneaky:sneaky"})
    assert proc.returncode == 0, proc.stderr
    assert not mark.exists()


def test_sys_exit_in_an_encoder_is_its_failure_not_an_exit(tmp_path, fk_env):
    from fusionkit.pipeline.encode import EncodeError

    def quits_on_long(x):
        if len(x) > 3000:
            sys.exit(3)
        return {"features": np.ones(2, dtype=np.float32)}

    result, _ = _encode(_encoder(quits_on_long), _clips(tmp_path), tmp_path / "cache")
    assert sorted(result.features) == ["c0", "c1"]
    assert result.skipped["c2"] == "probe failed: SystemExit: 3"

    enc = _encoder(lambda x: {"features": np.ones(2, dtype=np.float32)})
    enc.load = lambda: sys.exit("no model")
    with pytest.raises(EncodeError, match=r"probe: the encoder's load\(\) called sys.exit\('no model'\)"):
        _encode(enc, _clips(tmp_path / "b"), tmp_path / "cache2")


def test_features_of_different_shapes_name_the_encoder(tmp_path, fk_env):
    from fusionkit.pipeline.data import Selection, keep_usable
    from fusionkit.pipeline.encode import Encoded
    from fusionkit.recipe import Recipe
    from fusionkit.sdk.base import Clip

    clips = [Clip(id=f"c{i}", path=None, label="ab"[i % 2], speaker=f"s{i % 2}") for i in range(4)]
    features = {"good": {c.id: np.ones(3, np.float32) for c in clips},
                "odd": {c.id: np.ones(4 if c.id == "c2" else 3, np.float32) for c in clips}}
    encoded = Encoded(features, {"good": False, "odd": False}, {}, {}, 0.0)
    recipe = Recipe.model_validate(small_recipe())
    with pytest.raises(ValueError, match=r"encoder 'odd' gave clips different feature shapes: \(3,\) for 3 clip\(s\) "
                                         r"\(e.g. c0\), \(4,\) for 1 clip\(s\) \(e.g. c2\)"):
        keep_usable(recipe, Selection(clips, [], ["a", "b"], {}, None), encoded)


# ---------------------------------------------------------------- item 17: read-only cache, full disk


def test_a_read_only_cache_is_read_and_the_run_finishes(tmp_path, monkeypatch, fk_env, caplog):
    import fusionkit.pipeline.cache as cache_module
    from fusionkit.pipeline.run import run
    from fusionkit.recipe import Recipe

    def read_only(path, data):
        raise PermissionError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(cache_module, "atomic_write_bytes", read_only)
    recipe = Recipe.model_validate(small_recipe(cache={"dir": str(tmp_path / "ro-cache")}))
    with caplog.at_level("WARNING", logger="fusionkit"):
        m = run(recipe, tmp_path / "run")
    assert m["n_clips"] == 32 and m["embeddings"]["computed"] == 32 and not m["skipped"]
    lines = [r.getMessage() for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(lines) == 1 and "Read-only file system" in lines[0] and str(tmp_path / "ro-cache") in lines[0]
    assert (tmp_path / "run" / "metrics.json").exists()
    assert not list((tmp_path / "ro-cache").rglob("*.safetensors"))


def test_a_full_disk_names_the_file_and_a_failed_run_does_not_look_finished(tmp_path, monkeypatch, fk_env):
    import fusionkit.fileio as fileio
    import fusionkit.pipeline.report as report
    from fusionkit.fileio import atomic_write_text
    from fusionkit.pipeline.run import run
    from fusionkit.recipe import Recipe

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(fileio.os, "fsync", disk_full)
        with pytest.raises(OSError) as err:
            atomic_write_text(tmp_path / "out" / "metrics.json", "{}")
    assert str(err.value) == f"cannot write {tmp_path / 'out' / 'metrics.json'}: No space left on device"

    def report_on_full_disk(run_dir, metrics, predictions):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "write_report", report_on_full_disk)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # from an earlier run into the same folder
    with pytest.raises(OSError, match=f"cannot write {out}: No space left on device"):
        run(Recipe.model_validate(small_recipe()), out)
    assert not (out / "metrics.json").exists()
