"""The CUDA paths on tiny models: encoding in float16, fine-tuning in bfloat16 autocast, a GPU-trained bundle
predicting on the GPU and on the CPU. Skipped where torch sees no CUDA device (CI); on a GPU machine
``pytest tests/test_cuda.py`` runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

from whisper_fixtures import tiny_whisper, voice  # noqa: E402

from fusionkit.registry import registry  # noqa: E402


def encoder(plugin: str, model: Path, **options):
    cls = registry().get("encoder", plugin)
    return cls(cls.Options.model_validate({"model": str(model), **options}))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def whisper_model(tmp_path_factory) -> Path:
    return tiny_whisper(tmp_path_factory.mktemp("cuda") / "tiny-whisper")


def test_whisper_encodes_on_cuda_in_float16_with_the_cpu_features(whisper_model):
    signals = [voice(1.3, seed=1), voice(0.7, seed=2), voice(2.1, seed=3)]
    cpu = encoder("whisper", whisper_model, layers="all", pooling="mean+std")
    gpu = encoder("whisper", whisper_model, layers="all", pooling="mean+std", device="cuda")
    assert gpu.precision() == "fp16" and cpu.precision() == "fp32"
    assert gpu.cache_key() != cpu.cache_key()  # float16 features never mix with float32 ones in the cache
    for a, b in zip(cpu.encode_batch(signals), gpu.encode_batch(signals)):
        want, got = cpu.select(a), gpu.select(b)
        assert got.shape == want.shape and got.dtype == np.float32
        assert cosine(want, got) > 0.999
        np.testing.assert_allclose(got, want, atol=0.05, rtol=0.05)


def test_ssl_blocks_fine_tuned_from_a_cuda_encoder_start_from_the_stored_weights(tmp_path):
    from ssl_fixtures import tiny_ssl

    model = tiny_ssl("hubert", tmp_path / "hubert")
    want, _ = encoder("wav2vec2", model, layers=0, pooling="none").trainable_top()
    gpu = encoder("wav2vec2", model, layers=0, pooling="none", device="cuda")
    got, _ = gpu.trainable_top()
    gpu.load()
    assert next(gpu.model.parameters()).dtype == torch.float16  # the encoding copy
    a, b = want.state_dict(), got.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k].cpu()) for k in a)


def test_text_encoder_on_cuda_gives_the_cpu_features(tmp_path):
    from text_fixtures import tiny_bert

    model = tiny_bert(tmp_path / "bert")
    texts = ["I am so happy today", "leave me alone", "ok"]
    cpu = encoder("hf-text", model)
    gpu = encoder("hf-text", model, device="cuda")
    cpu.load()
    gpu.load()
    for a, b in zip(cpu.encode_batch(texts), gpu.encode_batch(texts)):
        assert cosine(cpu.select(a), gpu.select(b)) > 0.999


RECIPE = """
name: cuda-fine-tune
data: {{dataset: synthetic, options: {{speakers: 4, clips_per_class: 2}}}}
encoders: [{{plugin: whisper, name: wh, options: {{model: "{model}", layers: 1, pooling: none, device: cuda}}}}]
fusion: {{plugin: fine-tune, options: {{epochs: 3, patience: 2, batch_size: 4, encoder_lr: 1e-3, device: cuda}}}}
split: {{kind: speaker-kfold, folds: 2}}
"""


@pytest.fixture(scope="module")
def gpu_run(whisper_model, tmp_path_factory) -> Path:
    from core_fixtures import run_and_export

    return run_and_export(tmp_path_factory.mktemp("cudarun"), RECIPE.format(model=whisper_model))


def test_a_run_fine_tunes_on_cuda_and_says_so(gpu_run):
    metrics = json.loads((gpu_run / "run" / "metrics.json").read_text())
    assert metrics["embeddings"]["per_encoder"]["wh"]["precision"] == "fp16"
    head = json.loads((gpu_run / "run" / "models" / "fold0" / "head.json").read_text())
    assert head["options"]["device"] == "cuda" and head["history"]["tops"] == {"wh": {"start": 1, "count": 2}}


def test_a_fresh_process_reloads_the_gpu_run_with_the_same_probabilities(gpu_run):
    from core_fixtures import fresh_process_difference

    assert fresh_process_difference(gpu_run / "run") <= 1e-3


def test_the_gpu_bundle_predicts_on_the_gpu_and_on_the_cpu(gpu_run):
    import fusionkit
    from fusionkit.pipeline.data import load_dataset
    from fusionkit.recipe import load_recipe

    clips = load_dataset(load_recipe(gpu_run / "run" / "recipe.yaml")).clips()[:4]
    on_gpu = fusionkit.load(gpu_run / "fold0")
    on_cpu = fusionkit.load(gpu_run / "fold0", device="cpu")
    assert on_gpu.head.options.device == "cuda" and on_gpu.encoders["wh"].options.device == "cuda"
    assert on_cpu.head.options.device == "cpu" and on_cpu.encoders["wh"].options.device == "cpu"
    for clip in clips:
        a, b = on_gpu.predict(clip.path), on_cpu.predict(clip.path)
        for c in on_gpu.classes:  # float16 features and bfloat16 autocast on the GPU, float32 on the CPU
            assert b["probabilities"][c] == pytest.approx(a["probabilities"][c], abs=0.05)
