"""Torch side of the neural fusion heads: the building blocks of their networks (:class:`EncoderInput`,
:func:`masked_mean`, :class:`Projector`, :class:`CrossBlock`), a seeded training loop with
speaker-held-out early stopping, prediction and safetensors state I/O. The networks themselves live
beside their heads (a :class:`~fusionkit.sdk.neural.NeuralHead` supplies its own). Imported lazily
(inside methods, or by the modules that define networks) only.

The loop runs where the options' ``device`` says (default: the CPU; on CUDA in bfloat16 autocast; on the CPU
in bfloat16 autocast too where the options' ``bf16_on_cpu`` asks). A network may define
``param_groups(lr, weight_decay)`` to give parts of itself their own learning rates (a fine-tuned encoder's
blocks learn slower than a fresh classifier), and ``warm_start(data, idx, y, weight)`` to set weights from the
training clips before the first epoch (the ``fine-tune`` head's linear probe)."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fusionkit.sdk.heads import HeadFileError, class_weights, macro_recall, validation_split

PREDICT_BATCH = 256
SLOW_EPOCH_S = 10.0  # epochs slower than this are reported at INFO (long fine-tuning runs); faster ones at DEBUG

log = logging.getLogger(__name__)


def device_of(o) -> torch.device:
    """The device named by the options' ``device`` (the CPU when they have none)."""
    from fusionkit.sdk.torch_models import resolve_device

    return resolve_device(getattr(o, "device", "cpu"), "fusion head")


def _autocast(device: torch.device, o=None):
    """bfloat16 autocast on CUDA; on the CPU only where the options' ``bf16_on_cpu`` asks (results then depend on
    the CPU's bf16 arithmetic), else nothing."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if getattr(o, "bf16_on_cpu", False):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.lru_cache(maxsize=1)
def _warn_emulated_bf16() -> None:
    """One warning per process where ``bf16_on_cpu`` is asked of a CPU without native bf16."""
    from fusionkit.sdk.torch_models import native_cpu_bf16

    if not native_cpu_bf16():
        log.warning("bf16_on_cpu: this CPU has no native bfloat16 (AMX or AVX512-BF16): the autocast is emulated "
                    "and likely slower than float32")


def _parameters(model: nn.Module, o):
    groups = getattr(model, "param_groups", None)
    return groups(o.lr, o.weight_decay) if callable(groups) else model.parameters()


# ---------------------------------------------------------------- inputs


class EncoderInput(nn.Module):
    """One encoder's features -> (tokens (N, T, D), mask (N, T)).

    Layered inputs are reduced by a learned softmax-weighted sum over layers (one token), or
    kept as L tokens (``layers='sequence'``). Pooled vectors are one token.
    """

    def __init__(self, spec: dict, input_dropout: float, layers: str):
        super().__init__()
        self.kind = spec["kind"]
        self.as_sequence = self.kind == "layers" and layers == "sequence"
        self.layer_logits = nn.Parameter(torch.zeros(spec["n_layers"])) if self.kind == "layers" else None
        self.drop = nn.Dropout(input_dropout)

    def layer_weights(self) -> torch.Tensor | None:
        return None if self.layer_logits is None else torch.softmax(self.layer_logits, dim=0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "pooled":
            tokens = x.unsqueeze(1)
        elif self.kind == "layers" and not self.as_sequence:
            tokens = torch.einsum("nld,l->nd", x, self.layer_weights()).unsqueeze(1)
        else:
            tokens = x
        if mask is None:
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return self.drop(tokens), mask


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def projected_tokens(inputs, projectors, xs, masks) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every encoder's tokens through its :class:`EncoderInput` and :class:`Projector`: (tokens, masks) lists."""
    tokens, out_masks = [], []
    for inp, proj, x, m in zip(inputs, projectors, xs, masks):
        t, mm = inp(x, m)
        tokens.append(proj(t))
        out_masks.append(mm)
    return tokens, out_masks


class Projector(nn.Module):
    """Per-encoder projection of tokens to the common width, plus a learned modality embedding."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        self.proj = nn.Linear(dim, width)
        self.norm = nn.LayerNorm(width)
        self.modality = nn.Parameter(torch.zeros(width))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(tokens)) + self.modality


class CrossBlock(nn.Module):
    """Queries from one encoder attend to keys/values from the others (MulT-style), + FFN."""

    def __init__(self, width, heads, dropout):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(2 * width, width))
        self.norm2 = nn.LayerNorm(width)

    def forward(self, q, kv, kv_mask):
        h = self.norm(q + self.attn(q, kv, kv, key_padding_mask=~kv_mask, need_weights=False)[0])
        return self.norm2(h + self.ffn(h))


# ---------------------------------------------------------------- data


class Tensors:
    """Blocks as torch tensors; ``batch(idx)`` slices every encoder (sequences trimmed to the batch's longest)."""

    def __init__(self, blocks):
        self.data = [torch.from_numpy(np.ascontiguousarray(b.data, dtype=np.float32)) for b in blocks]
        self.masks = [None if b.mask is None else torch.from_numpy(b.mask) for b in blocks]
        self.lengths = [None if b.mask is None else torch.from_numpy(b.mask.sum(axis=1)) for b in blocks]
        self.n = len(blocks[0].data)

    def batch(self, idx: torch.Tensor, device: torch.device | None = None):
        xs, ms = [], []
        for x, m, lens in zip(self.data, self.masks, self.lengths):
            if m is None:
                xs.append(x[idx])
                ms.append(None)
            else:
                t = int(max(1, lens[idx].max()))
                xs.append(x[idx, :t])
                ms.append(m[idx, :t])
        if device is not None and device.type != "cpu":
            xs = [x.to(device, non_blocking=True) for x in xs]
            ms = [None if m is None else m.to(device, non_blocking=True) for m in ms]
        return xs, ms


@contextmanager
def seeded(seed: int, threads: int | None, device: torch.device | None = None):
    """Seed torch (restoring the global RNG afterwards), deterministic algorithms, thread count.

    On CUDA, algorithms without a deterministic kernel warn instead of failing."""
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    cuda = device is not None and device.type == "cuda"
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=cuda)
        if threads:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_det)
            torch.set_num_threads(prev_threads)


def _logits(model: nn.Module, data: Tensors, idx: np.ndarray, batch: int = PREDICT_BATCH,
            device: torch.device | None = None, o=None) -> torch.Tensor:
    model.eval()
    device = device or torch.device("cpu")
    out = []
    with torch.no_grad(), _autocast(device, o):
        for start in range(0, len(idx), batch):
            xs, ms = data.batch(torch.from_numpy(idx[start : start + batch]), device)
            out.append(model(xs, ms).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def _batches(train_idx: torch.Tensor, data: Tensors, o, gen: torch.Generator) -> list[torch.Tensor]:
    """One epoch's shuffled batches. With ``group_by_length`` (sequence inputs), clips of similar length share a
    batch (sorted within shuffled pools of 50 batches, then the batches shuffled), so little time goes on padding."""
    perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
    size = o.batch_size
    lengths = next((lens for lens in data.lengths if lens is not None), None)
    if not getattr(o, "group_by_length", False) or lengths is None:
        return [perm[s : s + size] for s in range(0, len(perm), size)]
    pool = size * 50
    batches = []
    for s in range(0, len(perm), pool):
        part = perm[s : s + pool]
        part = part[torch.argsort(lengths[part], descending=True, stable=True)]
        batches += [part[b : b + size] for b in range(0, len(part), size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def _run_epochs(model, data: Tensors, y: torch.Tensor, train_idx, val_idx, o, seed: int, epochs: int, weight):
    """Train; with ``val_idx``, keep the weights of the epoch with the best validation score (``o.select_on``)."""
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(_parameters(model, o), lr=o.lr, weight_decay=o.weight_decay)
    loss_fn = nn.CrossEntropyLoss(weight=None if weight is None else weight.to(device))
    cpu_loss = nn.CrossEntropyLoss(weight=weight)
    predict_batch = getattr(o, "predict_batch", PREDICT_BATCH)
    gen = torch.Generator().manual_seed(seed)
    train_idx = torch.from_numpy(train_idx)
    metric = getattr(o, "select_on", "uar")
    best = {"epoch": 0, "score": -math.inf, "loss": math.inf, "state": None}
    y_val = None if val_idx is None else y[torch.from_numpy(val_idx)].numpy()
    since = 0
    warm_start = getattr(model, "warm_start", None)
    if callable(warm_start):
        warm_start(data, train_idx, y, weight)
        if val_idx is not None:  # epoch 0 competes: validation may prefer the warm start to any fine-tuning
            logits = _logits(model, data, val_idx, predict_batch, device, o)
            score = validation_score(metric, y_val, torch.softmax(logits, dim=1).numpy())
            best = {"epoch": 0, "score": score, "loss": float(cpu_loss(logits, torch.from_numpy(y_val))),
                    "state": copy.deepcopy(model.state_dict())}
            log.debug("epoch 0 (warm start): validation %s %.4f", VALIDATION_NAMES[metric], best["score"])
    for epoch in range(1, epochs + 1):
        model.train()
        started, total, seen = time.perf_counter(), 0.0, 0
        for idx in _batches(train_idx, data, o, gen):
            if len(idx) < 2:
                continue
            xs, ms = data.batch(idx, device)
            with _autocast(device, o):
                logits = model(xs, ms)
            loss = loss_fn(logits.float(), y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total, seen = total + float(loss.detach()) * len(idx), seen + len(idx)
        line = f"epoch {epoch}/{epochs}: train loss {total / max(seen, 1):.4f}"
        if val_idx is None:
            _report_epoch(line + " (refit)", started)
            continue
        logits = _logits(model, data, val_idx, predict_batch, device, o)
        score = validation_score(metric, y_val, torch.softmax(logits, dim=1).numpy())
        vloss = float(cpu_loss(logits, torch.from_numpy(y_val)))
        if score > best["score"] + 1e-9 or (abs(score - best["score"]) <= 1e-9 and vloss < best["loss"]):
            best = {"epoch": epoch, "score": score, "loss": vloss, "state": copy.deepcopy(model.state_dict())}
            since = 0
        else:
            since += 1
        name = VALIDATION_NAMES[metric]
        _report_epoch(f"{line}, validation {name} {score:.4f} (best {best['score']:.4f} at epoch {best['epoch']})",
                      started)
        if since >= o.patience:
            break
    if val_idx is not None and best["state"] is not None:
        model.load_state_dict(best["state"])
    return {"best_epoch": best["epoch"] if val_idx is not None else epochs, "val_metric": metric,
            "val_score": None if val_idx is None else round(float(best["score"]), 6)}


VALIDATION_NAMES = {"uar": "UAR", "weighted_f1": "weighted F1"}


def validation_score(metric: str, y: np.ndarray, proba: np.ndarray) -> float:
    """The score early stopping maximises: ``uar`` (unweighted average recall) or ``weighted_f1``, as a run reports
    it for its test folds (:func:`fusionkit.metrics.classification_metrics`)."""
    if metric == "weighted_f1":
        from fusionkit.metrics import classification_metrics

        return classification_metrics(y, proba.argmax(axis=1), proba.shape[1])["weighted_f1"]
    return macro_recall(y, proba)


def _report_epoch(line: str, started: float) -> None:
    seconds = time.perf_counter() - started
    log.log(logging.INFO if seconds >= SLOW_EPOCH_S else logging.DEBUG, "%s, %.1f s", line, seconds)


def train(build: Callable[[], nn.Module], blocks, y: np.ndarray, groups: np.ndarray | None, o, seed: int):
    """Fit a network built by ``build``; returns (model, history).

    The validation set (whole speakers from ``groups``) is used for early stopping only; with
    ``o.refit`` a fresh network is then trained on the whole fold for the best number of epochs.
    """
    device = device_of(o)
    if device.type == "cpu" and getattr(o, "bf16_on_cpu", False):
        _warn_emulated_bf16()
    with seeded(seed, o.threads, device):
        data = Tensors(blocks)
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
        n_classes = int(y.max()) + 1
        tr, va = validation_split(y, groups, o.val_fraction, seed)
        weight = torch.tensor(class_weights(y[tr], n_classes), dtype=torch.float32) if o.class_weight else None
        model = build().to(device)
        history = _run_epochs(model, data, yt, tr, va, o, seed, o.epochs, weight)
        history.update({"train_size": int(len(tr)), "val_size": int(len(va)), "refit": bool(o.refit)})
        if o.refit:
            torch.manual_seed(seed)
            model = build().to(device)
            all_idx = np.arange(len(y))
            weight = torch.tensor(class_weights(y, n_classes), dtype=torch.float32) if o.class_weight else None
            warm = callable(getattr(model, "warm_start", None))  # a warm start may be the best "epoch" (0)
            epochs = history["best_epoch"] if warm else max(1, history["best_epoch"])
            _run_epochs(model, data, yt, all_idx, None, o, seed, epochs, weight)
        model.eval()
    weights = [inp.layer_weights() for inp in getattr(model, "inputs", [])]
    history["layer_weights"] = [None if w is None else [round(float(v), 4) for v in w.detach()] for w in weights]
    return model, history


def predict(model: nn.Module, blocks, o) -> np.ndarray:
    device = device_of(o)
    with seeded(0, o.threads, device):
        data = Tensors(blocks)
        model.to(device)
        logits = _logits(model, data, np.arange(data.n), getattr(o, "predict_batch", PREDICT_BATCH), device, o)
    return torch.softmax(logits.double(), dim=1).numpy()


# ---------------------------------------------------------------- state I/O


def state_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_state(model: nn.Module, arrays: dict[str, np.ndarray], source: Path) -> None:
    state = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise HeadFileError(f"{source}: weights do not fit the network described in head.json ({first})") from None
    model.eval()
