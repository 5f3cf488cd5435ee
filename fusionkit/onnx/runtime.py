"""``--runtime onnx``: a :class:`~fusionkit.bundle.Bundle` whose exported parts run on onnxruntime.

Encoders and the head that ``fusionkit export --onnx`` wrote graphs for run those graphs; any other encoder runs
with its plugin as usual. Everything else (decoding, windows, batching, enrolment, results) is the Bundle's own.
"""

from __future__ import annotations

import json
from pathlib import Path

from fusionkit.onnx.export import ONNX_FORMAT, ONNX_INDEX


def onnx_index(root: Path) -> dict:
    """The bundle's ``onnx/onnx.json``; :class:`~fusionkit.bundle.BundleError` when it has none or it is not one."""
    from fusionkit.bundle import BundleError

    path = root / ONNX_INDEX
    if not path.is_file():
        raise BundleError(f"{root}: holds no ONNX graphs; write them with fusionkit export RUN BUNDLE --onnx")
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != ONNX_FORMAT or not isinstance(index.get("encoders"), dict):
        raise BundleError(f"{path}: not an ONNX index of format {ONNX_FORMAT}")
    return index


def load_onnx(path: str | Path, verify: bool = True, trust_remote_code: bool = False, threads: int | None = None):
    """Load a bundle with its ONNX graphs (same checks as :meth:`Bundle.load`: manifest, hashes, model folders
    inside the bundle, remote code only when allowed); encoders without a graph are loaded with their plugin.
    ``threads``: how many windows a Whisper graph runs at once, one thread each (None: FUSIONKIT_THREADS or
    every CPU), and the head graph's threads."""
    from fusionkit.bundle import Bundle, BundleError
    from fusionkit.bundle.files import check_identities
    from fusionkit.onnx.linear import OnnxLinearHead
    from fusionkit.onnx.whisper import OnnxWhisperEncoder

    root = Path(path)
    recipe, head, outputs, encoders = Bundle.read_parts(root, verify, trust_remote_code)
    index = onnx_index(root)
    if index.get("head"):
        head = OnnxLinearHead(head, _graph(root, index["head"]["graph"]), threads)
    plugins = {n: e for n, e in encoders.items() if n not in index["encoders"]}
    check_identities(root, plugins)
    for name, entry in index["encoders"].items():
        if name not in encoders:
            raise BundleError(f"{root / ONNX_INDEX}: encoder {name} is not one of the bundle's")
        encoders[name] = OnnxWhisperEncoder(encoders[name], _graph(root, entry["graph"]),
                                            _graph(root, entry["mel_filters"]), threads, *_layers_out(root, entry))
    return Bundle.assemble(root, recipe, encoders, head, outputs)


def _layers_out(root: Path, entry: dict) -> tuple[list[int] | None, int | None]:
    """(the layers an encoder graph pools, the encoder's layer count) from its index entry; (None, None) for graphs
    that pool every layer (written before ``layers_out`` existed)."""
    from fusionkit.bundle import BundleError

    if "layers_out" not in entry:
        return None, None
    rows, total = entry.get("layers_out"), entry.get("layers")
    if (not isinstance(total, int) or not isinstance(rows, list) or not rows
            or not all(isinstance(k, int) and 0 <= k < total for k in rows)):
        raise BundleError(f"{root / ONNX_INDEX}: layers_out {rows!r} is not a list of layer indices below {total!r}")
    return rows, total


def _graph(root: Path, name: str) -> Path:
    """A file named in the ONNX index: a plain name inside ``onnx/``."""
    from fusionkit.bundle import BundleError

    if not isinstance(name, str) or Path(name).name != name or not (root / "onnx" / name).is_file():
        raise BundleError(f"{root / ONNX_INDEX}: {name!r} is not a file in the bundle's onnx/ folder")
    return root / "onnx" / name
