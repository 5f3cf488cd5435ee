"""``fusionkit serve``: a tiny bundle served by uvicorn on a free loopback port; good, bad, oversized and
concurrent requests."""

from __future__ import annotations

import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from fusionkit.cli import main

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

RECIPE = """
name: tiny-serve
data: {dataset: synthetic, options: {speakers: 4, clips_per_class: 2}}
encoders: [{plugin: lld}]
fusion: {plugin: linear}
split: {kind: speaker-kfold, folds: 2}
"""


def _wav(seconds: float, sr: int = 16000, seed: int = 0, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (150 + 40 * seed) * t) + 0.01 * rng.standard_normal(len(t))
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import uvicorn

    from fusionkit.bundle import Bundle
    from fusionkit.serve import Limits, create_app
    from fusionkit.serve.app import health_info

    root = tmp_path_factory.mktemp("serve")
    (root / "recipe.yaml").write_text(RECIPE)
    runner = CliRunner()
    r = runner.invoke(main, ["run", str(root / "recipe.yaml"), "--out", str(root / "run")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["export", str(root / "run"), str(root / "bundle")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    bundle = Bundle.load(root / "bundle")
    app = create_app(bundle, health_info(bundle, "torch"), Limits(max_bytes=400_000, max_seconds=8.0),
                     max_batch=8, max_wait_ms=50)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client, bundle, root / "bundle"
    server.should_exit = True
    thread.join(timeout=10)


def test_health_names_bundle_encoders_and_digests(served):
    client, bundle, path = served
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["bundle"] == str(path) and h["runtime"] == "torch"
    assert [e["name"] for e in h["encoders"]] == ["lld"] and len(h["content_hash"]) == 64
    assert h["classes"] == bundle.classes and h["limits"]["max_seconds"] == 8.0
    assert client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert client.get("/docs").status_code == 200


def test_multipart_and_raw_body_match_the_bundle(served, tmp_path):
    client, bundle, _ = served
    data = _wav(1.5, sr=22050, seed=1)
    (tmp_path / "a.wav").write_bytes(data)
    want = bundle.predict(tmp_path / "a.wav")
    a = client.post("/predict", files={"file": ("a.wav", data, "audio/wav")})
    b = client.post("/predict", content=data, headers={"content-type": "application/octet-stream"})
    assert a.status_code == 200 and b.status_code == 200, a.text + b.text
    for got in (a.json(), b.json()):
        assert got["label"] == want["label"]
        assert all(abs(got["probabilities"][c] - want["probabilities"][c]) < 1e-9 for c in bundle.classes)
        assert abs(sum(got["probabilities"].values()) - 1.0) < 1e-6


def test_silent_upload_is_labelled_with_a_warning(served):
    client, _, _ = served
    buf = io.BytesIO()
    sf.write(buf, np.zeros(16000, dtype=np.float32), 16000, format="WAV")
    silent = client.post("/predict", content=buf.getvalue(), headers={"content-type": "audio/wav"})
    assert silent.status_code == 200, silent.text
    assert silent.json()["warning"] == "silent (every sample is 0)" and silent.json()["label"]
    speech = client.post("/predict", content=_wav(1.0), headers={"content-type": "audio/wav"})
    assert "warning" not in speech.json()


def test_flac_upload_and_timeline(served):
    client, _, _ = served
    r = client.post("/predict", params={"window": 1.0, "hop": 0.5, "smooth": 2},
                    files={"file": ("b.flac", _wav(3.0, fmt="FLAC", seed=2), "audio/flac")})
    assert r.status_code == 200, r.text
    timeline = r.json()["timeline"]
    assert [s["start"] for s in timeline] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert all(s["label"] in s["probabilities"] for s in timeline)


def test_timeline_covers_the_end_of_the_upload(served):
    """2.3 s in 1 s windows: the last window is 1.3-2.3 s (a full window ending at the end), as predict gives."""
    client, _, _ = served
    r = client.post("/predict", params={"window": 1.0}, content=_wav(2.3, seed=3),
                    headers={"content-type": "audio/wav"})
    assert r.status_code == 200, r.text
    assert [(s["start"], s["end"]) for s in r.json()["timeline"]] == [(0.0, 1.0), (1.0, 2.0), (1.3, 2.3)]


@pytest.mark.parametrize("kwargs, status, words", [
    (dict(content=b"", headers={"content-type": "audio/wav"}), 400, "empty upload"),
    (dict(content=b"hello, this is not audio at all" * 10, headers={"content-type": "application/octet-stream"}),
     415, "unsupported audio format"),
    (dict(content=b'{"a": 1}', headers={"content-type": "application/json"}), 415, "unsupported media type"),
    (dict(content=b"RIFF\x10\x00\x00\x00WAVEfmt garbage", headers={"content-type": "audio/wav"}), 422,
     "unreadable audio"),
    (dict(files={"other": ("a.wav", b"x", "audio/wav")}), 400, "no file field named 'file'"),
    (dict(content=b"\0" * 500_000, headers={"content-type": "audio/wav"}), 413, "upload too large"),
    (dict(params={"window": -1}, content=b"x", headers={"content-type": "audio/wav"}), 422, "window"),
    (dict(params={"window": "abc"}, content=b"x", headers={"content-type": "audio/wav"}), 422, "window"),
    (dict(params={"smooth": 3}, content=b"x", headers={"content-type": "audio/wav"}), 422, "smooth 3: only with"),
    (dict(params={"hop": 1}, content=b"x", headers={"content-type": "audio/wav"}), 422, "hop 1.0: only with window"),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(served, kwargs, status, words):
    client, _, _ = served
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["error"] and "Traceback" not in r.text
    assert client.post("/predict", content=_wav(1.0), headers={"content-type": "audio/wav"}).status_code == 200


WAV = {"content": _wav(1.0), "headers": {"content-type": "audio/wav"}}


@pytest.mark.parametrize("kwargs, status, words", [
    (dict(files=[("file", ("a.wav", _wav(1.0), "audio/wav")), ("file", ("b.wav", _wav(1.0, seed=1), "audio/wav"))]),
     400, "multipart body has 2 'file' parts: send one file per request"),
    (dict(files={"file": ("a.wav", _wav(1.0), "audio/wav")}, data={"window": "1"}), 400,
     "multipart field window: not read"),
    (dict(params={"windw": 1}, **WAV), 422, "unknown query parameter windw: /predict takes window, hop, smooth"),
    (dict(params={"vad": "true", "enrol": "x"}, **WAV), 422, "unknown query parameters enrol, vad:"),
    (dict(params=[("window", 1), ("window", 2)], **WAV), 422, "query parameter window given more than once"),
])
def test_parts_of_a_request_the_server_would_not_read_are_refused(served, kwargs, status, words):
    """Audio it could label, with something beside it that would be dropped: refused, naming what."""
    client, _, _ = served
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["error"], r.text


def test_too_long_and_too_short_audio(served):
    client, _, _ = served
    r = client.post("/predict", content=_wav(10.0, sr=8000, subtype="PCM_16"), headers={"content-type": "audio/wav"})
    assert r.status_code == 413 and "too long" in r.json()["error"] and "8 s" in r.json()["error"]
    truncated = _wav(1.0)[:-4000]
    r = client.post("/predict", content=truncated, headers={"content-type": "audio/wav"})
    assert r.status_code == 422 and "truncated" in r.json()["error"]


def test_concurrent_requests_are_batched(served):
    client, bundle, _ = served
    before = client.get("/health").json()["batching"]
    clips = [_wav(1.0 + 0.1 * i, seed=i) for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda d: client.post("/predict", content=d, headers={"content-type": "audio/wav"}),
                                clips))
    assert [a.status_code for a in answers] == [200] * 12
    after = client.get("/health").json()["batching"]
    assert after["requests"] - before["requests"] == 12
    assert after["batches"] - before["batches"] < 12 and after["largest_batch"] > 1


def test_internal_error_is_json_without_traceback(served, monkeypatch):
    client, bundle, _ = served

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(bundle, "predict", broken)
    r = client.post("/predict", params={"window": 1.0}, content=_wav(2.0), headers={"content-type": "audio/wav"})
    assert r.status_code == 500 and "internal error" in r.json()["error"]
    assert "secret" not in r.text and "Traceback" not in r.text
    monkeypatch.undo()
    assert client.get("/health").status_code == 200


def test_serve_cli_refuses_a_missing_onnx_export(served):
    _, _, path = served
    r = CliRunner().invoke(main, ["serve", str(path), "--runtime", "onnx", "--port", "0"])
    assert r.exit_code == 2 and "holds no ONNX graphs" in r.output


@pytest.mark.parametrize("args, words", [
    (["--device", "cuda:7"], "requested but torch sees"),
    (["--device", "tpu"], "'tpu' is not a device"),
    (["--runtime", "onnx", "--device", "cuda"], "the onnx runtime runs on the CPU"),
])
def test_serve_cli_refuses_a_device_it_cannot_use(served, args, words):
    _, _, path = served
    r = CliRunner().invoke(main, ["serve", str(path), "--port", "0", *args])
    assert r.exit_code == 2 and words in r.output, r.output


def test_serve_enrol_folders_are_expanded_as_predict_expands_them(tmp_path, capsys):
    """Hidden files (macOS ._ files) and non-audio names under an --enrol folder are listed, not read."""
    from fusionkit.cli.serve import _audio_files

    (tmp_path / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "._a.wav").write_bytes(b"\0")
    (tmp_path / "notes.txt").write_text("x")
    assert _audio_files([tmp_path]) == [str(tmp_path / "a.wav")]
    err = capsys.readouterr().err
    assert f"warning: enrolment: {tmp_path / '._a.wav'} passed over: hidden" in err
    assert f"warning: enrolment: {tmp_path / 'notes.txt'} passed over: not an audio file name (.txt)" in err
