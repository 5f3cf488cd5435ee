"""The torch encoders' ``precision`` option: native bf16 detection, ``auto``, cache keys, metrics.json."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from fusionkit.sdk import torch_models
from fusionkit.sdk.torch_models import (
    cpu_flags,
    legacy_precision,
    matmul_attention,
    native_cpu_bf16,
    precision_identity,
    resolve_precision,
)

AMD_FLAGS = frozenset("fpu sse sse2 avx avx2 fma f16c".split())
AMX_FLAGS = AMD_FLAGS | {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
AVX512_BF16_FLAGS = AMD_FLAGS | {"avx512f", "avx512_bf16"}
"""Native bf16 without AMX (AMD Zen 4 and later)."""


@pytest.fixture
def plain_cpu(monkeypatch):
    """This process sees a CPU without native bf16."""
    monkeypatch.setattr(torch_models, "cpu_flags", lambda path=torch_models.CPUINFO: AMD_FLAGS)


@pytest.fixture
def bf16_cpu(monkeypatch):
    """This process sees a CPU with AMX (native bf16)."""
    monkeypatch.setattr(torch_models, "cpu_flags", lambda path=torch_models.CPUINFO: AMX_FLAGS)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512_bf16 amx_tile\n"
                    "bugs\t\t: spectre_v1\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    flags = cpu_flags(info)
    assert {"fpu", "avx2", "avx512_bf16", "amx_tile"} == set(flags)
    assert native_cpu_bf16(flags)
    assert not native_cpu_bf16(frozenset({"avx512f", "avx2", "amx_tile"}))
    assert native_cpu_bf16(frozenset({"amx_bf16"}))
    assert cpu_flags(tmp_path / "absent") == frozenset()


@pytest.fixture
def avx512_bf16_cpu(monkeypatch):
    """This process sees a CPU with AVX512-BF16 and no AMX."""
    monkeypatch.setattr(torch_models, "cpu_flags", lambda path=torch_models.CPUINFO: AVX512_BF16_FLAGS)


def test_attention_is_matrix_products_only_in_bf16_on_a_cpu_without_amx():
    assert matmul_attention("auto", "cpu", AVX512_BF16_FLAGS)
    assert matmul_attention("bf16", "cpu", AVX512_BF16_FLAGS)
    assert not matmul_attention("fp32", "cpu", AVX512_BF16_FLAGS)
    assert not matmul_attention("auto", "cuda", AVX512_BF16_FLAGS)
    assert not matmul_attention("auto", "cpu", AMX_FLAGS)  # torch's fused kernel uses AMX there
    assert not matmul_attention("bf16", "cpu", AMD_FLAGS)  # bf16 emulated: nothing measured, the fused kernel stays


def test_auto_resolves_per_device_and_cpu():
    assert resolve_precision("auto", "cpu", AMD_FLAGS) == "fp32"
    assert resolve_precision("auto", "cpu", AMX_FLAGS) == "bf16"
    assert resolve_precision("auto", "cuda", AMD_FLAGS) == "fp16"
    assert resolve_precision("auto", "cuda:1", AMX_FLAGS) == "fp16"
    assert resolve_precision("bf16", "cpu", AMD_FLAGS) == "bf16"
    assert resolve_precision("fp32", "cuda", AMX_FLAGS) == "fp32"
    assert legacy_precision("cpu") == "fp32" and legacy_precision("mps") == "fp16"
    with pytest.raises(ValueError, match="precision 'int4'"):
        resolve_precision("int4", "cpu")


def test_precision_enters_the_identity_only_when_it_changes_what_is_computed(plain_cpu):
    def ident():
        return {"plugin": "x", "options": {"precision": "auto", "pad_to": "own"}}

    assert precision_identity(ident(), "auto", "cpu") == {"plugin": "x", "options": {"pad_to": "own"}}
    assert precision_identity(ident(), "fp32", "cpu") == {"plugin": "x", "options": {"pad_to": "own"}}
    assert precision_identity(ident(), "fp16", "cuda") == {"plugin": "x", "options": {"pad_to": "own"}}
    assert precision_identity(ident(), "bf16", "cpu")["precision"] == "bf16"
    assert precision_identity(ident(), "fp32", "cuda")["precision"] == "fp32"


# ---------------------------------------------------------------- whisper

WHISPER_IDENTITY = {"plugin": "whisper", "version": "1", "model": "digest-0",
                    "options": {"pad_to": "own", "device": "cpu", "trust_remote_code": False}}
"""A Whisper encoder's identity before the precision option existed (its cache key must not move)."""


def whisper(monkeypatch, **options):
    from fusionkit_plugins.whisper import WhisperEncoderPlugin, WhisperOptions

    encoder = WhisperEncoderPlugin(WhisperOptions(**options))
    monkeypatch.setattr(encoder, "model_identity", lambda: "digest-0")
    return encoder


def test_whisper_fp32_keeps_the_cache_key(monkeypatch, plain_cpu):
    old_key = "whisper-" + hashlib.sha256(json.dumps(WHISPER_IDENTITY, sort_keys=True).encode()).hexdigest()[:16]
    for precision in ("auto", "fp32"):
        encoder = whisper(monkeypatch, precision=precision)
        assert encoder.identity() == WHISPER_IDENTITY
        assert encoder.cache_key() == old_key
        assert encoder.run_info() == {"precision": "fp32"}
    bf16 = whisper(monkeypatch, precision="bf16")
    assert bf16.cache_key() != old_key and bf16.identity()["precision"] == "bf16"


def test_whisper_auto_is_bf16_on_a_native_bf16_cpu(monkeypatch, bf16_cpu):
    auto, bf16 = whisper(monkeypatch), whisper(monkeypatch, precision="bf16")
    assert auto.run_info() == {"precision": "bf16"}
    assert auto.cache_key() == bf16.cache_key() != whisper(monkeypatch, precision="fp32").cache_key()


def test_whisper_bf16_with_matrix_product_attention_has_its_own_cache_key(monkeypatch, avx512_bf16_cpu):
    auto = whisper(monkeypatch)
    assert auto.identity()["attention"] == "matmul" and auto.identity()["precision"] == "bf16"
    assert "attention" not in whisper(monkeypatch, precision="fp32").identity()
    matmul_key = auto.cache_key()
    monkeypatch.setattr(torch_models, "cpu_flags", lambda path=torch_models.CPUINFO: AMX_FLAGS)
    amx = whisper(monkeypatch)
    assert "attention" not in amx.identity()  # bf16 caches made with the fused kernel keep their key
    assert amx.cache_key() != matmul_key


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("transformers")
    from whisper_fixtures import tiny_whisper

    return tiny_whisper(tmp_path_factory.mktemp("precision") / "tiny-whisper")


def test_whisper_bf16_states_are_float32_and_close_to_fp32(tiny_model, monkeypatch):
    from whisper_fixtures import voice

    clips = [voice(1.3, seed=1), voice(0.7, seed=2)]
    out = {}
    for precision in ("fp32", "bf16"):
        encoder = whisper(monkeypatch, model=str(tiny_model), precision=precision, layers="all", threads=1)
        out[precision] = encoder.encode_batch(clips)
        assert encoder._runner.dtype.is_floating_point and str(encoder._runner.dtype).endswith(
            "float32" if precision == "fp32" else "bfloat16")
    for full, half in zip(out["fp32"], out["bf16"]):
        for key in ("mean", "std", "max"):
            assert half[key].dtype == np.float32
            a, b = full[key].ravel(), half[key].ravel()
            assert not np.array_equal(a, b)  # bf16 really ran
            cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
            assert cosine > 0.995, key


def test_whisper_bf16_matrix_product_attention_is_close_to_the_fused_kernel(tiny_model, monkeypatch,
                                                                            avx512_bf16_cpu):
    from whisper_fixtures import voice

    clips = [voice(1.3, seed=1), voice(0.7, seed=2)]  # of different lengths: the padded one needs the mask
    matmul = whisper(monkeypatch, model=str(tiny_model), precision="bf16", layers="all", threads=1)
    fused = whisper(monkeypatch, model=str(tiny_model), precision="bf16", layers="all", threads=1)
    out_matmul = matmul.encode_batch(clips)
    monkeypatch.setattr(torch_models, "cpu_flags", lambda path=torch_models.CPUINFO: AMX_FLAGS)
    out_fused = fused.encode_batch(clips)
    assert matmul._runner.encoder.config._attn_implementation == "eager"
    assert fused._runner.encoder.config._attn_implementation != "eager"
    alone = matmul.encode_batch(clips[1:])[0]  # batched with a longer clip or alone: the same states
    for a, b in zip(out_matmul, out_fused):
        for key in ("mean", "std"):
            x, y = a[key].ravel(), b[key].ravel()
            assert float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) > 0.999, key
    np.testing.assert_allclose(alone["mean"], out_matmul[1]["mean"], atol=0.05)


def test_metrics_json_records_the_resolved_precision(tiny_model, tmp_path, monkeypatch, plain_cpu):
    from core_fixtures import small_recipe, write_recipe

    from fusionkit.pipeline.run import run
    from fusionkit.recipe import load_recipe

    monkeypatch.setenv("FUSIONKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FUSIONKIT_PROGRESS", "0")
    options = {"model": str(tiny_model), "layers": 3, "threads": 1}
    recipe = small_recipe(encoders=[{"plugin": "whisper", "options": options}], fusion={"plugin": "linear"})
    metrics = run(load_recipe(write_recipe(tmp_path / "r.yaml", recipe)), tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for m in (metrics, saved):
        assert m["embeddings"]["per_encoder"]["whisper"]["precision"] == "fp32"


# ---------------------------------------------------------------- the other torch encoders


@pytest.mark.parametrize("plugin", ["wav2vec2", "w2v-bert", "hf-text", "sentence-transformers"])
def test_other_encoders_keep_their_keys_in_fp32(monkeypatch, plain_cpu, plugin):
    from fusionkit.recipe import plugin_options

    def encoder(**options):
        cls, opts = plugin_options("encoder", plugin, {"model": "some/model", **options})
        enc = cls(opts)
        monkeypatch.setattr(enc, "model_identity", lambda: "digest-0")
        return enc

    auto, fp32, bf16 = encoder(), encoder(precision="fp32"), encoder(precision="bf16")
    assert "precision" not in auto.identity() and "precision" not in auto.identity()["options"]
    assert auto.cache_key() == fp32.cache_key() != bf16.cache_key()
    assert auto.run_info() == {"precision": "fp32"} and bf16.run_info() == {"precision": "bf16"}
    if plugin in ("wav2vec2", "w2v-bert"):  # the layered audio encoders' model dtype
        import torch

        assert (auto.dtype, bf16.dtype) == (torch.float32, torch.bfloat16)


def test_text_encoder_on_cuda_stays_fp32_in_the_key(monkeypatch, plain_cpu):
    """hf-text always ran in fp32, on any device: an fp32 run on cuda keeps the key, fp16 gets its own."""
    from fusionkit_plugins.hf_text import HFTextEncoder, HFTextOptions

    monkeypatch.setattr(HFTextEncoder, "model_identity", lambda self: "digest-0")
    fp32 = HFTextEncoder(HFTextOptions(model="m", device="cuda", precision="fp32")).identity()
    fp16 = HFTextEncoder(HFTextOptions(model="m", device="cuda", precision="fp16")).identity()
    assert "precision" not in fp32 and fp16["precision"] == "fp16"


def test_sentence_transformers_bf16_pools_in_fp32_close_to_fp32(plain_cpu):
    pytest.importorskip("sentence_transformers")
    from fusionkit_plugins.sentence_transformers_encoder import (
        SentenceTransformersEncoder,
        SentenceTransformersOptions,
    )

    texts = ["I am so happy today", "leave me alone", "the meeting is at noon"]
    out = {}
    for precision in ("fp32", "bf16"):
        encoder = SentenceTransformersEncoder(SentenceTransformersOptions(precision=precision))
        try:
            encoder.load()
        except Exception as exc:  # noqa: BLE001 - the default model package is optional
            pytest.skip(f"default sentence-transformers model not available: {exc}")
        out[precision] = np.stack([e["embedding"] for e in encoder.encode_batch(texts)])
        assert bool(encoder.model[0]._forward_hooks) == (precision == "bf16")  # token embeddings cast to fp32
    a, b = out["fp32"], out["bf16"]
    assert b.dtype == np.float32 and not np.array_equal(a, b)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.99


def test_the_environment_can_hide_native_bf16(tmp_path, monkeypatch):
    from fusionkit.sdk import torch_models

    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu avx512f amx_bf16 amx_tile\n")
    monkeypatch.setattr(torch_models, "CPUINFO", info)
    monkeypatch.setattr(torch_models.cpu_flags, "__defaults__", (info,))
    monkeypatch.setenv("FUSIONKIT_CPU_BF16", "0")
    assert not native_cpu_bf16() and resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setenv("FUSIONKIT_CPU_BF16", "1")
    assert native_cpu_bf16() and resolve_precision("auto", "cpu") == "bf16"
