"""int8 dynamic quantization of a bundle's ONNX Whisper graph (onnxruntime.quantization), checked on RAVDESS.

    fusionkit run benchmarks/ravdess/whisper-base.yaml --set data.root=../shared/data/ravdess --out runs/rav-base
    python benchmarks/speed/onnx_int8.py runs/rav-base ../shared/data/ravdess /tmp/int8 \
        > benchmarks/speed/onnx-int8.jsonl

Per fold: export the fold's bundle with its ONNX graphs, quantize a copy of the encoder graph (int8 weights, dynamic
activations), label the fold's test clips (whole files) with both graphs; one JSON line per fold with each graph's
UAR and seconds, the labels they agree on, the largest probability difference, and how many fp32 labels equal the
run's own. The quantized copy is loaded without the manifest check (its graph differs from the exported one).
"""

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic

from fusionkit.metrics import classification_metrics
from fusionkit.onnx import load_onnx

RUN, DATA, WORK = (Path(a) for a in sys.argv[1:4])
WORK.mkdir(parents=True, exist_ok=True)
rows = list(csv.DictReader(open(RUN / "predictions.csv")))
out = sys.stdout


def uar(truth: list[str], labels: list[str], classes: list[str]) -> float:
    """The project's UAR (fusionkit.metrics) of label names."""
    index = {c: i for i, c in enumerate(classes)}
    codes = [np.array([index[c] for c in names]) for names in (truth, labels)]
    return classification_metrics(*codes, len(classes))["uar"]


for fold in range(6):
    b = WORK / f"bundle{fold}"
    if not b.exists():
        command = ["export", str(RUN), str(b), "--fold", str(fold), "--onnx"]
        subprocess.run([sys.executable, "-m", "fusionkit.cli.main", *command], check=True, capture_output=True)
    q = WORK / f"bundle{fold}-int8"
    shutil.rmtree(q, ignore_errors=True)
    shutil.copytree(b, q)
    g = q / "onnx" / "encoder-whisper.onnx"
    quantize_dynamic(str(b / "onnx" / "encoder-whisper.onnx"), str(g), weight_type=QuantType.QInt8)
    test = [r for r in rows if int(r["fold"]) == fold]
    paths = [DATA / f"Actor_{r['speaker'][-2:]}" / f"{r['clip_id']}.flac" for r in test]
    truth = [r["true"] for r in test]
    res = {"fold": fold, "clips": len(test)}
    probs = {}
    for name, bundle, verify in (("fp32", b, True), ("int8", q, False)):
        m = load_onnx(bundle, verify=verify)
        t = time.time()
        preds = [m.predict(p) for p in paths]
        res[f"{name}_s"] = round(time.time() - t, 1)
        res[f"{name}_uar"] = round(uar(truth, [p["label"] for p in preds], m.classes), 4)
        probs[name] = np.array([[p["probabilities"][c] for c in m.classes] for p in preds])
        res[f"{name}_labels"] = [p["label"] for p in preds]
    res["run_uar"] = round(uar(truth, [r["predicted"] for r in test], m.classes), 4)
    res["agree"] = sum(a == b for a, b in zip(res["fp32_labels"], res["int8_labels"]))
    res["max_prob_diff"] = float(np.abs(probs["fp32"] - probs["int8"]).max())
    res["fp32_vs_run_labels"] = sum(a == r["predicted"] for a, r in zip(res["fp32_labels"], test))
    del res["fp32_labels"], res["int8_labels"]
    out.write(json.dumps(res) + "\n")
    out.flush()
