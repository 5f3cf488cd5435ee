"""Read a CTranslate2 (faster-whisper) ``model.bin`` and turn its encoder into a transformers ``WhisperEncoder``.

Layout of ``model.bin`` (little endian; see ctranslate2 ``specs/model_spec.py`` ``_serialize``)::

    uint32 binary version
    string spec name        (uint16 length incl. NUL, bytes, NUL)
    uint32 spec revision
    uint32 n variables, then per variable:
        string name, uint8 rank, uint32 dims[rank], uint8 dtype id, uint32 n bytes, raw bytes
    uint32 n aliases (version >= 3), then per alias: string alias, string target

Only ``encoder/*`` variables are materialised; the decoder's bytes are skipped.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

# order of the DataType enum in ctranslate2's include/ctranslate2/types.h
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_NUMPY = {"float32": np.float32, "int8": np.int8, "int16": np.int16, "int32": np.int32,
          "float16": np.float16, "bfloat16": np.uint16}
_LAYER_NAME = re.compile(r"^encoder/layer_(\d+)/")
MIN_VERSION = 4  # dtype id + byte count per variable (every Whisper conversion is >= 5)


class CT2FormatError(Exception):
    """A model.bin that cannot be read; the message names the file and the reason."""


@dataclass
class CT2Model:
    version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    names: list[str]


def _read(fh: BinaryIO, fmt: str, path: Path):
    size = struct.calcsize(fmt)
    data = fh.read(size)
    if len(data) != size:
        raise CT2FormatError(f"{path}: truncated (unexpected end of file)")
    return struct.unpack("<" + fmt, data)


def _string(fh: BinaryIO, path: Path) -> str:
    (n,) = _read(fh, "H", path)
    raw = fh.read(n)
    if len(raw) != n:
        raise CT2FormatError(f"{path}: truncated (unexpected end of file)")
    return raw.rstrip(b"\0").decode("utf-8")


def read_model_bin(path: str | Path, prefix: str = "encoder/") -> CT2Model:
    """Variables whose name starts with ``prefix`` (aliases resolved), as numpy arrays in their stored dtype.

    The table is indexed first (names, shapes, offsets); only the wanted variables'
    bytes are read, including alias targets outside ``prefix`` (ctranslate2 stores a
    variable equal to an earlier one, e.g. all-zero biases, as an alias of it).
    """
    path = Path(path)
    if not path.is_file():
        raise CT2FormatError(f"{path}: no such file")
    index: dict[str, tuple[tuple[int, ...], str, int, int]] = {}  # name -> (shape, dtype, offset, nbytes)
    aliases: dict[str, str] = {}
    with open(path, "rb") as fh:
        (version,) = _read(fh, "I", path)
        if version < MIN_VERSION or version > 64:
            raise CT2FormatError(f"{path}: unsupported CTranslate2 binary version {version} (need >= {MIN_VERSION})")
        spec = _string(fh, path)
        (revision,) = _read(fh, "I", path)
        (count,) = _read(fh, "I", path)
        for _ in range(count):
            name = _string(fh, path)
            (rank,) = _read(fh, "B", path)
            shape = tuple(_read(fh, f"{rank}I", path)) if rank else ()
            (type_id,) = _read(fh, "B", path)
            (nbytes,) = _read(fh, "I", path)
            if type_id >= len(DTYPES):
                raise CT2FormatError(f"{path}: variable {name} has unknown dtype id {type_id}")
            index[name] = (shape, DTYPES[type_id], fh.tell(), nbytes)
            fh.seek(nbytes, 1)
        (n_alias,) = _read(fh, "I", path)
        for _ in range(n_alias):
            alias, target = _string(fh, path), _string(fh, path)
            aliases[alias] = target
        wanted = {n: n for n in index if n.startswith(prefix)}
        for alias in aliases:
            if alias.startswith(prefix):
                target = alias
                for _ in range(len(aliases) + 1):  # follow alias chains
                    if target not in aliases:
                        break
                    target = aliases[target]
                if target not in index:
                    raise CT2FormatError(f"{path}: alias {alias} points to missing variable {target}")
                wanted[alias] = target
        loaded: dict[str, np.ndarray] = {}
        variables: dict[str, np.ndarray] = {}
        for name, target in wanted.items():
            if target not in loaded:
                loaded[target] = _load(fh, path, target, *index[target])
            variables[name] = loaded[target]
    return CT2Model(version, spec, revision, variables, [*index, *aliases])


def _load(
    fh: BinaryIO, path: Path, name: str, shape: tuple[int, ...], dtype: str, offset: int, nbytes: int
) -> np.ndarray:
    fh.seek(offset)
    raw = fh.read(nbytes)
    if len(raw) != nbytes:
        raise CT2FormatError(f"{path}: truncated inside variable {name}")
    arr = np.frombuffer(raw, dtype=np.dtype(_NUMPY[dtype]).newbyteorder("<"))
    if arr.size != int(np.prod(shape, dtype=np.int64)):
        raise CT2FormatError(f"{path}: variable {name} holds {arr.size} values for shape {shape}")
    arr = arr.reshape(shape)
    if dtype == "bfloat16":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


# ---------------------------------------------------------------- to transformers


def _float(v: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A weight as float32; int8/int16 weights are dequantized with their ``<name>_scale``."""
    w = v[name]
    if w.dtype in (np.int8, np.int16):
        scale_name = name + "_scale"
        if scale_name not in v:
            raise CT2FormatError(f"quantized variable {name} has no {scale_name}")
        scale = v[scale_name].astype(np.float32)
        w32 = w.astype(np.float32)
        # per output row scale (Linear: (out,), Conv1D: (out,)): weight = q / scale
        scale = scale.reshape(scale.shape + (1,) * (w32.ndim - scale.ndim)) if scale.ndim else scale
        return w32 / scale
    return w.astype(np.float32)


def encoder_state_dict(
    v: dict[str, np.ndarray], n_layers: int, n_positions: int | None = None
) -> dict[str, np.ndarray]:
    """HF ``WhisperEncoder`` state dict (float32 numpy) from CT2 ``encoder/*`` variables."""
    sd: dict[str, np.ndarray] = {}
    for i in (1, 2):
        sd[f"conv{i}.weight"] = _float(v, f"encoder/conv{i}/weight")
        sd[f"conv{i}.bias"] = v[f"encoder/conv{i}/bias"].astype(np.float32)
    pos = v["encoder/position_encodings/encodings"].astype(np.float32)
    sd["embed_positions.weight"] = pos if n_positions is None else pos[:n_positions]
    sd["layer_norm.weight"] = v["encoder/layer_norm/gamma"].astype(np.float32)
    sd["layer_norm.bias"] = v["encoder/layer_norm/beta"].astype(np.float32)
    for i in range(n_layers):
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        att = f"{src}/self_attention"
        qkv_w = _float(v, f"{att}/linear_0/weight")
        qkv_b = v[f"{att}/linear_0/bias"].astype(np.float32)
        d = qkv_w.shape[1]
        if qkv_w.shape[0] != 3 * d:
            raise CT2FormatError(f"{att}/linear_0/weight has shape {qkv_w.shape}, expected fused q,k,v ({3 * d}, {d})")
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            sd[f"{dst}.self_attn.{name}.weight"] = qkv_w[j * d:(j + 1) * d]
            if name != "k_proj":  # Whisper's key projection has no bias (CT2 stores zeros)
                sd[f"{dst}.self_attn.{name}.bias"] = qkv_b[j * d:(j + 1) * d]
        sd[f"{dst}.self_attn.out_proj.weight"] = _float(v, f"{att}/linear_1/weight")
        sd[f"{dst}.self_attn.out_proj.bias"] = v[f"{att}/linear_1/bias"].astype(np.float32)
        sd[f"{dst}.self_attn_layer_norm.weight"] = v[f"{att}/layer_norm/gamma"].astype(np.float32)
        sd[f"{dst}.self_attn_layer_norm.bias"] = v[f"{att}/layer_norm/beta"].astype(np.float32)
        ffn = f"{src}/ffn"
        sd[f"{dst}.fc1.weight"] = _float(v, f"{ffn}/linear_0/weight")
        sd[f"{dst}.fc1.bias"] = v[f"{ffn}/linear_0/bias"].astype(np.float32)
        sd[f"{dst}.fc2.weight"] = _float(v, f"{ffn}/linear_1/weight")
        sd[f"{dst}.fc2.bias"] = v[f"{ffn}/linear_1/bias"].astype(np.float32)
        sd[f"{dst}.final_layer_norm.weight"] = v[f"{ffn}/layer_norm/gamma"].astype(np.float32)
        sd[f"{dst}.final_layer_norm.bias"] = v[f"{ffn}/layer_norm/beta"].astype(np.float32)
    return sd


def _n_layers(v: dict[str, np.ndarray]) -> int:
    n = 0
    while f"encoder/layer_{n}/self_attention/linear_0/weight" in v:
        n += 1
    return n


def count_encoder_layers(path: str | Path) -> int:
    """Number of encoder blocks in a model.bin, from its variable names (no weights read)."""
    names = read_model_bin(path, prefix="\0").names
    return len({m.group(1) for m in map(_LAYER_NAME.match, names) if m})


def n_mels_from_dir(directory: Path) -> int | None:
    for name in ("preprocessor_config.json", "config.json"):
        f = directory / name
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except json.JSONDecodeError:
                raise CT2FormatError(f"{f}: not valid JSON") from None
            for key in ("feature_size", "num_mel_bins", "n_mels"):
                if isinstance(data.get(key), int):
                    return int(data[key])
    return None


def load_ct2_encoder(directory: str | Path):
    """(WhisperEncoder in float32 eval mode, WhisperConfig) from a CTranslate2 Whisper model folder."""
    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    directory = Path(directory)
    model = read_model_bin(directory / "model.bin")
    if "whisper" not in model.spec.lower():
        raise CT2FormatError(f"{directory / 'model.bin'}: spec {model.spec!r} is not a Whisper model")
    v = model.variables
    n_layers = _n_layers(v)
    if n_layers == 0:
        raise CT2FormatError(f"{directory / 'model.bin'}: no encoder layers found")
    heads = v.get("encoder/num_heads")
    if heads is None:
        raise CT2FormatError(f"{directory / 'model.bin'}: encoder/num_heads missing")
    conv1 = v["encoder/conv1/weight"]
    d_model, n_mels_w = int(conv1.shape[0]), int(conv1.shape[1])
    n_mels = n_mels_from_dir(directory) or n_mels_w
    if n_mels != n_mels_w:
        raise CT2FormatError(f"{directory}: config says {n_mels} mel bins but conv1 takes {n_mels_w}")
    ffn = int(v["encoder/layer_0/ffn/linear_0/weight"].shape[0])
    n_pos = int(v["encoder/position_encodings/encodings"].shape[0])
    n_heads = int(np.asarray(heads).item())
    config = WhisperConfig(
        num_mel_bins=n_mels, d_model=d_model, encoder_layers=n_layers, encoder_attention_heads=n_heads,
        encoder_ffn_dim=ffn, max_source_positions=n_pos, decoder_layers=1, decoder_attention_heads=n_heads,
        decoder_ffn_dim=ffn, activation_function="gelu",
    )
    config._attn_implementation = "sdpa"
    sd = encoder_state_dict(v, n_layers)
    encoder = WhisperEncoder(config)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in sd.items()}
    missing, unexpected = encoder.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if not m.endswith("k_proj.bias")]
    if missing or unexpected:
        raise CT2FormatError(f"{directory}: encoder weights do not fit (missing {missing[:3]}, unexpected "
                             f"{unexpected[:3]})")
    return encoder.eval(), config
