"""Devices, threads and model loading for encoder plugins that run a torch model.

* :func:`resolve_device`: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` as a torch device; an
  unavailable one is a :class:`DeviceError` naming the plugin. :data:`DeviceName` checks the
  spelling in an options model, before anything is loaded;
* :func:`half_precision` / :func:`model_dtype`: float16 weights on an accelerator, float32 on the CPU;
* :func:`resolve_precision` / :func:`precision_dtype` / :func:`precision_identity`: the ``precision`` option
  (``auto | fp32 | bf16 | fp16``) of the torch encoders; ``auto`` is bfloat16 on a CPU with native bf16
  (:func:`native_cpu_bf16`: AMX or AVX512-BF16, read from /proc/cpuinfo at run time), float16 on an
  accelerator, float32 otherwise;
* :func:`torch_threads`: torch's intra-op CPU threads set for a block of work, then restored;
  :func:`inference`: that, with gradients off (``torch.inference_mode``), around an encoder's forward passes;
* :func:`pretrained_kwargs`, :func:`load_config`, :func:`load_pretrained`, :func:`for_inference`: a
  transformers config or model from a resolved model reference (:func:`fusionkit.modelref.resolve_model`),
  running code shipped with the model only when ``trust_remote_code`` asks for it, in eval mode.

Gradients are turned off where a model runs (:func:`inference`), not by clearing its parameters'
``requires_grad``: that flag changes how torch splits some matrix products (``matmul`` folds a
batch only for weights that need no gradient), so it would move cached embeddings by an ulp.

torch and transformers are imported inside the functions only, so importing this module (or a
plugin module that imports it) loads neither.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = "cpu, cuda, cuda:N, mps or auto"
Precision = Literal["auto", "fp32", "bf16", "fp16"]
"""The ``precision`` option of the torch encoders (see :func:`resolve_precision`)."""
CPU_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
"""/proc/cpuinfo flags of a CPU that computes bfloat16 natively (Intel AMX, AVX512-BF16 on Intel and AMD)."""
CPUINFO = Path("/proc/cpuinfo")
_DEVICE_NAME = re.compile(r"^(cpu|cuda(:\d+)?|mps|auto)$")


class DeviceError(ValueError, RuntimeError):
    """A device that is misspelt or not available here; the message is one line naming the plugin.

    A ``ValueError`` (a bad option value) that is also a ``RuntimeError``, which the audio encoders raised before.
    """


def check_device_name(name: str) -> str:
    """``name`` when it is one of :data:`DEVICE_CHOICES` (an options validator: no torch needed)."""
    if not _DEVICE_NAME.match(name):
        raise ValueError(f"{name!r} is not a device: use {DEVICE_CHOICES}")
    return name


DeviceName = Annotated[str, AfterValidator(check_device_name)]
"""An option holding a device name, checked when the options are read."""


def _mps_available(torch_module: Any) -> bool:
    mps = getattr(torch_module.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str, plugin: str) -> torch.device:
    """The torch device ``name`` stands for (``auto``: CUDA when available, else the CPU).

    Raises :class:`DeviceError` naming ``plugin`` when the name is not a device or the device is not here.
    """
    import torch

    if not _DEVICE_NAME.match(str(name)):
        raise DeviceError(f"{plugin}: device {name!r} is not a device: use {DEVICE_CHOICES}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{plugin}: device {name!r} requested but torch sees no CUDA device (use device: cpu)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"{plugin}: device {name!r} requested but torch sees {count} CUDA device(s)")
    if device.type == "mps" and not _mps_available(torch):
        raise DeviceError(f"{plugin}: device {name!r} requested but torch sees no MPS device (use device: cpu)")
    return device


def half_precision(device: torch.device) -> bool:
    """The rule of the audio encoders: float16 weights on an accelerator (CUDA, MPS), float32 on the CPU."""
    return device.type != "cpu"


def model_dtype(device: torch.device) -> torch.dtype:
    """``torch.float16`` where :func:`half_precision` holds, else ``torch.float32``."""
    import torch

    return torch.float16 if half_precision(device) else torch.float32


def cpu_flags(path: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags from ``path`` (the first ``flags`` line); empty where it cannot be read (not Linux).

    ``FUSIONKIT_CPU_BF16=0`` hides this machine's bf16 flags, so ``auto`` stays fp32 on any CPU (the test suite sets
    it: its tolerances are those of fp32 on every machine CI may use)."""
    flags = _read_flags(path)
    if path == CPUINFO and os.environ.get("FUSIONKIT_CPU_BF16") == "0":
        flags = flags - CPU_BF16_FLAGS
    return flags


@lru_cache(maxsize=4)
def _read_flags(path: Path) -> frozenset[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def native_cpu_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU (its ``flags``; default: this machine's) computes bfloat16 natively."""
    return bool(CPU_BF16_FLAGS & (cpu_flags() if flags is None else flags))


def device_type(device: Any) -> str:
    """``cpu``, ``cuda``, ``mps``, ... of a torch device or a device name (``cuda:1`` -> ``cuda``; ``auto``: CUDA
    when torch sees one, else ``cpu``, which imports torch)."""
    kind = getattr(device, "type", None)
    kind = str(kind if kind is not None else device).split(":", 1)[0]
    if kind == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return kind


def legacy_precision(device: Any) -> str:
    """What the encoders ran in before the ``precision`` option: fp16 on an accelerator, fp32 on the CPU.

    Cached embeddings of that precision keep their cache key (:func:`precision_identity`).
    """
    return "fp32" if device_type(device) == "cpu" else "fp16"


def resolve_precision(precision: str, device: Any, flags: frozenset[str] | None = None) -> str:
    """``fp32``, ``bf16`` or ``fp16``: ``precision`` with ``auto`` decided for ``device`` (a torch device or name).

    ``auto`` is bf16 on a CPU with native bf16 (:func:`native_cpu_bf16` of ``flags``, default this machine's),
    fp32 on other CPUs, and fp16 on an accelerator (CUDA, MPS), as before the option existed.
    """
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision {precision!r} is not one of auto, fp32, bf16, fp16")
    if precision != "auto":
        return precision
    if device_type(device) != "cpu":
        return "fp16"
    return "bf16" if native_cpu_bf16(flags) else "fp32"


def matmul_attention(precision: str, device: Any, flags: frozenset[str] | None = None) -> bool:
    """Whether a Whisper encoder's attention runs as plain matrix products (transformers' ``eager`` path) rather
    than torch's fused kernel: in bf16 on a CPU with AVX512-BF16 and no AMX (``flags``; default this machine's).

    There torch's fused CPU attention is no faster in bf16 than in fp32, while bf16 matrix products run about
    twice as fast (benchmarks/speed/RESULTS.md); with AMX, in fp32 and on accelerators the fused kernel stays.
    """
    flags = cpu_flags() if flags is None else flags
    return (device_type(device) == "cpu" and resolve_precision(precision, device, flags) == "bf16"
            and "avx512_bf16" in flags and "amx_bf16" not in flags)


def precision_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a resolved precision (``fp32``, ``bf16``, ``fp16``)."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def precision_identity(ident: dict[str, Any], precision: str, device: Any, legacy: str | None = None) -> dict[str, Any]:
    """An encoder's identity (cache key) with its ``precision`` option replaced by what it computes.

    The option's spelling never enters the key; the resolved precision does only where it differs from
    ``legacy``, what the encoder computed in before the option existed (default :func:`legacy_precision`:
    fp32 on the CPU, fp16 on an accelerator), so those embeddings keep their keys and ``auto`` shares them
    wherever it resolves to them.
    """
    ident["options"].pop("precision", None)
    resolved = resolve_precision(precision, device)
    if resolved != (legacy or legacy_precision(device)):
        ident["precision"] = resolved
    return ident


@contextmanager
def inference(threads: int | None = None) -> Iterator[None]:
    """Gradients off (``torch.inference_mode``) and :func:`torch_threads` inside the block."""
    import torch

    with torch_threads(threads), torch.inference_mode():
        yield


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``threads`` inside the block (unchanged for None), restored after."""
    if not threads:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def pretrained_kwargs(trust_remote_code: bool = False, allow_download: bool | None = None) -> dict[str, bool]:
    """Keyword arguments for ``from_pretrained``.

    Code shipped with a model runs only when ``trust_remote_code`` is true; ``allow_download`` False
    keeps transformers to local files (None leaves that to transformers).
    """
    kwargs = {"trust_remote_code": bool(trust_remote_code)}
    if allow_download is not None:
        kwargs["local_files_only"] = not allow_download
    return kwargs


def load_config(ref: str, trust_remote_code: bool = False, allow_download: bool | None = None) -> Any:
    """The transformers config of a resolved model reference (no weights are read)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(ref, **pretrained_kwargs(trust_remote_code, allow_download))


def hidden_layers(ref: str, trust_remote_code: bool = False, allow_download: bool | None = None) -> int:
    """``num_hidden_layers`` of a resolved model reference: read from its config.json where the model is a local
    folder (a run served from the cache then never imports transformers), else through :func:`load_config`."""
    path = Path(ref) / "config.json"
    if path.is_file():
        try:
            return int(json.loads(path.read_text(encoding="utf-8"))["num_hidden_layers"])
        except (ValueError, KeyError, TypeError):
            pass  # an unusual config: let transformers read it
    return int(load_config(ref, trust_remote_code, allow_download).num_hidden_layers)


def load_pretrained(model_class: type | str, ref: str, trust_remote_code: bool = False,
                    allow_download: bool | None = None, **kwargs: Any) -> Any:
    """``model_class.from_pretrained(ref, ...)`` in eval mode (:func:`for_inference`).

    ``model_class`` is a class or the name of one in ``transformers`` (``"AutoModel"``); ``kwargs``
    go to ``from_pretrained`` (e.g. ``config=``).
    """
    if isinstance(model_class, str):
        import transformers

        model_class = getattr(transformers, model_class)
    model = model_class.from_pretrained(ref, **pretrained_kwargs(trust_remote_code, allow_download), **kwargs)
    return for_inference(model)


def for_inference(model: Any, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Any:
    """``model`` moved to ``device`` / cast to ``dtype`` (where given), in eval mode (no dropout).

    Run it inside :func:`inference`, which turns gradients off.
    """
    moves = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
    if moves:
        model = model.to(**moves)
    return model.eval()
