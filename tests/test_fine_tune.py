"""``fine-tune``: an encoder's own upper blocks trained on its cached lower-layer frames (a tiny random Whisper:
the blocks reproduce the encoder's states, train, save, reload in a fresh process, export, predict, bench)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from whisper_fixtures import tiny_whisper, voice  # noqa: E402

from fusionkit.registry import registry  # noqa: E402


def whisper(model: Path, **options):
    cls = registry().get("encoder", "whisper")
    return cls(cls.Options.model_validate({"model": str(model), "threads": 1, **options}))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_whisper(tmp_path_factory.mktemp("ft") / "tiny-whisper")


@pytest.mark.parametrize("layer, blocks, last", [(1, None, 3), (1, 1, 2), (0, None, 3)])
def test_trainable_top_reproduces_the_encoders_own_upper_layers(model, layer, blocks, last):
    import torch

    signals = [voice(1.3, seed=1), voice(0.7, seed=2)]
    every = whisper(model, layers="all", pooling="none")
    states = [every.select(a).reshape(-1, 4, 32) for a in every.encode_batch(signals)]
    top, spec = whisper(model, layers=layer, pooling="none").trainable_top(blocks)
    assert spec["start"] == layer and spec["count"] == last - layer and spec["final_norm"] == (last == 3)
    lengths = [len(s) for s in states]
    x = torch.zeros(2, max(lengths), 32)
    mask = torch.zeros(2, max(lengths), dtype=torch.bool)
    for i, s in enumerate(states):
        x[i, : len(s)] = torch.from_numpy(s[:, layer].astype(np.float32))
        mask[i, : len(s)] = True
    top.eval()
    with torch.no_grad():
        out = top(x, mask)
    for i, s in enumerate(states):  # batched with a longer clip: padding changes nothing
        np.testing.assert_allclose(out[i, : lengths[i]].numpy(), s[:, last].astype(np.float32), atol=2e-2)
    rebuilt = registry().get("encoder", "whisper").build_top(json.loads(json.dumps(spec)))
    assert sorted(rebuilt.state_dict()) == sorted(top.state_dict())


@pytest.mark.parametrize("options, blocks, message", [
    ({"layers": "all", "pooling": "none"}, None, "needs frames of one layer"),
    ({"layers": 1, "pooling": "mean"}, None, "needs frames of one layer"),
    ({"layers": 3, "pooling": "none"}, None, "layer 3 leaves no block to train"),
    ({"layers": 1, "pooling": "none"}, 3, "blocks: 3 does not fit: layer 1 has 2 block"),
])
def test_what_cannot_be_fine_tuned_is_one_clear_line(model, options, blocks, message):
    with pytest.raises(ValueError, match=message) as err:
        whisper(model, **options).trainable_top(blocks)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("options, blocks, message", [
    ({"layers": 1, "pooling": "mean"}, None, "encoder 'wh' gives pooled features"),
    ({"layers": 3, "pooling": "none"}, None, "layer 3 leaves no block to train"),
    ({"layers": 1, "pooling": "none"}, 3, "blocks: 3 does not fit: layer 1 has 2 block"),
])
def test_what_cannot_be_fine_tuned_fails_before_encoding(model, tmp_path, options, blocks, message):
    """``validate`` and ``run`` ask the head before any clip is encoded (a run used to encode every clip first)."""
    from click.testing import CliRunner

    from fusionkit.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(model=model))
    sets = [f"encoders.0.options.{k}={v}" for k, v in options.items()]
    sets += [f"fusion.options.blocks={blocks}"] if blocks else []
    args = [a for s in sets for a in ("--set", s)]
    checked = CliRunner().invoke(main, ["validate", str(recipe), *args])
    assert checked.exit_code == 2 and message in checked.stderr, checked.output
    cache = tmp_path / "cache"
    ran = CliRunner(env={"FUSIONKIT_CACHE_DIR": str(cache)}).invoke(
        main, ["run", str(recipe), *args, "--out", str(tmp_path / "out")])
    assert ran.exit_code == 1 and message in ran.stderr, ran.output
    assert not list(cache.rglob("*.safetensors"))  # nothing was encoded


def test_pooled_features_are_refused_by_the_head():
    cls = registry().get("fusion", "fine-tune")
    head = cls(cls.Options.model_validate({"epochs": 1}))
    with pytest.raises(ValueError, match="encoder 'wh' gives pooled features"):
        head.fit({"wh": np.zeros((8, 4), dtype=np.float32)}, np.array([0, 1] * 4), ["a", "b"])


def test_frame_masking_covers_about_the_share_asked_and_no_padding():
    import torch

    from fusionkit_plugins.fine_tune_network import mask_frames

    torch.manual_seed(0)
    x = torch.ones(4, 200, 8)
    mask = torch.zeros(4, 200, dtype=torch.bool)
    mask[:, :150] = True
    out = mask_frames(x, mask, 0.2, 10, 0.25)
    frames_kept = (out.abs().sum(dim=2) > 0)[:, :150].float().mean()
    assert 0.7 <= float(frames_kept) <= 0.9  # spans may overlap: at most 20 % masked
    channels_kept = (out.abs().sum(dim=1) > 0).float().mean()
    assert 0.5 <= float(channels_kept) <= 0.95
    assert mask_frames(x, mask, 0.0, 10, 0.0).equal(x)


RECIPE = """
name: tiny-fine-tune
data: {{dataset: synthetic, options: {{speakers: 4, clips_per_class: 2}}}}
encoders: [{{plugin: whisper, name: wh, options: {{model: "{model}", layers: 1, pooling: none, threads: 1}}}}]
fusion: {{plugin: fine-tune, options: {{epochs: 3, patience: 2, batch_size: 4, encoder_lr: 1e-3, threads: 1}}}}
split: {{kind: speaker-kfold, folds: 2}}
"""
GRID = """
name: tiny-fine-tune-grid
base: base.yaml
axes:
  fusion:
    - {name: mean, plugin: fine-tune, options: {epochs: 2, patience: 1, batch_size: 4, threads: 1}}
    - {name: att, plugin: fine-tune, options: {epochs: 2, patience: 1, batch_size: 4, threads: 1, pooling: attentive,
       blocks: 1}}
"""


@pytest.fixture(scope="module")
def run(model, tmp_path_factory):
    from core_fixtures import run_and_export

    return run_and_export(tmp_path_factory.mktemp("ftrun"), RECIPE.format(model=model))


def test_the_fold_saves_trained_blocks_that_differ_from_the_pretrained_ones(run, model):
    from safetensors.numpy import load_file

    saved = json.loads((run / "run" / "models" / "fold0" / "head.json").read_text())
    assert saved["tops"]["wh"]["plugin"] == "whisper" and saved["tops"]["wh"]["start"] == 1
    assert saved["history"]["tops"] == {"wh": {"start": 1, "count": 2}}
    selection = json.loads((run / "run" / "metrics.json").read_text())["protocol"]["selection"]
    assert "early stopping" in selection["how"] and "speakers held out" in selection["how"]
    assert [f["fold"] for f in selection["per_fold"]] == [0, 1]
    assert selection["per_fold"][0]["best_epoch"] == saved["history"]["best_epoch"]
    arrays = load_file(run / "run" / "models" / "fold0" / "arrays.safetensors")
    top, _ = whisper(model, layers=1, pooling="none").trainable_top()
    pretrained = top.state_dict()["layers.0.fc1.weight"].numpy()
    trained = arrays["model.tops.0.layers.0.fc1.weight"]
    assert trained.shape == pretrained.shape and not np.allclose(trained, pretrained, atol=1e-6)


def test_a_fresh_process_reloads_the_same_probabilities(run):
    from core_fixtures import fresh_process_difference

    assert fresh_process_difference(run / "run") <= 2e-6


def test_the_bundle_predicts_what_the_run_did(run):
    import fusionkit
    from fusionkit.pipeline.data import load_dataset
    from fusionkit.recipe import load_recipe

    rows = [r for r in csv.DictReader(open(run / "run" / "predictions.csv")) if r["fold"] == "0"]
    paths = {c.id: c.path for c in load_dataset(load_recipe(run / "run" / "recipe.yaml")).clips()}
    bundle = fusionkit.load(run / "fold0")
    for row in rows[:3]:
        out = bundle.predict(paths[row["clip_id"]])
        for c in bundle.classes:
            assert out["probabilities"][c] == pytest.approx(float(row[f"p_{c}"]), abs=2e-6)


def test_a_bundle_fine_tuned_on_a_gpu_predicts_on_the_cpu(run, tmp_path, monkeypatch, caplog):
    """The head's saved options name the device it trained on; without that device here it runs on the CPU,
    with the same weights (so the same probabilities as a CPU-trained head)."""
    import shutil

    import torch
    from core_fixtures import rehash_bundle

    import fusionkit
    from fusionkit.bundle import describe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    clip = _a_clip(run)
    want = fusionkit.load(run / "fold0").predict(clip)
    moved = tmp_path / "gpu-bundle"
    shutil.copytree(run / "fold0", moved)
    saved = json.loads((moved / "head" / "head.json").read_text())
    saved["options"]["device"] = "cuda"
    (moved / "head" / "head.json").write_text(json.dumps(saved))
    rehash_bundle(moved)
    assert describe(moved)["head_trained_on"] == "cuda"
    with caplog.at_level("WARNING", logger="fusionkit"):
        model = fusionkit.load(moved)
    assert caplog.text.count("trained on cuda, which this machine does not have") == 1  # said once, for the head
    assert model.head.options.device == "cpu"
    got = model.predict(clip)
    for c in model.classes:
        assert got["probabilities"][c] == pytest.approx(want["probabilities"][c], abs=1e-6)


def _a_clip(run: Path) -> str:
    from fusionkit.pipeline.data import load_dataset
    from fusionkit.recipe import load_recipe

    return load_dataset(load_recipe(run / "run" / "recipe.yaml")).clips()[0].path


def test_bench_runs_fine_tune_cells_on_the_cached_frames(run, tmp_path):
    from core_fixtures import bench_rows

    rows = bench_rows(tmp_path, (run / "recipe.yaml").read_text(), GRID)
    assert len(rows) == 2 and all(row["status"] == "done" for row in rows), rows
    assert all(row["computed"] == "0" for row in rows)


def test_bench_fails_a_cell_whose_blocks_do_not_fit_before_encoding(model, tmp_path):
    """The cell fails with the reason before the encoding phase; the good cell runs."""
    import csv

    from click.testing import CliRunner

    from fusionkit.cli import main

    (tmp_path / "base.yaml").write_text(RECIPE.format(model=model))
    (tmp_path / "grid.yaml").write_text(GRID.replace("pooling: attentive,\n       blocks: 1", "blocks: 7"))
    r = CliRunner(env={"FUSIONKIT_CACHE_DIR": str(tmp_path / "cache")}).invoke(
        main, ["bench", str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert r.exit_code == 1, r.output
    with open(tmp_path / "out" / "results.csv") as fh:
        rows = {row["head"]: row for row in csv.DictReader(fh)}
    assert rows["mean"]["status"] == "done"
    assert rows["att"]["status"] == "failed" and "blocks: 7 does not fit" in rows["att"]["error"]


# ---------------------------------------------------------------- text: hf-text (BERT-style) layers


def hf_text(model: Path, **options):
    cls = registry().get("encoder", "hf-text")
    return cls(cls.Options.model_validate({"model": str(model), **options}))


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    from text_fixtures import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("ftbert") / "bert")


@pytest.mark.parametrize("layer, blocks, last", [(0, None, 2), (1, None, 2), (0, 1, 1)])
def test_text_top_reproduces_the_models_own_hidden_states(bert, layer, blocks, last):
    import torch

    texts = ["a short one", "this one is a little longer than that"]
    every = hf_text(bert, layers=[layer, last], pooling="none")
    every.load()
    seqs = [every.select(a) for a in every.encode_batch(texts)]
    top, spec = hf_text(bert, layers=layer, pooling="none").trainable_top(blocks)
    assert spec["count"] == last - layer
    width = seqs[0].shape[1] // 2
    lengths = [len(s) for s in seqs]
    x = torch.zeros(2, max(lengths), width)
    mask = torch.zeros(2, max(lengths), dtype=torch.bool)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.from_numpy(s[:, :width])
        mask[i, : len(s)] = True
    top.eval()
    with torch.no_grad():
        out = top(x, mask)
    for i, s in enumerate(seqs):
        np.testing.assert_allclose(out[i, : lengths[i]].numpy(), s[:, width:], atol=1e-4)
    rebuilt = registry().get("encoder", "hf-text").build_top(json.loads(json.dumps(spec)))
    assert sorted(rebuilt.state_dict()) == sorted(top.state_dict())


def test_text_fine_tune_fits_saves_and_reloads(bert, tmp_path):
    texts = [f"{w} words here {i}" for i in range(16) for w in ("happy", "sad")]
    y = np.array([0, 1] * 16)
    groups = np.repeat([f"s{i}" for i in range(8)], 4)
    enc = hf_text(bert, layers=0, pooling="none")
    enc.load()
    X = {"t": [enc.select(a) for a in enc.encode_batch(texts)]}
    saved = fit_save_reload(enc, X, y, groups, tmp_path, {"epochs": 3, "mask_time": 0.0})
    assert saved["tops"]["t"]["plugin"] == "hf-text"
    probed = fit_save_reload(enc, X, y, groups, tmp_path / "probe", {"epochs": 2, "mask_time": 0.0, "init": "probe"})
    assert probed["options"]["init"] == "probe"


def test_a_checkpoint_saved_in_float16_is_fine_tuned_in_float32(tmp_path):
    import torch
    from text_fixtures import tiny_bert
    from transformers import AutoModel

    folder = tiny_bert(tmp_path / "bert16")
    AutoModel.from_pretrained(folder).half().save_pretrained(folder)
    texts = [f"{w} words here {i}" for i in range(8) for w in ("happy", "sad")]
    enc = hf_text(folder, layers=0, pooling="none")
    enc.load()
    X = {"t": [enc.select(a) for a in enc.encode_batch(texts)]}
    top, spec = enc.trainable_top(None)
    rebuilt = registry().get("encoder", "hf-text").build_top(json.loads(json.dumps(spec)))
    assert {p.dtype for p in [*top.parameters(), *rebuilt.parameters()]} == {torch.float32}
    fit_save_reload(enc, X, np.array([0, 1] * 8), np.repeat([f"s{i}" for i in range(4)], 4), tmp_path,
                    {"epochs": 2, "mask_time": 0.0})


def fit_save_reload(enc, X: dict, y, groups, tmp_path: Path, options: dict) -> dict:
    """Fit a fine-tune head on ``X`` (one encoder, ``enc``), save it, reload it and check the reloaded head's
    probabilities; the saved head.json."""
    from fusionkit.sdk.heads import load_head

    cls = registry().get("fusion", "fine-tune")
    head = cls(cls.Options.model_validate({"patience": 2, "batch_size": 8, "threads": 1, **options}))
    head.attach({name: enc for name in X})
    head.fit(X, y, ["happy", "sad"], groups)
    p = head.predict_proba(X)
    head.save(tmp_path / "h")
    again = load_head(cls, tmp_path / "h")
    np.testing.assert_allclose(again.predict_proba(X), p, atol=1e-6)
    return json.loads((tmp_path / "h" / "head.json").read_text())


# ---------------------------------------------------------------- init: probe (linear probing, then fine-tuning)


def _two_kinds(model: Path):
    """Frames of layer 1 of 16 clips over 8 speakers: loud voiced clips (class 0) and quiet noisy ones (class 1)."""
    rng = np.random.default_rng(0)
    enc = whisper(model, layers=1, pooling="none")
    enc.load()
    clips = [voice(0.6 + 0.05 * i, seed=i) if i % 2 == 0 else
             (0.02 * rng.standard_normal(int(16000 * (0.6 + 0.05 * i)))).astype(np.float32) for i in range(16)]
    X = {"wh": [enc.select(a) for a in enc.encode_batch(clips)]}
    return enc, X, np.array([0, 1] * 8), np.repeat([f"s{i}" for i in range(8)], 2)


def _probe_by_hand(enc, frames: list, y) -> np.ndarray:
    """Probabilities of scikit-learn's logistic regression on the standardised mean-pooled output of the
    pretrained block above layer 1, with the loss's class weights: what ``init: probe`` starts from."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from fusionkit.sdk.heads import class_weights

    top, _ = enc.trainable_top(1)
    top.eval()
    with torch.no_grad():
        pooled = np.stack([top(torch.from_numpy(f)[None], torch.ones(1, len(f), dtype=torch.bool))[0].mean(0).numpy()
                           for f in frames]).astype(np.float64)
    z = (pooled - pooled.mean(0)) / pooled.std(0)
    weights = dict(enumerate(class_weights(y, 2)))
    return LogisticRegression(C=1.0, max_iter=2000, class_weight=weights).fit(z, y).predict_proba(z)


def test_init_probe_starts_the_classifier_from_a_linear_probe(model, tmp_path):
    """With learning rates too small to move anything, the head predicts what the probe by hand does; a random
    classifier does not."""
    enc, X, y, groups = _two_kinds(model)
    still = {"epochs": 1, "blocks": 1, "mask_time": 0.0, "lr": 1e-12, "encoder_lr": 1e-12, "dropout": 0.0}
    fit_save_reload(enc, X, y, groups, tmp_path / "probe", {**still, "init": "probe"})
    probe = _reload(tmp_path / "probe").predict_proba(X)
    np.testing.assert_allclose(probe, _probe_by_hand(enc, X["wh"], y), atol=1e-4)
    fit_save_reload(enc, X, y, groups, tmp_path / "random", still)
    assert np.abs(_reload(tmp_path / "random").predict_proba(X) - probe).max() > 0.1


def test_validation_keeps_the_probe_when_fine_tuning_only_hurts(model, tmp_path):
    enc, X, y, groups = _two_kinds(model)
    wild = {"epochs": 3, "patience": 3, "blocks": 1, "mask_time": 0.0, "lr": 50.0, "encoder_lr": 5.0,
            "dropout": 0.0, "init": "probe"}
    saved = fit_save_reload(enc, X, y, groups, tmp_path, wild)
    assert saved["history"]["best_epoch"] == 0  # the warm start beat every epoch on the held-out speakers
    np.testing.assert_allclose(_reload(tmp_path).predict_proba(X), _probe_by_hand(enc, X["wh"], y), atol=1e-4)


def test_probe_of_clips_without_a_class_starts_that_class_far_below():
    """A class absent from the clips the probe sees gets zero weights and, at the clips' mean, a logit 10 below the
    others'; the other classes' logits are the logistic regression's (its standardisation folded into the weights)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from fusionkit.sdk.neural import Block
    from fusionkit.sdk.training import Tensors
    from fusionkit_plugins.fine_tune import FineTuneOptions
    from fusionkit_plugins.fine_tune_network import ProbedFineTuneNet

    class Same(torch.nn.Module):
        def forward(self, x, mask):
            return x

    rng = np.random.default_rng(0)
    y = np.array([0, 2] * 10)
    frames = rng.normal(size=(20, 5, 3)) + 3.0 * y[:, None, None] * np.array([1.0, -1.0, 0.5])
    net = ProbedFineTuneNet([Same()], [3], 3, FineTuneOptions())
    data = Tensors([Block("x", "sequence", 3, 1, frames.astype(np.float32), np.ones((20, 5), dtype=bool))])
    net.warm_start(data, torch.arange(20), torch.from_numpy(y), None)
    w, b = net.classifier[-1].weight.detach().numpy(), net.classifier[-1].bias.detach().numpy()
    pooled = frames.astype(np.float32).mean(axis=1).astype(np.float64)
    at_mean = pooled.mean(0) @ w.T + b  # the training clips' mean: each present class at its intercept
    assert not w[1].any() and at_mean[1] == pytest.approx(min(at_mean[0], at_mean[2]) - 10.0, abs=1e-4)
    z = (pooled - pooled.mean(0)) / pooled.std(0)
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(z, y)
    logits = pooled @ w.T + b
    np.testing.assert_allclose(logits[:, 2] - logits[:, 0], lr.decision_function(z), atol=1e-4)


def test_bf16_on_cpu_trains_in_autocast_and_reloads(model, tmp_path, monkeypatch):
    import torch

    from fusionkit_plugins.fine_tune_network import FineTuneNet

    seen = []
    forward = FineTuneNet.forward
    monkeypatch.setattr(FineTuneNet, "forward",
                        lambda self, xs, ms: seen.append(torch.is_autocast_enabled("cpu")) or forward(self, xs, ms))
    enc, X, y, groups = _two_kinds(model)
    fit_save_reload(enc, X, y, groups, tmp_path / "a", {"epochs": 2, "blocks": 1, "bf16_on_cpu": True})
    assert seen and all(seen)
    seen.clear()
    fit_save_reload(enc, X, y, groups, tmp_path / "b", {"epochs": 2, "blocks": 1})
    assert seen and not any(seen)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_cpu_warns_once_where_the_cpu_only_emulates_it(native, monkeypatch, caplog):
    from fusionkit.sdk import torch_models, training

    monkeypatch.setattr(torch_models, "native_cpu_bf16", lambda flags=None: native)
    training._warn_emulated_bf16.cache_clear()
    cls = registry().get("fusion", "concat-ffn")
    rng = np.random.default_rng(0)
    y = np.arange(24) % 2
    X = {"a": rng.normal(y[:, None], 0.5, (24, 4))}
    for _ in range(2):
        head = cls(cls.Options.model_validate({"epochs": 2, "width": 8, "bf16_on_cpu": True}))
        head.fit(X, y, ["x", "y"], np.repeat([f"s{i}" for i in range(6)], 4))
    training._warn_emulated_bf16.cache_clear()
    assert caplog.text.count("no native bfloat16") == (0 if native else 1)


def _reload(folder: Path):
    from fusionkit.sdk.heads import load_head

    return load_head(registry().get("fusion", "fine-tune"), folder / "h")


# ---------------------------------------------------------------- audio: the wav2vec2 family's layers


def ssl_encoder(model: Path, **options):
    cls = registry().get("encoder", "wav2vec2")
    return cls(cls.Options.model_validate({"model": str(model), "threads": 1, **options}))


@pytest.fixture(scope="module")
def ssl_models(tmp_path_factory) -> dict[str, Path]:
    from ssl_fixtures import tiny_ssl

    root = tmp_path_factory.mktemp("ftssl")
    return {k: tiny_ssl(k, root / k) for k in ("wav2vec2-group", "wav2vec2-layer", "hubert", "wavlm")}


@pytest.mark.parametrize("kind", ["wav2vec2-group", "wav2vec2-layer", "hubert"])
@pytest.mark.parametrize("layer, blocks, last", [(0, None, 2), (1, None, 2), (0, 1, 1)])
def test_ssl_top_reproduces_the_models_own_hidden_states(ssl_models, kind, layer, blocks, last):
    import torch

    signals = [voice(1.3, seed=1), voice(0.6, seed=2)]
    every = ssl_encoder(ssl_models[kind], layers=[layer, last], pooling="none")
    every.load()
    seqs = [every.select(a) for a in every.encode_batch(signals)]
    top, spec = ssl_encoder(ssl_models[kind], layers=layer, pooling="none").trainable_top(blocks)
    assert spec["start"] == layer and spec["count"] == last - layer
    width = seqs[0].shape[1] // 2
    lengths = [len(s) for s in seqs]
    assert lengths[0] > lengths[1]
    x = torch.zeros(2, max(lengths), width)
    mask = torch.zeros(2, max(lengths), dtype=torch.bool)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.from_numpy(s[:, :width].astype(np.float32))
        mask[i, : len(s)] = True
    top.eval()
    with torch.no_grad():
        out = top(x, mask)
    for i, s in enumerate(seqs):  # the shorter clip is padded in the batch: padding changes nothing
        np.testing.assert_allclose(out[i, : lengths[i]].numpy(), s[:, width:].astype(np.float32), atol=2e-2)
    rebuilt = registry().get("encoder", "wav2vec2").build_top(json.loads(json.dumps(spec)))
    assert sorted(rebuilt.state_dict()) == sorted(top.state_dict())


def test_ssl_models_without_trainable_blocks_are_one_clear_line(ssl_models):
    with pytest.raises(ValueError, match="wav2vec2: fine-tuning supports model types .* 'wavlm' is not one") as err:
        ssl_encoder(ssl_models["wavlm"], layers=0, pooling="none").trainable_top()
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="wav2vec2: fine-tuning needs frames of one layer"):
        ssl_encoder(ssl_models["hubert"], layers="all", pooling="none").trainable_top()


def test_ssl_fine_tune_fits_saves_and_reloads(ssl_models, tmp_path):
    signals = [voice(0.5 + 0.05 * i, seed=i) for i in range(16)]
    y = np.array([0, 1] * 8)
    groups = np.repeat([f"s{i}" for i in range(8)], 2)
    enc = ssl_encoder(ssl_models["wav2vec2-group"], layers=1, pooling="none")
    enc.load()
    X = {"w": [enc.select(a) for a in enc.encode_batch(signals)]}
    assert fit_save_reload(enc, X, y, groups, tmp_path, {"epochs": 2})["tops"]["w"]["plugin"] == "wav2vec2"


def test_an_encoder_without_trainable_blocks_is_named_in_one_line():
    cls = registry().get("fusion", "fine-tune")
    head = cls(cls.Options.model_validate({"epochs": 1}))
    lld = registry().get("encoder", "lld")
    head.attach({"d": lld(lld.Options.model_validate({}))})
    with pytest.raises(ValueError, match=r"encoder 'd' \(lld\) cannot be fine-tuned: its plugin offers no "
                                         r"trainable_top") as err:
        head.fit({"d": np.zeros((8, 4), dtype=np.float32)}, np.array([0, 1] * 4), ["a", "b"])
    assert "\n" not in str(err.value)


def test_ssl_top_starts_from_the_stored_weights_when_the_encoder_runs_in_bf16(ssl_models):
    """On a CPU with native bf16 (or on an accelerator in fp16) the encoding copy of the model is cast down; the
    trainable blocks are the stored float32 weights, not those rounded to bf16 and back."""
    import torch

    fp32, _ = ssl_encoder(ssl_models["hubert"], layers=0, pooling="none", precision="fp32").trainable_top()
    bf16_enc = ssl_encoder(ssl_models["hubert"], layers=0, pooling="none", precision="bf16")
    bf16, _ = bf16_enc.trainable_top()
    assert next(bf16_enc.model.parameters()).dtype == torch.bfloat16  # the encoding copy is bf16
    want, got = fp32.state_dict(), bf16.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
