"""Base class of the torch fusion heads (``concat-ffn``, ``self-attention``, ``cross-attention``,
``transformer``, or a third party's): a subclass supplies its network through :meth:`NeuralHead.network`;
this base shapes the inputs, trains with :func:`fusionkit.sdk.training.train`, and saves the weights.
This module does not import torch; :mod:`fusionkit.sdk.training` does, and is imported inside methods only.

Every encoder's features become one :class:`Block`:

* pooled ``(N, D)``            -> kind ``pooled``   (one token)
* layered ``(N, L, D)``        -> kind ``layers``   (a learned softmax-weighted sum over layers
                                  gives one token; or, with ``layers: sequence``, L tokens)
* a list of N ``(T_i, D)``     -> kind ``sequence`` (T_i tokens, padded, with a mask; longer
                                  sequences are average-pooled in time to ``max_frames``)

Standardisation statistics are fitted on the training fold (per layer for layered inputs, over
all frames for sequences). Early stopping uses a validation set of whole speakers drawn from the
training fold (``groups``); class weights counter imbalance; everything is seeded.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from fusionkit.sdk.heads import FusionHead, Standardizer
from fusionkit.sdk.options import Options

if TYPE_CHECKING:
    from torch import nn


class NeuralOptions(Options):
    width: int = Field(128, ge=4, description="hidden width (attention heads: the common token width)")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout in the network")
    input_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the standardised inputs")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(1e-2, ge=0, description="AdamW weight decay")
    epochs: int = Field(150, ge=1, description="maximum training epochs")
    patience: int = Field(15, ge=1, description="stop after this many epochs without a better validation score")
    select_on: Literal["uar", "weighted_f1"] = Field(
        "uar", description="the validation score that picks the epoch: uar, or weighted_f1 for corpora whose headline "
                           "figure it is (MELD)")
    batch_size: int = Field(64, ge=2)
    val_fraction: float = Field(0.2, gt=0, lt=1,
                                description="share of the training speakers held out for early stopping")
    class_weight: bool = Field(True, description="weight the loss inversely to class frequency")
    refit: bool = Field(True, description="after early stopping, retrain on the whole training fold (validation "
                                          "speakers included) for the best number of epochs")
    layers: Literal["weighted", "sequence"] = Field(
        "weighted", description="(N, L, D) inputs: learned softmax-weighted sum of layers, or the layers as a token "
                                "sequence")
    max_frames: int = Field(64, ge=1,
                            description="sequences longer than this are average-pooled in time to this length")
    threads: int | None = Field(1, ge=1, description="torch CPU threads while fitting and predicting (null: torch's "
                                                     "default); one is fastest for these small networks")
    bf16_on_cpu: bool = Field(False, description="train and predict on the CPU in bfloat16 autocast: about 1.7x as "
                                                 "fast on CPUs with native bf16 (AMX, AVX512-BF16), and the results "
                                                 "then depend on the CPU (CUDA always trains in bf16 autocast)")


@dataclass
class Block:
    """One encoder's standardised features, ready for torch."""

    name: str
    kind: Literal["pooled", "layers", "sequence"]
    dim: int
    n_layers: int  # 1 unless kind == "layers"
    data: np.ndarray  # pooled (N, D) | layers (N, L, D) | sequence (N, T, D) padded
    mask: np.ndarray | None = None  # sequence: (N, T) True where a frame is real

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "dim": self.dim, "n_layers": self.n_layers}


def _kind(x) -> str:
    if isinstance(x, (list, tuple)):
        return "sequence"
    ndim = np.asarray(x).ndim
    if ndim == 2:
        return "pooled"
    if ndim == 3:
        return "layers"
    raise ValueError(f"features must be (N, D), (N, L, D) or a list of (T, D); got an array of {ndim} dimensions")


def shrink(seq: np.ndarray, max_frames: int) -> np.ndarray:
    """Average-pool a (T, D) sequence in time to at most ``max_frames`` frames."""
    seq = np.asarray(seq, dtype=np.float64).reshape(-1, np.asarray(seq).shape[-1])
    if len(seq) <= max_frames:
        return seq
    edges = np.linspace(0, len(seq), max_frames + 1).round().astype(int)
    return np.stack([seq[a:b].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])])


def pad(seqs: list[np.ndarray], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad sequences to (N, T_max, D) with a (N, T_max) mask; an empty sequence gets one zero frame."""
    t_max = max(1, max(len(s) for s in seqs))
    out = np.zeros((len(seqs), t_max, dim), dtype=np.float32)
    mask = np.zeros((len(seqs), t_max), dtype=bool)
    for i, s in enumerate(seqs):
        if len(s) == 0:
            mask[i, 0] = True
            continue
        out[i, : len(s)] = s
        mask[i, : len(s)] = True
    return out, mask


class NeuralHead(FusionHead):
    """Shared fit/predict/save/load of the torch heads; a subclass supplies its network.

    :meth:`network` gets one spec per encoder (``name``, ``kind``, ``dim``, ``n_layers``) and returns
    a module whose ``forward(xs, masks)`` takes one tensor per encoder (with a mask, or None) and
    returns logits; it may read ``self.options``. Modules built from
    :class:`fusionkit.sdk.training.EncoderInput` kept in an attribute ``inputs`` get their learned
    layer weights reported in ``history["layer_weights"]``.
    """

    Options = NeuralOptions
    requires: ClassVar[tuple[str, ...]] = ("torch", "sklearn")
    accepts_sequences = True

    def fit_threads(self) -> int | None:
        if getattr(self.options, "device", "cpu") != "cpu":
            return None  # one accelerator: one fit at a time
        return self.options.threads

    @abstractmethod
    def network(self, specs: list[dict[str, Any]], n_classes: int) -> nn.Module:
        """A fresh, untrained network (import torch and the module that defines it here)."""

    # -- inputs
    def _fit_scalers(self, X: dict) -> None:
        self.kinds: dict[str, str] = {}
        self.scalers: dict[str, Standardizer] = {}
        for name in self.encoders:
            x = X[name]
            kind = _kind(x)
            self.kinds[name] = kind
            if kind == "sequence":
                frames = np.concatenate([shrink(s, self.options.max_frames) for s in x if len(s)], axis=0)
                self.scalers[name] = Standardizer().fit(frames)
            elif kind == "layers":
                arr = np.asarray(x, dtype=np.float64)
                std = arr.std(axis=0)
                self.scalers[name] = Standardizer(arr.mean(axis=0), np.where(std > 1e-8, std, 1.0))
            else:
                self.scalers[name] = Standardizer().fit(np.asarray(x, dtype=np.float64))

    def blocks(self, X: dict) -> list[Block]:
        out = []
        for name in self.encoders:
            x, kind, scaler = X[name], self.kinds[name], self.scalers[name]
            if _kind(x) != kind:
                raise ValueError(f"encoder '{name}': fitted on {kind} features, got {_kind(x)}")
            width = scaler.mean.shape[-1]
            if kind == "sequence":
                seqs = [scaler.transform(shrink(s, self.options.max_frames)) if len(s) else np.zeros((0, width))
                        for s in x]
                if any(s.shape[-1] != width for s in seqs):
                    raise ValueError(f"encoder '{name}': fitted on {width}-dimensional frames, got another width")
                data, mask = pad(seqs, width)
                out.append(Block(name, kind, width, 1, data, mask))
                continue
            arr = np.asarray(x, dtype=np.float64)
            if arr.shape[1:] != scaler.mean.shape:
                raise ValueError(f"encoder '{name}': fitted on features of shape {scaler.mean.shape}, "
                                 f"got {arr.shape[1:]}")
            data = scaler.transform(arr).astype(np.float32)
            out.append(Block(name, kind, width, arr.shape[1] if kind == "layers" else 1, data))
        return out

    def specs(self) -> list[dict[str, Any]]:
        out = []
        for name in self.encoders:
            mean = self.scalers[name].mean
            kind = self.kinds[name]
            out.append({"name": name, "kind": kind, "dim": int(mean.shape[-1]),
                        "n_layers": int(mean.shape[0]) if kind == "layers" else 1})
        return out

    def _build(self) -> nn.Module:
        return self.network(self.specs(), len(self.present))

    def selection(self) -> dict[str, Any] | None:
        """Epochs chosen by early stopping on held-out training speakers (see :func:`~fusionkit.sdk.training.train`)."""
        h = getattr(self, "history", None)
        if not h:
            return None
        o = self.options
        from fusionkit.sdk.training import VALIDATION_NAMES

        metric = h.get("val_metric", "uar")
        how = (f"epochs chosen by early stopping (best validation {VALIDATION_NAMES[metric]}, patience {o.patience}, "
               f"at most {o.epochs}) on {o.val_fraction:.0%} of the training fold's speakers held out; "
               + ("then refit on the whole training fold for that many epochs" if o.refit else "no refit"))
        return {"how": how, "best_epoch": h.get("best_epoch"), f"val_{metric}": h.get("val_score", h.get("val_uar")),
                "train_size": h.get("train_size"), "val_size": h.get("val_size")}

    # -- FusionHead hooks
    def _fit(self, X, y, groups):
        from fusionkit.sdk.training import train

        self._fit_scalers(X)
        self.model, self.history = train(self._build, self.blocks(X), y, groups, self.options, self.seed)

    def _predict_proba(self, X):
        from fusionkit.sdk.training import predict

        return predict(self.model, self.blocks(X), self.options)

    def _state(self, directory: Path):
        from fusionkit.sdk.training import state_arrays

        arrays = {f"model.{k}": v for k, v in state_arrays(self.model).items()}
        for name in self.encoders:
            arrays.update(self.scalers[name].arrays(f"scaler.{name}"))
        return {"kinds": self.kinds, "specs": self.specs(), "history": self.history}, arrays

    def _restore(self, config, arrays, directory: Path) -> None:
        from fusionkit.sdk.training import load_state

        # the network and the input shaping are those of training (the saved options)
        self.kinds = dict(config["kinds"])
        self.scalers = {n: Standardizer.from_arrays(arrays, f"scaler.{n}") for n in self.encoders}
        self.history = config.get("history", {})
        self.model = self._build()
        load_state(self.model, {k[len("model."):]: v for k, v in arrays.items() if k.startswith("model.")},
                   directory / self.arrays_file)
