"""Plugins written against the pre-SDK API keep working for one release, with a DeprecationWarning.

The legacy head below is written exactly as a third party wrote heads before ``fusionkit.sdk``: it imports
from ``fusionkit`` / ``fusionkit.interfaces`` / ``fusionkit.heads`` and overrides ``fit``, ``predict_proba``,
``save`` and the classmethod ``load(directory, options, seed=0)``.
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from core_fixtures import encoder_module, fake_distribution, fk_env, small_recipe, write_recipe  # noqa: F401

LEGACY_HEAD = '''
from pathlib import Path

import numpy as np
from pydantic import Field

from fusionkit import hookimpl
from fusionkit.heads import (
    encoder_names, load_arrays, pooled_blocks, present_classes, read_config, save_arrays, softmax, write_config,
)
from fusionkit.interfaces import FusionHead, Options


class CentroidOptions(Options):
    temperature: float = Field(1.0, gt=0)


class CentroidHead(FusionHead):
    """Nearest standardised class centroid, softmax over negative distances."""

    name = "legacy-centroid"
    Options = CentroidOptions

    def fit(self, X, y, classes, groups=None):
        y = np.asarray(y)
        self.classes = list(classes)
        self.present = present_classes(y, len(self.classes))
        self.encoders = encoder_names(X)
        Z = np.concatenate(pooled_blocks(X, self.encoders), axis=1)
        self.mean, self.scale = Z.mean(axis=0), Z.std(axis=0) + 1e-8
        Z = (Z - self.mean) / self.scale
        self.centroids = np.stack([Z[y == c].mean(axis=0) for c in self.present])

    def predict_proba(self, X):
        Z = (np.concatenate(pooled_blocks(X, self.encoders), axis=1) - self.mean) / self.scale
        d = ((Z[:, None, :] - self.centroids[None]) ** 2).sum(axis=2)
        out = np.zeros((len(Z), len(self.classes)))
        out[:, self.present] = softmax(-d / self.options.temperature)
        return out

    def save(self, directory):
        write_config(Path(directory), {"plugin": self.name, "classes": self.classes, "encoders": self.encoders,
                                       "present": self.present.tolist(), "seed": self.seed,
                                       "options": self.options.model_dump(mode="json")})
        save_arrays(Path(directory), {"centroids": self.centroids, "mean": self.mean, "scale": self.scale})

    @classmethod
    def load(cls, directory, options, seed=0):
        config = read_config(Path(directory), cls.name)
        arrays = load_arrays(Path(directory))
        head = cls(options, seed)
        head.classes, head.encoders = list(config["classes"]), list(config["encoders"])
        head.present = np.asarray(config["present"], dtype=np.int64)
        head.centroids, head.mean, head.scale = arrays["centroids"], arrays["mean"], arrays["scale"]
        return head


@hookimpl
def register_fusions(register):
    register(CentroidHead)
'''


@pytest.fixture
def legacy_site(tmp_path, monkeypatch, fk_env):
    """The legacy head installed as a third-party distribution (``fk-legacy``), found by entry point."""
    site = fake_distribution(tmp_path / "site", "fk-legacy",
                             {"fusion": {"legacy-centroid": "fk_legacy_head"},
                              "encoder": {"tiny-a": "fk_legacy_tiny_a", "tiny-b": "fk_legacy_tiny_b"}},
                             {"fk_legacy_head": LEGACY_HEAD, "fk_legacy_tiny_a": encoder_module("tiny-a"),
                              "fk_legacy_tiny_b": encoder_module("tiny-b")})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "fk_legacy_head", raising=False)
    return site


def legacy_class():
    from fusionkit.registry import registry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return registry().get("fusion", "legacy-centroid")


def blobs(n: int = 24, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return {"a": (rng.normal(0, 0.3, (n, 4)) + y[:, None]).astype(np.float32)}, y


def test_legacy_head_defines_instantiates_fits_and_warns(legacy_site):
    with pytest.warns(DeprecationWarning, match=r"CentroidHead.*fit.*_fit"):
        importlib.import_module("fk_legacy_head")
    cls = legacy_class()
    head = cls(cls.Options(), seed=0)
    X, y = blobs()
    head.fit(X, y, ["x", "y", "z"])
    proba = head.predict_proba(X)
    assert proba.shape == (24, 3) and (proba.argmax(axis=1) == y).mean() > 0.9


def test_new_heads_still_must_implement_the_hooks():
    from fusionkit.sdk import FusionHead

    class Incomplete(FusionHead):
        name = "incomplete"

    with pytest.raises(TypeError, match="abstract"):
        Incomplete(Incomplete.Options())


def test_load_head_reads_options_and_seed_from_head_json_else_the_callers(legacy_site, tmp_path):
    from fusionkit.sdk.heads import load_head

    cls = legacy_class()
    X, y = blobs()
    head = cls(cls.Options(temperature=2.0), seed=5)
    head.fit(X, y, ["x", "y", "z"])
    head.save(tmp_path / "m")
    with pytest.warns(DeprecationWarning, match=r"load\(directory, options, seed\)"):
        loaded = load_head(cls, tmp_path / "m", cls.Options(temperature=7.0), seed=3)
    assert loaded.options.temperature == 2.0 and loaded.seed == 5
    np.testing.assert_allclose(loaded.predict_proba(X), head.predict_proba(X), rtol=0, atol=1e-12)
    config = json.loads((tmp_path / "m" / "head.json").read_text())
    del config["options"], config["seed"]
    (tmp_path / "m" / "head.json").write_text(json.dumps(config))
    with pytest.warns(DeprecationWarning):
        loaded = load_head(cls, tmp_path / "m", cls.Options(temperature=7.0), seed=3)
    assert loaded.options.temperature == 7.0 and loaded.seed == 3


def test_load_head_calls_new_heads_with_the_directory_only(tmp_path):
    from fusionkit.registry import registry
    from fusionkit.sdk.heads import load_head

    cls = registry().get("fusion", "linear")
    X, y = blobs()
    head = cls(cls.Options(C=0.5), seed=4)
    head.fit(X, y, ["x", "y", "z"])
    head.save(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        loaded = load_head(cls, tmp_path / "m", cls.Options(C=9.0), seed=1)
    assert loaded.options.C == 0.5 and loaded.seed == 4


def test_legacy_head_through_run_reload_late_fusion_and_bundle(legacy_site, tmp_path):
    from fusionkit.bundle import Bundle
    from fusionkit.cli import main
    from fusionkit.pipeline.reload import saved_run_difference

    encoders = [{"plugin": "tiny-a"}, {"plugin": "tiny-b"}]
    recipe = write_recipe(tmp_path / "r.yaml", small_recipe(
        encoders=encoders, fusion={"plugin": "legacy-centroid", "options": {"temperature": 3.0}}))
    # a late-fusion head whose bases are legacy heads: they are reloaded through the same helper
    late = write_recipe(tmp_path / "late.yaml", small_recipe(encoders=encoders, fusion={
        "plugin": "late-average", "options": {"base": "legacy-centroid", "base_options": {"temperature": 2.0}}}))
    runner = CliRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for path, out in ((recipe, "run"), (late, "late")):
            result = runner.invoke(main, ["run", str(path), "--out", str(tmp_path / out)])
            assert result.exit_code == 0, result.output
            assert saved_run_difference(tmp_path / out) < 1e-6
        result = runner.invoke(main, ["export", str(tmp_path / "run"), str(tmp_path / "bundle")])
        assert result.exit_code == 0, result.output
        bundle = Bundle.load(tmp_path / "bundle")
        assert type(bundle.head).__name__ == "CentroidHead" and bundle.head.options.temperature == 3.0
        out = bundle.predict(np.sin(np.linspace(0, 2000, 16000)).astype(np.float32), 16000)
        assert abs(sum(out["probabilities"].values()) - 1.0) < 1e-9


def test_old_import_paths_work_and_warn(monkeypatch):
    import fusionkit
    from fusionkit import sdk
    from fusionkit.sdk import heads

    with pytest.warns(DeprecationWarning, match="fusionkit.sdk"):
        from fusionkit import hookimpl
    assert hookimpl is sdk.hookimpl
    for module, new in (("fusionkit.interfaces", sdk), ("fusionkit.heads", heads)):
        monkeypatch.delitem(sys.modules, module, raising=False)
        if hasattr(fusionkit, module.split(".")[1]):
            monkeypatch.delattr(fusionkit, module.split(".")[1])
        with pytest.warns(DeprecationWarning, match=f"{module} is deprecated"):
            old = importlib.import_module(module)
        assert old.FusionHead is new.FusionHead
    interfaces = sys.modules["fusionkit.interfaces"]
    assert (interfaces.Encoder, interfaces.Dataset, interfaces.Clip) == (sdk.Encoder, sdk.Dataset, sdk.Clip)
    assert sys.modules["fusionkit.heads"].read_config is heads.read_config
    monkeypatch.delitem(sys.modules, "fusionkit.regression", raising=False)
    with pytest.warns(DeprecationWarning, match="fusionkit.regression is deprecated"):
        regression = importlib.import_module("fusionkit.regression")
    assert regression.RegressionHead is heads.RegressionHead
