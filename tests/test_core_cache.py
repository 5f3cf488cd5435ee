"""Embedding cache: atomic entries, damaged entries are misses, resumable after Ctrl-C, configurable location."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from core_fixtures import fake_distribution, fk_env, small_recipe, write_recipe  # noqa: F401


def entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.safetensors"))


def test_round_trip_and_merge(tmp_path):
    from fusionkit.pipeline.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path, "enc-abc", {"plugin": "enc"})
    assert cache.get("ab" * 16) is None
    cache.put("ab" * 16, {"a": np.arange(6, dtype=np.float32).reshape(2, 3)})
    cache.put("ab" * 16, {"b": np.ones(4, dtype=np.float32)})  # a later view adds arrays, keeps the old ones
    got = cache.get("ab" * 16, {"a", "b"})
    assert set(got) == {"a", "b"} and got["a"].shape == (2, 3)
    assert cache.get("ab" * 16, {"c"}) is None  # an entry without a required array is a miss
    assert json.loads((tmp_path / "enc-abc" / "identity.json").read_text()) == {"plugin": "enc"}
    assert not list(tmp_path.rglob("*.tmp"))
    mode = cache.path("ab" * 16).stat().st_mode & 0o777
    assert mode & 0o044, f"cache files should be readable beyond their owner, got {oct(mode)}"


def test_damaged_entries_are_misses_and_get_rewritten(tmp_path):
    from fusionkit.pipeline.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path, "enc-abc")
    good = {"x": np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)}
    cache.put("cd" * 16, good)
    whole = cache.path("cd" * 16).read_bytes()
    cache.path("cd" * 16).write_bytes(whole[: len(whole) // 2])  # a write cut short
    assert cache.get("cd" * 16) is None
    cache.path("cd" * 16).write_bytes(b"\x00garbage" * 10)
    assert cache.get("cd" * 16) is None
    cache.put("cd" * 16, good)
    np.testing.assert_array_equal(cache.get("cd" * 16)["x"], good["x"])
    # the temporary file of a killed writer is never read as an entry
    stray = cache.path("ef" * 16).parent / f".{cache.path('ef' * 16).name}.k1ll3d.tmp"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(whole)
    assert cache.get("ef" * 16) is None


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    from fusionkit import fileio as cache_mod

    target = tmp_path / "f.bin"
    cache_mod.atomic_write_bytes(target, b"old")

    def boom(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod.os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        cache_mod.atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def run(recipe_path: Path, out: Path, *sets: str):
    from fusionkit.cli import main

    args = ["run", str(recipe_path), "--out", str(out)] + [a for s in sets for a in ("--set", s)]
    return CliRunner().invoke(main, args)


def headline(run_dir: Path) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {k: m[k] for k in ("uar", "wa", "macro_f1", "weighted_f1", "uar_pooled", "classes", "n_clips")}


def test_second_run_computes_nothing_and_repairs_damage(tmp_path, fk_env):
    recipe = write_recipe(tmp_path / "r.yaml", small_recipe())
    first = run(recipe, tmp_path / "run1")
    assert first.exit_code == 0, first.output
    m1 = json.loads((tmp_path / "run1" / "metrics.json").read_text())
    assert m1["embeddings"]["computed"] == 32 and m1["embeddings"]["cached"] == 0
    assert m1["embeddings"]["cache_dir"] == str(fk_env)  # FUSIONKIT_CACHE_DIR
    second = run(recipe, tmp_path / "run2")
    assert second.exit_code == 0, second.output
    m2 = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert m2["embeddings"]["computed"] == 0 and m2["embeddings"]["cached"] == 32
    assert headline(tmp_path / "run2") == headline(tmp_path / "run1")
    assert (tmp_path / "run2" / "predictions.csv").read_text() == (tmp_path / "run1" / "predictions.csv").read_text()
    # a damaged entry and a killed writer's temporary file: one clip recomputed, same results
    files = [p for p in entries(fk_env) if "datasets" not in p.parts]
    files[0].write_bytes(files[0].read_bytes()[:40])
    (files[1].parent / f".{files[1].name}.dead.tmp").write_bytes(b"partial")
    third = run(recipe, tmp_path / "run3")
    assert third.exit_code == 0, third.output
    m3 = json.loads((tmp_path / "run3" / "metrics.json").read_text())
    assert m3["embeddings"]["computed"] == 1 and m3["embeddings"]["cached"] == 31
    assert headline(tmp_path / "run3") == headline(tmp_path / "run1")


def test_cache_dir_from_the_recipe_wins(tmp_path, fk_env):
    mine = tmp_path / "recipe-cache"
    recipe = write_recipe(tmp_path / "r.yaml", small_recipe(cache={"dir": "recipe-cache"}))
    result = run(recipe, tmp_path / "run")
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["embeddings"]["cache_dir"] == str(mine)
    assert len([p for p in entries(mine) if "datasets" not in p.parts]) == 32
    assert not [p for p in entries(fk_env) if "datasets" not in p.parts]
    other = tmp_path / "elsewhere"
    result = run(recipe, tmp_path / "run-b", f"cache.dir={other}")
    assert result.exit_code == 0, result.output
    assert len([p for p in entries(other) if "datasets" not in p.parts]) == 32


INTERRUPTING = '''
    import os
    import numpy as np
    from pydantic import Field
    from fusionkit.sdk import hookimpl
    from fusionkit.sdk.base import Encoder, Options

    CALLS = {"n": 0}

    class StopOptions(Options):
        batch_size: int = Field(4, ge=1)

    class Stopper(Encoder):
        """Mean and std of the signal; raises KeyboardInterrupt after FK_TEST_STOP_AFTER batches."""
        name = "stopper"
        Options = StopOptions

        def encode_batch(self, inputs):
            CALLS["n"] += 1
            limit = int(os.environ.get("FK_TEST_STOP_AFTER", "0"))
            if limit and CALLS["n"] > limit:
                raise KeyboardInterrupt
            return [{"features": np.array([x.mean(), x.std()], dtype=np.float32)} for x in inputs]

    @hookimpl
    def register_encoders(register):
        register(Stopper)
'''


def test_ctrl_c_during_encoding_then_resume(tmp_path, fk_env, monkeypatch):
    from fusionkit import registry as plugins

    site = fake_distribution(tmp_path / "site", "fk-stopper", {"encoder": {"stopper": "fk_stopper"}},
                             {"fk_stopper": INTERRUPTING})
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    recipe = write_recipe(tmp_path / "r.yaml", small_recipe(encoders=[{"plugin": "stopper"}]))
    monkeypatch.setenv("FK_TEST_STOP_AFTER", "3")
    stopped = run(recipe, tmp_path / "run1")
    assert stopped.exit_code == 130
    assert "interrupted" in stopped.stderr and "resumes" in stopped.stderr
    assert "Traceback" not in stopped.output
    done = entries(fk_env / next(p.name for p in fk_env.iterdir() if p.name.startswith("stopper-")))
    assert len(done) == 12  # three whole batches of four, each entry complete
    from safetensors.numpy import load_file

    assert all(load_file(str(p))["features"].shape == (2,) for p in done)
    assert not list(fk_env.rglob("*.tmp"))
    monkeypatch.delenv("FK_TEST_STOP_AFTER")
    resumed = run(recipe, tmp_path / "run2")
    assert resumed.exit_code == 0, resumed.output
    m = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert m["embeddings"]["computed"] == 20 and m["embeddings"]["cached"] == 12


SLOW = INTERRUPTING.replace("CALLS[\"n\"] += 1", "CALLS[\"n\"] += 1\n            import time; time.sleep(0.3)")


def test_real_sigint_mid_encoding_then_resume(tmp_path):
    """A real Ctrl-C (SIGINT) to a running `fusionkit run`: exit 130, whole entries only, the rerun resumes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from core_fixtures import with_pythonpath
    from safetensors.numpy import load_file

    site = fake_distribution(tmp_path / "site", "fk-slow", {"encoder": {"stopper": "fk_slow"}}, {"fk_slow": SLOW})
    cache = tmp_path / "cache"
    recipe = write_recipe(tmp_path / "r.yaml", small_recipe(encoders=[{"plugin": "stopper"}]))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FUSIONKIT_")}, **with_pythonpath(site),
           "FUSIONKIT_CACHE_DIR": str(cache), "FUSIONKIT_PROGRESS": "0"}
    env.pop("FK_TEST_STOP_AFTER", None)
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from fusionkit.cli import main; sys.argv[0] = 'fusionkit'; main()")

    def start(out: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code, "run", str(recipe), "--out", str(tmp_path / out)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def done_entries() -> list:
        # only the encoder's own folders: other stages rename temporary folders under the cache meanwhile
        return list(cache.glob("stopper-*/*/*.safetensors"))

    proc = start("run1")
    deadline = time.monotonic() + 120
    while len(done_entries()) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted: " + proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    kept = done_entries()
    assert 4 <= len(kept) < 32
    assert all(load_file(str(p))["features"].shape == (2,) for p in kept)
    assert not list(cache.rglob("*.tmp"))
    proc = start("run2")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    m = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert m["embeddings"]["cached"] == len(kept) and m["embeddings"]["computed"] == 32 - len(kept)


def test_cache_info_and_clean_commands(tmp_path):
    import os
    import time

    from fusionkit.cli import main
    from fusionkit.pipeline.cache import EmbeddingCache

    root = tmp_path / "cache"
    cache = EmbeddingCache(root, "lld-0123456789abcdef", {"plugin": "lld"})
    for i in range(3):
        cache.put(f"{i:02d}" * 16, {"features": np.ones(10, dtype=np.float32)})
    old_tmp = cache.path("aa" * 16).parent / ".dead.safetensors.x.tmp"
    old_tmp.parent.mkdir(parents=True, exist_ok=True)
    old_tmp.write_bytes(b"partial")
    os.utime(old_tmp, (time.time() - 7200, time.time() - 7200))
    fresh_tmp = cache.path("bb" * 16).parent / ".inflight.safetensors.y.tmp"
    fresh_tmp.parent.mkdir(parents=True, exist_ok=True)
    fresh_tmp.write_bytes(b"being written")
    info = CliRunner().invoke(main, ["cache", "info", "--dir", str(root), "--json"])
    assert info.exit_code == 0, info.output
    (row,) = json.loads(info.stdout)["folders"]
    assert row == {**row, "folder": "lld-0123456789abcdef", "plugin": "lld", "entries": 3, "stray_tmp": 2}
    text = CliRunner().invoke(main, ["cache", "info", "--dir", str(root)]).stdout
    assert "lld-0123456789abcdef" in text and "3 entries" in text and "2 stray .tmp" in text
    clean = CliRunner().invoke(main, ["cache", "clean", "--dir", str(root)])
    assert clean.exit_code == 0 and "removed 1 stray" in clean.stdout and "kept 1 younger than 3600 s" in clean.stdout
    assert not old_tmp.exists() and fresh_tmp.exists()  # a run in progress keeps its file
    CliRunner().invoke(main, ["cache", "clean", "--dir", str(root), "--min-age", "0"])
    assert not fresh_tmp.exists() and len(entries(root)) == 3  # finished entries are never touched


def test_writing_behind_writes_every_entry_handed_over_even_when_interrupted(tmp_path):
    from fusionkit.pipeline.cache import EmbeddingCache, writing_behind

    cache = EmbeddingCache(tmp_path, "lld-0123456789abcdef", {"plugin": "lld"})
    with writing_behind(cache, depth=2) as put:
        for i in range(5):
            put(f"{i:02d}" * 16, {"features": np.full(4, i, dtype=np.float32)})
    assert [float(cache.get(f"{i:02d}" * 16)["features"][0]) for i in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(KeyboardInterrupt), writing_behind(cache, depth=64) as put:
        for i in range(5, 9):
            put(f"{i:02d}" * 16, {"features": np.full(4, i, dtype=np.float32)})
        raise KeyboardInterrupt
    assert len(entries(tmp_path)) == 9  # what was handed over before the interrupt is on disk


def test_writing_behind_raises_what_put_would(tmp_path):
    from fusionkit.pipeline.cache import EmbeddingCache, writing_behind

    cache = EmbeddingCache(tmp_path, "lld-0123456789abcdef", {"plugin": "lld"})
    odd = {"features": np.array(["not a number"])}
    with pytest.raises(Exception) as direct:
        cache.put("ab" * 16, odd)
    with pytest.raises(type(direct.value), match="dtype"), writing_behind(cache) as put:
        put("ab" * 16, odd)
