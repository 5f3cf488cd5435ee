"""The predict path's shortcuts (a bundle's Whisper encoder runs only up to the selected layer and pools only it;
one encoder load serves every file) give the features and probabilities of the full computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

pytest.importorskip("transformers")

from whisper_fixtures import tiny_whisper, voice  # noqa: E402

from fusionkit.cli import main  # noqa: E402
from fusionkit.pipeline.featurize import featurize  # noqa: E402
from fusionkit_plugins.whisper import PREDICT_KEY, WhisperEncoderPlugin, WhisperOptions  # noqa: E402

RECIPE = """
name: tiny-predict-speed
data: {{dataset: synthetic, options: {{speakers: 4, clips_per_class: 2}}}}
encoders:
  - {{plugin: whisper, name: tw, options: {{model: {model}, layers: 1, pooling: mean}}}}
fusion: {{plugin: linear}}
split: {{kind: speaker-kfold, folds: 2}}
cache: {{dir: {cache}}}
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, model_dir) -> Path:
    root = tmp_path_factory.mktemp("predict-speed")
    (root / "recipe.yaml").write_text(RECIPE.format(model=model_dir, cache=root / "cache"))
    runner = CliRunner()
    r = runner.invoke(main, ["run", str(root / "recipe.yaml"), "--out", str(root / "run")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(root / "run"), str(root / "bundle")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return root / "bundle"


def _signals(long: bool = False) -> list[np.ndarray]:
    """Short clips of different lengths (batched with padding); ``long`` adds one over Whisper's 30 s window."""
    return [voice(1.3, seed=0), voice(0.6, seed=1), voice(2.2, seed=2)] + ([voice(30.5, seed=3)] if long else [])


@pytest.mark.parametrize("layers,pooling", [(1, "mean"), (-1, "mean+std"), ([2, 0], "max"), ("all", "mean"),
                                            ([0, 1], "none")])
def test_prediction_features_equal_full_run(model_dir, layers, pooling):
    full = WhisperEncoderPlugin(WhisperOptions(model=str(model_dir), layers=layers, pooling=pooling))
    narrow = WhisperEncoderPlugin(WhisperOptions(model=str(model_dir), layers=layers, pooling=pooling))
    full.load()
    narrow.load()
    narrow.for_prediction()
    long = pooling == "mean+std"
    a = list(featurize(full, _signals(long), 16000))
    b = list(featurize(narrow, _signals(long), 16000))
    assert all(out.ok for out in a + b)
    for x, y in zip(a, b):
        assert PREDICT_KEY not in x.arrays and PREDICT_KEY in y.arrays
        assert x.features.shape == y.features.shape
        assert np.allclose(x.features, y.features, atol=1e-5, rtol=0)


def test_prediction_skips_blocks_after_the_selected_layer(model_dir):
    enc = WhisperEncoderPlugin(WhisperOptions(model=str(model_dir), layers=1))
    enc.load()
    calls = {i: 0 for i in range(enc.n_layers())}
    hooks = [block.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, block in enumerate(enc._runner.encoder.layers)]
    try:
        enc.encode_batch([voice(1.0)])
        assert calls == {0: 1, 1: 1, 2: 1}
        enc.for_prediction()
        out = enc.encode_batch([voice(1.0)])[0]
    finally:
        for h in hooks:
            h.remove()
    assert calls == {0: 2, 1: 1, 2: 1}  # layer 1 is block 0's output: blocks 1 and 2 no longer run
    assert out["mean"].shape[0] == 1 and list(out[PREDICT_KEY]) == [1]


def test_bundle_timeline_equals_full_computation(bundle):
    from fusionkit.bundle import Bundle

    narrow = Bundle.load(bundle)
    recipe, head, outputs, encoders = Bundle.read_parts(bundle)
    for enc in encoders.values():
        enc.load()
    full = Bundle(bundle, recipe, encoders, head, outputs)
    assert narrow.encoders["tw"]._only == [1] and full.encoders["tw"]._only is None
    x = np.concatenate(_signals()[:3] * 3)
    a = narrow.predict(x, 16000, window=1.0, hop=0.5, batch=5)
    b = full.predict(x, 16000, window=1.0, hop=0.5)
    assert [(s.start, s.end, s.label) for s in a] == [(s.start, s.end, s.label) for s in b]
    pa = np.array([[s.probabilities[c] for c in narrow.classes] for s in a])
    pb = np.array([[s.probabilities[c] for c in full.classes] for s in b])
    assert len(a) > 10 and np.allclose(pa, pb, atol=1e-5, rtol=0)
    whole_a, whole_b = narrow.predict(x, 16000), full.predict(x, 16000)
    assert all(abs(whole_a["probabilities"][c] - whole_b["probabilities"][c]) < 1e-5 for c in narrow.classes)


def test_predict_cli_loads_the_encoder_once_for_many_files(bundle, tmp_path, monkeypatch):
    import fusionkit_plugins.whisper_model as wm

    loads = []
    real = wm.load_whisper_encoder
    monkeypatch.setattr(wm, "load_whisper_encoder", lambda *a, **k: loads.append(a) or real(*a, **k))
    paths = []
    for i, sec in enumerate([2.5, 1.2, 3.1]):
        paths.append(tmp_path / f"rec{i}.flac")
        sf.write(paths[-1], voice(sec, seed=i), 16000, format="FLAC")
    r = CliRunner().invoke(main, ["predict", str(bundle), *map(str, paths), "--window", "1", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert len(loads) == 1
    assert r.stdout.count('"timeline"') == 3


def test_ct2_folder_loads_the_same_weights_without_random_init(model_dir, tmp_path):
    ct2 = pytest.importorskip("ctranslate2.converters")
    import torch

    from fusionkit_plugins.whisper_ct2 import load_ct2_encoder
    from fusionkit_plugins.whisper_model import load_whisper_encoder

    out = tmp_path / "ct2"
    ct2.TransformersConverter(str(model_dir)).convert(str(out), quantization="float32")
    torch.manual_seed(0)
    reference, _ = load_ct2_encoder(out)  # built with random initialisation, then overwritten
    torch.manual_seed(1)
    fast, n_mels, kind = load_whisper_encoder(str(out))
    assert kind == "ctranslate2" and n_mels == 80
    ref_sd, fast_sd = reference.state_dict(), fast.state_dict()
    assert ref_sd.keys() == fast_sd.keys()
    for name, value in ref_sd.items():
        assert torch.equal(value, fast_sd[name]), name
    assert torch.nn.init.normal_(torch.zeros(1000)).abs().sum() > 0  # torch's initialisers are back afterwards
