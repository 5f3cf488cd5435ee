"""The ``linear`` fusion head as a small ONNX graph, and a head that runs it with onnxruntime.

Graph: ``features`` (N, width), the encoders' pooled blocks concatenated in the head's encoder order ->
subtract the training means -> multiply by block weight / scale -> ``MatMul`` + bias -> ``Softmax`` ->
``probabilities`` (N, k) over the classes present in training. A two-class model's single logit z becomes the
logits (0, z), whose softmax is (1 - sigmoid(z), sigmoid(z)), as the head computes it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def linear_graph(head):
    """The ``onnx.ModelProto`` of a fitted ``linear`` head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    mean = np.concatenate([s.mean for s in head.scalers])
    gain = np.concatenate([np.full(len(s.mean), w) / s.scale for s, w in zip(head.scalers, head.block_scale)])
    coef, bias = np.asarray(head.coef, dtype=np.float64), np.asarray(head.intercept, dtype=np.float64)
    if coef.shape[0] == 1:
        coef = np.vstack([np.zeros_like(coef), coef])
        bias = np.concatenate([[0.0], bias])
    width, k = len(mean), coef.shape[0]
    inits = [numpy_helper.from_array(np.asarray(a, dtype=np.float32), name)
             for a, name in ((mean, "mean"), (gain, "gain"), (coef.T, "weight"), (bias, "bias"))]
    nodes = [helper.make_node("Sub", ["features", "mean"], ["centred"]),
             helper.make_node("Mul", ["centred", "gain"], ["scaled"]),
             helper.make_node("MatMul", ["scaled", "weight"], ["product"]),
             helper.make_node("Add", ["product", "bias"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(nodes, "fusionkit-linear-head",
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", k])], inits)
    opsets = [helper.make_opsetid("", 17)]
    # the oldest IR version that holds opset 17 (8), not the installed onnx's newest: an onnxruntime older than
    # that onnx package (a deployment machine's) refuses a newer IR version even when it runs every operator
    model = helper.make_model(graph, opset_imports=opsets, producer_name="fusionkit",
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model)
    return model


def export_linear(head, target: Path) -> dict:
    """Write a fitted ``linear`` head's graph to ``target``; the entry for ``onnx.json``."""
    import onnx

    onnx.save(linear_graph(head), str(target))
    return {"graph": target.name, "inputs": list(head.encoders), "widths": [len(s.mean) for s in head.scalers]}


class OnnxLinearHead:
    """What ``Bundle`` uses of a classification head (``predict_proba``), computed by the exported graph; the
    loaded head supplies its encoders, classes and the classes present in training."""

    def __init__(self, head, graph: Path, threads: int | None = None):
        import onnxruntime as ort

        self.head, self.classes = head, head.classes
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])

    def predict_proba(self, X: dict) -> np.ndarray:
        from fusionkit.sdk.heads import check_names, check_width, pooled_blocks

        check_names(X, self.head.encoders)
        blocks = pooled_blocks(X, self.head.encoders)
        for name, block, scaler in zip(self.head.encoders, blocks, self.head.scalers):
            check_width(name, block, len(scaler.mean))
        features = np.concatenate(blocks, axis=1).astype(np.float32)
        out = np.zeros((len(features), len(self.classes)))
        if len(self.head.present) > 1:
            out[:, self.head.present] = self._session.run(None, {"features": features})[0]
        else:
            out[:, self.head.present] = 1.0
        return out
