"""Serving benchmark: a bounded HTTP load test of ``fusionkit serve`` and ONNX against torch on RAVDESS clips.

    python benchmarks/serve/serve_bench.py BUNDLE /path/to/ravdess [--clients 8] [--seconds 60] [--clips 100]

BUNDLE is a Whisper bundle exported with ``--onnx``. Part 1 starts ``fusionkit serve BUNDLE`` on a free loopback
port, then ``--clients`` threads POST RAVDESS clips for ``--seconds`` seconds: requests/s, p50/p95 latency,
failed requests, server RSS at start and end. Part 2 labels ``--clips`` clips with the torch and the onnx runtime:
the largest probability difference and clips/s of each. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_test(bundle: Path, clips: list[Path], clients: int, seconds: float, runtime: str) -> dict:
    import httpx

    port = free_port()
    cmd = [str(Path(sys.executable).parent / "fusionkit"), "serve", str(bundle), "--port", str(port),
           "--runtime", runtime]
    log = tempfile.TemporaryFile("w+")
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            log.seek(0)
            raise SystemExit(f"server did not start: {log.read()[-2000:]}")
        datas = [p.read_bytes() for p in clips]
        rss_start = rss_mb(server.pid)
        latencies: list[float] = []
        failed = [0]
        lock = threading.Lock()
        stop = time.perf_counter() + seconds

        def client(k: int) -> None:
            with httpx.Client(base_url=url, timeout=120) as c:
                i = k
                while time.perf_counter() < stop:
                    t = time.perf_counter()
                    try:
                        ok = c.post("/predict", content=datas[i % len(datas)],
                                    headers={"content-type": "application/octet-stream"}).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    with lock:
                        latencies.append(time.perf_counter() - t)
                        failed[0] += not ok
                    i += clients

        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - start
        health = httpx.get(f"{url}/health").json()
        rss_end = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    lat = np.array(latencies) * 1000
    return {"runtime": runtime, "requests": len(lat), "rps": len(lat) / wall, "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95)), "failed": failed[0], "rss_start": rss_start, "rss_end": rss_end,
            "largest_batch": health["batching"]["largest_batch"],
            "mean_batch": health["batching"]["requests"] / max(1, health["batching"]["batches"])}


def onnx_vs_torch(bundle: Path, clips: list[Path]) -> list[dict]:
    from fusionkit.bundle import Bundle
    from fusionkit.onnx import load_onnx

    rows, probs = [], {}
    for runtime, loader in (("torch", Bundle.load), ("onnx", load_onnx)):
        model = loader(bundle)
        model.predict(clips[0])  # warm-up
        t = time.perf_counter()
        probs[runtime] = [model.predict(p) for p in clips]
        rows.append({"runtime": runtime, "clips_per_s": len(clips) / (time.perf_counter() - t)})
    diffs = [max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in a["probabilities"])
             for a, b in zip(probs["torch"], probs["onnx"])]
    agree = np.mean([a["label"] == b["label"] for a, b in zip(probs["torch"], probs["onnx"])])
    for row in rows:
        row.update(max_diff=max(diffs), label_agreement=float(agree))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("ravdess", type=Path)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clips", type=int, default=100)
    ap.add_argument("--runtime", choices=["torch", "onnx"], default="torch", help="runtime of the load test")
    args = ap.parse_args()
    wavs = sorted(p for p in args.ravdess.rglob("*") if p.suffix.lower() in (".wav", ".flac"))
    if not wavs:
        raise SystemExit(f"{args.ravdess}: no .wav or .flac files")
    rng = np.random.default_rng(0)
    clips = [wavs[i] for i in sorted(rng.choice(len(wavs), size=min(args.clips, len(wavs)), replace=False))]
    r = load_test(args.bundle, clips, args.clients, args.seconds, args.runtime)
    print(f"## Load test ({args.clients} clients, {args.seconds:g} s, {len(clips)} RAVDESS clips, "
          f"--runtime {r['runtime']})\n")
    print("| requests | requests/s | p50 ms | p95 ms | failed | mean batch | largest batch | RSS start MiB "
          "| RSS end MiB |\n|---|---|---|---|---|---|---|---|---|")
    print(f"| {r['requests']} | {r['rps']:.2f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['failed']} | "
          f"{r['mean_batch']:.2f} | {r['largest_batch']} | {r['rss_start']:.0f} | {r['rss_end']:.0f} |\n")
    rows = onnx_vs_torch(args.bundle, clips)
    print(f"## ONNX vs torch ({len(clips)} RAVDESS clips, whole files, one at a time)\n")
    print("| runtime | clips/s | max probability difference | same label |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['runtime']} | {row['clips_per_s']:.2f} | {row['max_diff']:.2e} | "
              f"{row['label_agreement']:.0%} |")


if __name__ == "__main__":
    main()
