"""ONNX export of a bundle (tiny Whisper + linear head) and the onnxruntime path: same probabilities as torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from fusionkit.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("transformers")

from whisper_fixtures import tiny_whisper, voice  # noqa: E402

RECIPE = """
name: tiny-onnx
data: {{dataset: synthetic, options: {{speakers: 4, clips_per_class: 2}}}}
encoders:
  - {{plugin: whisper, name: tw, options: {{model: {model}, layers: [1, 2], pooling: mean+std}}}}
  - {{plugin: lld}}
fusion: {{plugin: linear}}
split: {{kind: speaker-kfold, folds: 2}}
cache: {{dir: {cache}}}
"""


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("onnx")
    model = tiny_whisper(root / "tiny-whisper")
    (root / "recipe.yaml").write_text(RECIPE.format(model=model, cache=root / "cache"))
    runner = CliRunner()
    r = runner.invoke(main, ["run", str(root / "recipe.yaml"), "--out", str(root / "run")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(root / "run"), str(root / "bundle"), "--onnx"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "ONNX" in r.output
    return root / "bundle"


def _clips(tmp: Path) -> list[Path]:
    paths = []
    for i, (sec, sr) in enumerate([(1.2, 16000), (2.7, 44100), (0.4, 22050), (3.3, 16000)]):
        p = tmp / f"clip{i}.wav"
        sf.write(p, voice(sec, seed=i, sr=sr), sr)
        paths.append(p)
    return paths


def test_export_lists_graphs_in_manifest(onnx_bundle):
    import stat

    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (onnx_bundle / "onnx").iterdir()}
    assert len(set(modes.values())) == 1, modes  # every graph file readable as the bundle's other files are
    manifest = json.loads((onnx_bundle / "manifest.json").read_text())
    index = json.loads((onnx_bundle / "onnx" / "onnx.json").read_text())
    assert set(index["encoders"]) == {"tw"} and index["head"]["plugin"] == "linear"
    assert "encoder lld" in index["skipped"]
    graphs = [f for f in manifest["files"] if f.startswith("onnx/")]
    assert {"onnx/onnx.json", "onnx/head-linear.onnx"} <= set(graphs) and len(graphs) == 4


def test_graphs_carry_the_oldest_ir_version_their_opset_allows(onnx_bundle):
    """A deployment machine's onnxruntime may be older than the onnx package that wrote the graphs: it refuses an
    IR version newer than it knows, even when it runs every operator (onnxruntime 1.30 and onnx 1.23 did)."""
    import onnx

    for graph in (onnx_bundle / "onnx").glob("*.onnx"):
        model = onnx.load(str(graph), load_external_data=False)
        assert model.ir_version <= 8, (graph.name, model.ir_version)


def test_onnx_probabilities_match_torch(onnx_bundle, tmp_path):
    import fusionkit
    from fusionkit.onnx import load_onnx

    torch_bundle, onnx_bundle_ = fusionkit.load(onnx_bundle), load_onnx(onnx_bundle)
    for path in _clips(tmp_path):
        a, b = torch_bundle.predict(path), onnx_bundle_.predict(path)
        assert a["label"] == b["label"]
        diff = max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in torch_bundle.classes)
        assert diff < 1e-3, (path, diff)
    ta = torch_bundle.predict(path, window=1.0, hop=0.5)
    tb = onnx_bundle_.predict(path, window=1.0, hop=0.5)
    assert [s.start for s in ta] == [s.start for s in tb]
    assert np.allclose([list(s.probabilities.values()) for s in ta],
                       [list(s.probabilities.values()) for s in tb], atol=1e-3)


def test_the_graph_runs_only_up_to_the_deepest_selected_layer(onnx_bundle):
    import onnx
    import onnxruntime as ort
    from safetensors.numpy import load_file

    from fusionkit.onnx.whisper import log_mel

    entry = json.loads((onnx_bundle / "onnx" / "onnx.json").read_text())["encoders"]["tw"]
    assert entry["layers_out"] == [1, 2] and entry["layers"] == 4  # the tiny model: layers 0-3 (3 blocks)
    graph = onnx_bundle / "onnx" / entry["graph"]
    ops = [n.op_type for n in onnx.load(str(graph)).graph.node]
    assert ops.count("Softmax") == 2  # one attention per block run: 2 of the tiny model's 3
    mel, frames = log_mel(voice(1.0, seed=0), load_file(str(graph.with_suffix(".mel.safetensors")))["filters"])
    mel = mel[:, : frames - frames % 2]
    out = ort.InferenceSession(str(graph)).run(None, {"mel": mel[None], "attend": np.array(mel.shape[1]),
                                                      "pool": np.array(mel.shape[1] // 2)})
    assert [o.shape[0] for o in out] == [2, 2, 2]


def test_windows_run_side_by_side_and_come_back_in_order(onnx_bundle):
    from fusionkit.onnx import load_onnx

    inputs = [voice(31.0, seed=1), voice(0.7, seed=2), voice(2.0, seed=3)]  # the first is two 30 s windows
    serial = load_onnx(onnx_bundle, threads=1).encoders["tw"]
    one_by_one = [serial.encode_batch([x])[0] for x in inputs]
    together = load_onnx(onnx_bundle, threads=3).encoders["tw"].encode_batch(inputs)
    assert len(together) == 3
    for a, b in zip(one_by_one, together):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert not np.allclose(together[0]["mean"], together[2]["mean"])


def test_onnx_runtime_loads_no_torch(onnx_bundle, tmp_path):
    clip = _clips(tmp_path)[0]
    code = ("import sys, json; from fusionkit.onnx import load_onnx; "
            f"r = load_onnx({str(onnx_bundle)!r}).predict({str(clip)!r}); "
            "print(json.dumps({'torch': 'torch' in sys.modules, 'label': r['label']}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["torch"] is False and got["label"]


def test_predict_cli_runtime_onnx(onnx_bundle, tmp_path):
    clip = _clips(tmp_path)[1]
    runner = CliRunner()
    a = runner.invoke(main, ["predict", str(onnx_bundle), str(clip), "--format", "json"])
    b = runner.invoke(main, ["predict", str(onnx_bundle), str(clip), "--format", "json", "--runtime", "onnx"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    pa, pb = json.loads(a.stdout)[0]["probabilities"], json.loads(b.stdout)[0]["probabilities"]
    assert max(abs(pa[c] - pb[c]) for c in pa) < 1e-3


def test_tampered_graph_is_refused(onnx_bundle, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(onnx_bundle, copy)
    graph = copy / "onnx" / "head-linear.onnx"
    graph.write_bytes(graph.read_bytes()[:-8] + b"\0" * 8)
    r = CliRunner().invoke(main, ["predict", str(copy), str(_clips(tmp_path)[0]), "--runtime", "onnx"])
    assert r.exit_code == 2 and "changed since export" in r.output and "head-linear.onnx" in r.output


def test_exporting_the_graphs_again_writes_the_same_files(onnx_bundle, tmp_path):
    import shutil

    from fusionkit.onnx.export import export_onnx

    copy = tmp_path / "bundle"
    shutil.copytree(onnx_bundle, copy)
    export_onnx(copy)
    before, after = (json.loads((b / "manifest.json").read_text()) for b in (onnx_bundle, copy))
    assert after["files"] == before["files"] and after["content_hash"] == before["content_hash"]


def test_the_export_shows_no_tracer_warning(onnx_bundle, tmp_path):
    """Tracing warns that transformers' Python tests on tensors become constants; expected, so not shown to users.
    The filter ends with the export."""
    import shutil
    import warnings

    import torch

    from fusionkit.onnx.export import export_onnx

    copy = tmp_path / "bundle"
    shutil.copytree(onnx_bundle, copy)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        export_onnx(copy)
        warnings.warn("still shown", UserWarning, stacklevel=1)
    assert not [w for w in seen if issubclass(w.category, torch.jit.TracerWarning)]
    assert [str(w.message) for w in seen if w.category is UserWarning] == ["still shown"]


def test_runtime_onnx_without_graphs_is_one_line(tmp_path):
    from fusionkit.bundle import BundleError
    from fusionkit.onnx.runtime import onnx_index

    with pytest.raises(BundleError, match="holds no ONNX graphs"):
        onnx_index(tmp_path)


def test_an_encoder_running_in_bf16_exports_a_float32_graph(tmp_path):
    """On a CPU with native bf16, ``precision: auto`` loads Whisper in bf16; the export loads it anew in float32, so
    the graph gives the float32 plugin's features, not those of weights cast to bf16 and back."""
    from fusionkit.onnx.whisper import OnnxWhisperEncoder, export_whisper
    from fusionkit.recipe import plugin_options

    model = tiny_whisper(tmp_path / "tiny-whisper")

    def plugin(precision: str):
        cls, options = plugin_options("encoder", "whisper", {"model": str(model), "layers": [1, 2],
                                                              "pooling": "mean+std", "precision": precision})
        return cls(options)

    bf16 = plugin("bf16")
    entry = export_whisper(bf16, tmp_path / "tw.onnx")
    assert bf16._runner is None  # the bf16 plugin itself was never loaded for the export
    graph = OnnxWhisperEncoder(plugin("fp32"), tmp_path / entry["graph"], tmp_path / entry["mel_filters"], threads=1,
                               layers_out=entry["layers_out"], n_layers=entry["layers"])
    fp32 = plugin("fp32")
    x = voice(1.3, seed=3)
    want = fp32.select(fp32.encode_batch([x])[0])
    got = graph.select(graph.encode_batch([x])[0])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_export_onnx_prints_the_final_hash_and_a_failed_one_leaves_no_bundle(onnx_bundle, tmp_path):
    """The content hash printed is the bundle's (after the graphs were listed), which users compare with a
    publisher's; an export whose ONNX step fails removes the bundle it wrote instead of leaving one that looks done."""
    from core_fixtures import small_recipe, write_recipe

    runner = CliRunner()
    r = runner.invoke(main, ["export", str(onnx_bundle.parent / "run"), str(tmp_path / "again"), "--onnx"])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert f"content hash {manifest['content_hash'][:12]}" in r.output
    recipe = write_recipe(tmp_path / "lld.yaml", {**small_recipe(), "cache": {"dir": str(tmp_path / "cache")}})
    assert runner.invoke(main, ["run", str(recipe), "--out", str(tmp_path / "run")]).exit_code == 0
    failed = runner.invoke(main, ["export", str(tmp_path / "run"), str(tmp_path / "plain"), "--onnx"])
    assert failed.exit_code == 2 and "nothing to export to ONNX" in failed.stderr
    assert not (tmp_path / "plain").exists()
