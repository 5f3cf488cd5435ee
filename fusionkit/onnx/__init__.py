"""ONNX graphs of a bundle (``fusionkit export --onnx``) and a Bundle that runs them on onnxruntime
(``--runtime onnx``): the Whisper encoder (log-mel in, pooled layer statistics out) and the linear head."""

from fusionkit.onnx.export import export_onnx
from fusionkit.onnx.runtime import load_onnx

__all__ = ["export_onnx", "load_onnx"]
