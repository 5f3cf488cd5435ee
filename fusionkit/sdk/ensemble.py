"""Shared code of the late-fusion heads (``late-average``, ``stacking``): one base head per
encoder, out-of-fold probabilities from speaker-grouped inner folds, saving the bases.

Base heads see the classes of the late head's training fold only (its ``present_names``), so their
probabilities have the same k columns as the late head's ``_predict_proba``."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from fusionkit.sdk.heads import FusionHead, inner_group_folds, load_head


def base_class(name: str) -> type[FusionHead]:
    from fusionkit.registry import registry

    cls = registry().get("fusion", name)
    if issubclass(cls, PerEncoderHead):
        raise ValueError(f"base head '{name}' is itself a late-fusion head; "
                         "choose a single-encoder head such as 'linear'")
    return cls


def validate_base(name: str, options: dict[str, Any]) -> None:
    """Raise ValueError (one line) when the base head or its options are not valid."""
    from pydantic import ValidationError

    from fusionkit.registry import PluginError

    try:
        cls = base_class(name)
    except PluginError as exc:
        raise ValueError(f"base: {exc}") from None
    try:
        cls.Options.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(options)"
        raise ValueError(f"base_options.{where}: {err['msg']}") from None


def make_base(name: str, options: dict[str, Any], seed: int) -> FusionHead:
    cls = base_class(name)
    return cls(cls.Options.model_validate(options), seed)


def subset(x, idx: np.ndarray):
    """Rows ``idx`` of features given as an array or a list of sequences."""
    if isinstance(x, (list, tuple)):
        return [x[i] for i in idx]
    return np.asarray(x)[idx]


def out_of_fold(
    name: str, options: dict, x, y: np.ndarray, classes: list[str], groups: np.ndarray | None, k: int, seed: int,
    encoder: str,
) -> np.ndarray:
    """(N, C) probabilities of a base head for every training clip, each predicted by a head
    fitted on the other inner folds (whole speakers held out)."""
    oof = np.zeros((len(y), len(classes)))
    for inner, (tr, va) in enumerate(inner_group_folds(y, groups, k, seed)):
        head = make_base(name, options, seed + inner)
        head.fit({encoder: subset(x, tr)}, y[tr], classes, None if groups is None else groups[tr])
        oof[va] = head.predict_proba({encoder: subset(x, va)})
    return oof


def fit_bases(name: str, options: dict, X: dict, y, classes, groups, seed: int) -> dict[str, FusionHead]:
    bases = {}
    for enc in sorted(X):
        head = make_base(name, options, seed)
        head.fit({enc: X[enc]}, y, classes, groups)
        bases[enc] = head
    return bases


def base_probas(bases: dict[str, FusionHead], X: dict) -> dict[str, np.ndarray]:
    """Each base head's probabilities from its own encoder's features."""
    return {enc: head.predict_proba({enc: X[enc]}) for enc, head in bases.items()}


def save_bases(directory: Path, bases: dict[str, FusionHead]) -> None:
    """Each base into ``directory/base<i>``, in sorted encoder order."""
    for i, enc in enumerate(sorted(bases)):
        bases[enc].save(Path(directory) / f"base{i}")


def load_bases(directory: Path, name: str, order: list[str], options: dict[str, Any] | None = None,
               seed: int = 0) -> dict[str, FusionHead]:
    """The base heads saved by :func:`save_bases` (``options``/``seed``: the late head's, for pre-SDK bases)."""
    cls = base_class(name)
    opts = cls.Options.model_validate(options or {})
    return {enc: load_head(cls, Path(directory) / f"base{i}", opts, seed) for i, enc in enumerate(order)}


class PerEncoderHead(FusionHead):
    """Base of the late-fusion heads: one base head per encoder, saved in ``base<i>/`` next to a
    head.json with the out-of-fold scores. Subclasses extend ``_state`` and ``_restore``."""

    accepts_sequences = True
    arrays_file = None  # the base heads are saved in their own folders

    def fit_threads(self) -> int | None:
        """The base head's: the base heads are fitted one after another."""
        return make_base(self.options.base, self.options.base_options, self.seed).fit_threads()

    def _state(self, directory: Path):
        save_bases(directory, self.bases)
        return {"oof_uar": self.scores}, {}

    def _restore(self, config, arrays, directory: Path) -> None:
        self.scores = dict(config.get("oof_uar", {}))
        self.bases = load_bases(directory, self.options.base, self.encoders, self.options.base_options, self.seed)


def simplex_grid(n: int, step: float) -> np.ndarray:
    """Every weight vector of length ``n`` on the simplex with the given step (rows sum to 1)."""
    if n == 1:
        return np.ones((1, 1))
    k = int(round(1 / step))
    rows = [c for c in itertools.product(range(k + 1), repeat=n - 1) if sum(c) <= k]
    return np.array([[*c, k - sum(c)] for c in rows], dtype=np.float64) / k


def combine(probas: list[np.ndarray], weights: np.ndarray, space: str) -> np.ndarray:
    """Weighted mean of probabilities (``proba``) or of log-probabilities, renormalised (``log``)."""
    if space == "log":
        logp = sum(w * np.log(np.clip(p, 1e-12, 1.0)) for w, p in zip(weights, probas))
        logp = logp - logp.max(axis=1, keepdims=True)
        e = np.exp(logp)
        return e / e.sum(axis=1, keepdims=True)
    out = sum(w * p for w, p in zip(weights, probas))
    return out / np.clip(out.sum(axis=1, keepdims=True), 1e-12, None)
