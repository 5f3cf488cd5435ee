"""Whisper encoder as an ONNX graph, and an onnxruntime encoder that stands in for the ``whisper`` plugin.

The graph takes the log-mel of one clip (``mel``: (1, n_mels, frames), frames even, dynamic), ``attend`` (the mel
frames the model sees; the first convolution's outputs past them are zero, as in ``WhisperStates``) and ``pool``
(how many encoder frames are pooled), and returns the ``mean``, ``std`` and ``max`` over those frames of the layers
the bundle selects: (len(layers), D) each. Like the plugin's ``for_prediction``, the graph runs the blocks up to the
deepest selected layer only (layer 4 of Whisper base: 4 of its 6 blocks). The log-mel is computed with numpy (no
torch at run time), equal to ``fusionkit_plugins.whisper_mel.LogMel``; clips over 30 s are cut into 30 s windows and
their statistics merged, as the plugin does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

N_FFT = 400
HOP = 160
SAMPLES_PER_FRAME = 160
WINDOW_SAMPLES = 30 * 16000


# ---------------------------------------------------------------- export (needs torch)


def _graph_module(encoder, layers: list[int]):
    """A torch module running one clip through ``encoder``'s blocks up to the deepest of ``layers`` and pooling
    those layers, in that order (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    class PooledStates(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = encoder

        def forward(self, mel, attend, pool):
            enc = self.enc
            x = F.gelu(enc.conv1(mel))
            width = x.shape[-1]
            x = x * (torch.arange(width)[None, :] < attend).to(x.dtype)[:, None, :]
            x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
            x = x + enc.embed_positions.weight[: x.shape[1]]
            states = [x]
            for i, layer in enumerate(enc.layers[: max(layers)]):
                x = layer(x, None)
                if isinstance(x, tuple):
                    x = x[0]
                states.append(enc.layer_norm(x) if i == len(enc.layers) - 1 else x)
            h = torch.cat([states[k] for k in layers], dim=0)  # (len(layers), T, D)
            valid = (torch.arange(h.shape[1]) < pool).to(h.dtype)[None, :, None]
            n = pool.to(h.dtype)
            mean = (h * valid).sum(dim=1) / n
            var = (((h - mean[:, None, :]) ** 2) * valid).sum(dim=1) / n
            mx = (h - (1.0 - valid) * 1e30).amax(dim=1)
            return mean, var.clamp(min=0).sqrt(), mx

    return PooledStates().eval()


def float32_cpu(plugin):
    """``plugin`` where it computes in float32 on the CPU, else a new instance of it with the same options that does.

    The graph is float32 whatever the machine that exports it: a bundle whose ``precision: auto`` ran in bf16 here
    (a CPU with native bf16) or whose ``device`` is an accelerator is exported from weights loaded anew in float32,
    not from weights cast to bf16 or fp16 and back."""
    if plugin.options.device == "cpu" and plugin.precision() == "fp32":
        return plugin
    return type(plugin)(plugin.options.model_copy(update={"device": "cpu", "precision": "fp32"}))


def export_whisper(plugin, target: Path, opset: int = 17) -> dict:
    """Write a ``whisper`` encoder plugin's encoder (loaded here, on the CPU) to ``target`` (.onnx) and its mel
    filter bank beside it; the entry for ``onnx.json``."""
    import warnings

    import torch
    from safetensors.numpy import save

    from fusionkit.fileio import atomic_write_bytes

    if plugin.options.pooling == "none":
        raise ValueError("pooling none (frame sequences) has no ONNX export; pooled statistics only")
    plugin = float32_cpu(plugin)
    plugin.load()
    runner, mel = getattr(plugin, "_runner", None), getattr(plugin, "_mel", None)
    if runner is None or mel is None or runner.dtype != torch.float32:
        raise ValueError(f"{plugin.name}: the ONNX export needs the plugin's float32 CPU encoder (device: cpu)")
    encoder = runner.encoder.float().eval()
    layers = plugin.layer_indices(len(encoder.layers))
    module = _graph_module(encoder, layers)
    n_mels = int(mel.n_mels)
    dummy = torch.zeros(1, n_mels, 200)
    args = (dummy, torch.tensor(200, dtype=torch.int64), torch.tensor(100, dtype=torch.int64))
    with torch.inference_mode(), warnings.catch_warnings():
        # tracing says transformers' Python tests on tensors (attention's is_causal) become constants: expected, the
        # graph is fixed to this use (tests/test_onnx.py checks its features against the plugin's)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(target), dynamo=False, opset_version=opset,
                          input_names=["mel", "attend", "pool"], output_names=["mean", "std", "max"],
                          dynamic_axes={"mel": {2: "frames"}})
    filters = target.with_suffix(".mel.safetensors")
    atomic_write_bytes(filters, save({"filters": np.ascontiguousarray(mel.filters.numpy(), dtype=np.float32)}))
    return {"graph": target.name, "mel_filters": filters.name, "n_mels": n_mels, "layers": len(encoder.layers) + 1,
            "layers_out": layers}


# ---------------------------------------------------------------- run time (numpy + onnxruntime)


def log_mel(signal: np.ndarray, filters: np.ndarray, pad_samples: int | None = None) -> tuple[np.ndarray, int]:
    """Whisper's log-mel (n_mels, frames) of one 16 kHz signal with numpy, and its frame count."""
    half = N_FFT // 2
    n = max(len(signal), pad_samples or 0, half + 1)
    x = np.zeros(n, dtype=np.float64)
    x[: len(signal)] = signal
    x = np.pad(x, half, mode="reflect")
    frames = n // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann, as torch.hann_window
    power = np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2  # (frames, freq)
    spec = np.log10(np.maximum(filters.astype(np.float64) @ power.T, 1e-10))
    spec = np.maximum(spec, spec.max() - 8.0)
    return ((spec + 4.0) / 4.0).astype(np.float32), frames


class OnnxWhisperEncoder:
    """The ``whisper`` plugin's encoder interface (what ``featurize`` and ``Bundle`` use) on onnxruntime: encoding
    runs the graph; layer selection, pooling and batch size are the plugin's own."""

    def __init__(self, plugin, graph: Path, filters: Path, threads: int | None = None,
                 layers_out: list[int] | None = None, n_layers: int | None = None):
        """``threads``: windows run at once, one onnxruntime thread each (None: FUSIONKIT_THREADS or every CPU).
        ``layers_out``: the layers the graph pools, in order, of ``n_layers`` (None: every layer, the graphs of
        earlier releases)."""
        self.plugin = plugin
        self._layers_out, self._n_layers = layers_out, n_layers
        self.name, self.modality, self.sample_rate = plugin.name, plugin.modality, plugin.sample_rate
        self._graph, self._filters_path, self._threads = graph, filters, threads
        self._session = None
        self._filters = None

    def load(self) -> None:
        if self._session is not None:
            return
        import onnxruntime as ort
        from safetensors.numpy import load_file

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        self._session = ort.InferenceSession(str(self._graph), opts, providers=["CPUExecutionProvider"])
        self._filters = load_file(str(self._filters_path))["filters"]

    def batch_size(self) -> int:
        return self.plugin.batch_size()

    def is_sequence(self) -> bool:
        return False

    def select(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return self.plugin.select(arrays)

    def identity(self) -> dict:
        return self.plugin.identity()

    def _window(self, w: np.ndarray, pad: int | None) -> dict[str, np.ndarray]:
        mel, attend = log_mel(w, self._filters, pad)
        if mel.shape[1] % 2:
            mel = np.pad(mel, ((0, 0), (0, 1)))
        t2 = mel.shape[1] // 2
        pool = min(max(1, (max(1, len(w) // SAMPLES_PER_FRAME) + 1) // 2), t2)
        mean, std, mx = self._session.run(None, {"mel": mel[None], "attend": np.array(attend, dtype=np.int64),
                                                 "pool": np.array(pool, dtype=np.int64)})
        return {"mean": mean, "std": std, "max": mx, "frames": np.array([float(pool)], dtype=np.float32)}

    def encode_batch(self, inputs: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Each input's pooled statistics. The 30 s windows of all inputs run side by side, each on one thread
        (log-mel and graph): on 2 cores, two windows at once on one thread each ran 1.3-1.6x the windows per second
        of one window at a time on two onnxruntime threads, whose threads wait on each other inside every
        product. numpy's BLAS (the log-mel's filter bank product) is held to one thread for the same reason."""
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        from fusionkit.sdk.layers import finish_stats, merge_stats

        self.load()
        o = self.plugin.options
        pad = None if o.pad_to == "own" else int(round(float(o.pad_to) * 100)) * SAMPLES_PER_FRAME
        windows = [(i, x[s:s + WINDOW_SAMPLES]) for i, x in enumerate(inputs)
                   for s in range(0, max(len(x), 1), WINDOW_SAMPLES)]
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(self._workers()) as pool:
            stats = list(pool.map(lambda w: self._window(w[1], pad), windows))
        parts: list[list[dict[str, np.ndarray]]] = [[] for _ in inputs]
        for (i, _), s in zip(windows, stats):
            parts[i].append(s)
        return [self._all_layers(finish_stats(merge_stats(p))) for p in parts]

    def _workers(self) -> int:
        """Windows run at once: ``threads``, else the project's thread count (FUSIONKIT_THREADS or every CPU)."""
        from fusionkit.resources import threads

        return self._threads or threads()

    def _all_layers(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's rows (the selected layers) put back at their layer indices of a zero (L+1, D) array, the
        shape the plugin's ``select`` reads; the layers left out were never computed and are never selected."""
        if self._layers_out is None:
            return arrays
        full = {}
        for key, rows in arrays.items():
            if key == "frames":
                full[key] = rows
                continue
            full[key] = np.zeros((self._n_layers, rows.shape[-1]), dtype=rows.dtype)
            full[key][self._layers_out] = rows
        return full
