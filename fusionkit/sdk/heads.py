"""The fusion-head SDK: the head bases and the numpy helpers they share (torch code lives in
:mod:`fusionkit.sdk.training`).

* :class:`FusionHead` (classification) and :class:`RegressionHead`: a head implements ``_fit``,
  ``_predict_proba`` (or ``_predict``), ``_state`` and ``_restore``; the base keeps the classes (only
  those present in the training fold reach the head, as indices 0..k-1), the encoder order, the
  full-width probabilities, and ``save``/``load`` of ``head.json`` (plugin, classes, encoders,
  options, seed) and of the head's arrays.
* :class:`Standardizer`: per-encoder mean/std fitted on the training fold only.
* :func:`pooled_blocks`: every encoder's features as an (N, D) block, in a stable order.
* :func:`validation_split`: a validation set drawn from the training fold's *speakers*.
* :func:`class_weights`: inverse-frequency weights for imbalanced corpora.
* :func:`save_arrays` / :func:`load_arrays`, :func:`write_config` / :func:`read_config`:
  safetensors + JSON persistence (no pickle anywhere).
* :func:`load_head`: how the core loads a saved head (also heads written against the pre-SDK API, whose
  ``fit``/``predict_proba``/``save``/``load(directory, options, seed)`` keep working for one release, with a
  DeprecationWarning).
"""

from __future__ import annotations

import inspect
import json
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fusionkit.sdk.features import Features, as_matrix
from fusionkit.sdk.options import Options

CONFIG = "head.json"
ARRAYS = "arrays.safetensors"


class HeadFileError(ValueError):
    """A saved head that cannot be read back; the message names the file and the reason."""


class Saved(dict):
    """What was read from a saved head's file: a missing entry is a :class:`HeadFileError` naming it."""

    def __init__(self, values: dict, path: Path, what: str):
        super().__init__(values)
        self.path, self.what = path, what

    def __missing__(self, key: str):
        raise HeadFileError(f"{self.path}: {self.what} '{key}' missing (saved by another version of the head?)")


# ---------------------------------------------------------------- shapes


def encoder_names(X: dict) -> list[str]:
    """Encoders in a stable order (sorted by name), so that fit and predict agree."""
    if not X:
        raise ValueError("fusion head: no encoder features were given")
    return sorted(X)


def pooled_blocks(X: dict, names: list[str] | None = None) -> list[np.ndarray]:
    """One float64 (N, D) block per encoder: layers are flattened, sequences mean-pooled."""
    names = names or encoder_names(X)
    return [as_matrix(X[k]).astype(np.float64) for k in names]


def check_names(X: dict, expected: list[str]) -> None:
    got = sorted(X)
    if got != sorted(expected):
        raise ValueError(f"fusion head was fitted on encoders {expected}, got {got}")


def check_width(name: str, block: np.ndarray, width: int) -> None:
    if block.shape[-1] != width:
        raise ValueError(f"encoder '{name}': fitted on {width}-dimensional features, got {block.shape[-1]}")


# ---------------------------------------------------------------- standardisation


class Standardizer:
    """z-scores with statistics from the training fold; constant columns get scale 1."""

    def __init__(self, mean: np.ndarray | None = None, scale: np.ndarray | None = None):
        self.mean = mean
        self.scale = scale

    def fit(self, x: np.ndarray) -> Standardizer:
        """``x``: (N, D) or stacked frames (M, D)."""
        x = np.asarray(x, dtype=np.float64)
        self.mean = x.mean(axis=0)
        std = x.std(axis=0)
        self.scale = np.where(std > 1e-8, std, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return self.fit(x).transform(x)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.mean": self.mean, f"{prefix}.scale": self.scale}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> Standardizer:
        return cls(arrays[f"{prefix}.mean"], arrays[f"{prefix}.scale"])


# ---------------------------------------------------------------- labels, weights, validation


def present_classes(y: np.ndarray, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if len(y) == 0:
        raise ValueError("fusion head: the training fold is empty")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"fusion head: labels must be class indices in [0, {n_classes}), got {y.min()}..{y.max()}")
    return np.unique(y)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced weights n / (k * count) for the k classes present; 0 for absent classes."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    k = int((counts > 0).sum())
    w = np.zeros(n_classes)
    w[counts > 0] = len(y) / (k * counts[counts > 0])
    return w


def validation_split(
    y: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train idx, validation idx) with whole speakers held out (GroupShuffleSplit on ``groups``).

    Without groups (or with a single speaker) a stratified clip-level split is used instead.
    """
    n = len(y)
    idx = np.arange(n)
    if groups is not None and len(set(groups.tolist())) >= 2:
        from sklearn.model_selection import GroupShuffleSplit

        n_groups = len(set(groups.tolist()))
        test_size = max(1, int(round(fraction * n_groups)))
        test_size = min(test_size, n_groups - 1)
        gss = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        tr, va = next(gss.split(idx, y, groups))
        return np.sort(tr), np.sort(va)
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    n_classes = int((counts > 0).sum())
    n_val = int(np.ceil(fraction * n))
    # stratify when every class can be on both sides; otherwise a plain random split
    strat = y if counts[counts > 0].min() >= 2 and min(n_val, n - n_val) >= n_classes else None
    tr, va = train_test_split(idx, test_size=fraction, random_state=seed, stratify=strat)
    return np.sort(tr), np.sort(va)


def inner_group_folds(
    y: np.ndarray, groups: np.ndarray | None, k: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speaker-grouped inner folds (GroupKFold); stratified clip folds when there are no groups."""
    idx = np.arange(len(y))
    if groups is not None and len(set(groups.tolist())) >= 2:
        from sklearn.model_selection import GroupKFold

        k = min(k, len(set(groups.tolist())))
        return list(GroupKFold(n_splits=k).split(idx, y, groups))
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y)
    k = max(2, min(k, int(counts[counts > 0].min()))) if counts[counts > 0].min() >= 2 else k
    try:
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y))
    except ValueError:
        from sklearn.model_selection import KFold

        return list(KFold(n_splits=k, shuffle=True, random_state=seed).split(idx))


def macro_recall(y: np.ndarray, proba: np.ndarray) -> float:
    """Unweighted average recall over the classes present in ``y`` (UAR)."""
    pred = proba.argmax(axis=1)
    recalls = [float((pred[y == c] == c).mean()) for c in np.unique(y)]
    return float(np.mean(recalls))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- persistence


def save_arrays(directory: Path, arrays: dict[str, np.ndarray], filename: str = ARRAYS) -> None:
    from safetensors.numpy import save

    from fusionkit.fileio import atomic_write_bytes

    payload = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    atomic_write_bytes(Path(directory) / filename, save(payload))


def load_arrays(directory: Path, filename: str = ARRAYS) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = Path(directory) / filename
    if not path.exists():
        raise HeadFileError(f"{path}: missing (was the head saved into this folder?)")
    try:
        return Saved(load_file(str(path)), path, "array")
    except Exception as exc:  # noqa: BLE001
        raise HeadFileError(f"{path}: not a readable safetensors file ({exc})") from None


def write_config(directory: Path, config: dict[str, Any], filename: str = CONFIG) -> None:
    from fusionkit.fileio import atomic_write_text

    Path(directory).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(directory) / filename, json.dumps(config, indent=2, sort_keys=True))


def read_config(directory: Path, plugin: str, filename: str = CONFIG) -> Saved:
    path = Path(directory) / filename
    if not path.exists():
        raise HeadFileError(f"{path}: missing (was the head saved into this folder?)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HeadFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(config, dict):
        raise HeadFileError(f"{path}: not a JSON object")
    if config.get("plugin") != plugin:
        raise HeadFileError(f"{path}: plugin: saved by '{config.get('plugin')}', cannot be loaded as '{plugin}'")
    return Saved(config, path, "entry")


# ---------------------------------------------------------------- the head bases


class Head(ABC):
    """What every fusion head shares: options, seed, the encoders it was fitted on, and its saved form.

    ``save(directory)`` writes ``head.json`` (plugin, encoders, options, seed and what :meth:`_state`
    adds) and the arrays of :meth:`_state` into :attr:`arrays_file`; ``load(directory)`` rebuilds the
    head from that folder alone, with the options and seed it was saved with. A head without
    safetensors arrays (a model in its library's own format) sets ``arrays_file = None``.
    """

    name: ClassVar[str]
    task: ClassVar[str]
    modality: ClassVar[str] = "any"  # fuses encoders of any modality
    description: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options
    requires: ClassVar[tuple[str, ...]] = ()
    accepts_sequences: ClassVar[bool] = False
    arrays_file: ClassVar[str | None] = ARRAYS
    # hook -> the public method a pre-SDK head overrode instead (see __init_subclass__)
    _legacy_hooks: ClassVar[dict[str, str]] = {}

    #: a head that starts from encoders' own weights (fine-tuning) sets this; the run then hands it the
    #: recipe's encoder objects through :meth:`attach` before fitting
    wants_encoders: ClassVar[bool] = False

    #: below this many feature values (clips x width) a fit takes about a second or less, so a run fits its
    #: folds one by one rather than start worker processes for them (0: no such size is known)
    quick_fit_values: ClassVar[int] = 0

    def __init__(self, options: Options, seed: int = 0):
        self.options = options
        self.seed = seed
        self.encoders: list[str] | None = None  # sorted names, set by fit (None: a head saved without them)
        self.sources: dict[str, Any] = {}  # encoder name -> Encoder, for heads that want them

    def selection(self) -> dict[str, Any] | None:
        """How the fitted head chose its settings inside the training fold (``how``, a sentence, plus the fold's
        figures, e.g. the epoch early stopping picked); recorded per fold in metrics.json. None: nothing chosen."""
        return None

    def fit_threads(self) -> int | None:
        """The threads one fit uses when the options fix that number (a run may then fit several folds at once,
        each in its own process); None: as many as it is given (FUSIONKIT_THREADS, else every CPU)."""
        return None

    @classmethod
    def check_encoders(cls, options: Options, encoders: dict[str, Any]) -> None:
        """Called before anything is encoded (``run``, ``validate``) with the recipe's encoder objects, unloaded:
        a ``ValueError`` in one line when this head cannot fit on them as configured. Default: no check."""

    def attach(self, encoders: dict[str, Any]) -> None:
        """The recipe's encoder objects by name (called before :meth:`fit` when :attr:`wants_encoders` is set)."""
        self.sources = dict(encoders)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A head written against the pre-SDK API (it overrides ``fit``/``predict_proba`` or ``predict``
        instead of implementing the hooks) still instantiates, for one release, with a DeprecationWarning."""
        super().__init_subclass__(**kwargs)
        legacy = {hook: public for hook, public in cls._legacy_hooks.items()
                  if getattr(getattr(cls, hook), "__isabstractmethod__", False) and _overrides(cls, public)}
        for hook, public in legacy.items():
            setattr(cls, hook, _legacy_stand_in(hook, public))
        if legacy:
            warnings.warn(f"{cls.__module__}.{cls.__qualname__} overrides {', '.join(legacy.values())} instead of "
                          f"implementing {', '.join(legacy)}: the pre-SDK head API is deprecated and will be removed "
                          "in the next release (see docs/plugins.md)", DeprecationWarning, stacklevel=3)

    # -- what a head implements
    def _state(self, directory: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted state: entries added to head.json, and named arrays. A head whose model is
        saved in its library's own format writes it into ``directory`` here."""
        return {}, {}

    def _restore(self, config: Saved, arrays: Saved | dict, directory: Path) -> None:  # noqa: B027 - optional
        """Rebuild the fitted state from what :meth:`_state` saved (``config`` holds head.json)."""

    def _fitted(self) -> bool:
        """Whether there is a fitted state to save and restore."""
        return True

    # -- shared
    def _check_encoders(self, X: dict[str, Features]) -> int:
        """The number of clips in ``X``, after checking that its encoders are those of training."""
        names = encoder_names(X)
        if self.encoders is not None:
            check_names(X, self.encoders)
        return len(X[names[0]])

    def _config(self) -> dict[str, Any]:
        return {"plugin": self.name, "encoders": self.encoders, "options": self.options.model_dump(mode="json"),
                "seed": self.seed}

    def _read(self, config: Saved) -> None:
        """Restore what the base saved (a missing optional entry gets the value older versions implied)."""
        self.encoders = None if config.get("encoders") is None else list(config["encoders"])

    def save(self, directory: Path) -> None:
        """Write the fitted head into ``directory`` (no pickle: safetensors, native formats, JSON)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        extra, arrays = self._state(directory) if self._fitted() else ({}, {})
        if arrays and not self.arrays_file:
            raise TypeError(f"{type(self).__name__}: _state returned arrays but arrays_file is None")
        write_config(directory, {**self._config(), **extra})
        if arrays:
            save_arrays(directory, arrays, self.arrays_file)

    @classmethod
    def load(cls, directory: Path) -> Head:
        """The head saved in ``directory``, with the options and seed it was saved with."""
        directory = Path(directory)
        config = read_config(directory, cls.name)
        head = cls(saved_options(cls, config), int(config.get("seed", 0)))
        head._read(config)
        if head._fitted():
            arrays = load_arrays(directory, cls.arrays_file) if cls.arrays_file else {}
            head._restore(config, arrays, directory)
        return head


def _overrides(cls: type, attr: str) -> bool:
    """Whether ``attr`` comes from a class outside this module (a head's own override)."""
    owner = next((k for k in cls.__mro__ if attr in vars(k)), None)
    return owner is not None and owner.__module__ != __name__


def _legacy_stand_in(hook: str, public: str) -> Any:
    """A concrete ``hook`` for a pre-SDK head, which never calls it (its own ``public`` method does the work)."""

    def stand_in(self: Head, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} overrides {public}() (the pre-SDK API) and has no {hook}()")

    stand_in.__name__ = stand_in.__qualname__ = hook
    return stand_in


def legacy_load(cls: type) -> bool:
    """Whether ``cls.load`` has the pre-SDK signature ``load(directory, options, seed=0)``."""
    try:
        params = list(inspect.signature(cls.load).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.name == "options" for p in params)


def checked_outputs(name: str, values: Any, n_rows: int, n_outputs: int, probabilities: bool) -> np.ndarray:
    """A head's output as an (n_rows, n_outputs) float64 array, or a :class:`HeadOutputError` naming the head and
    what is wrong: another shape, NaN or inf, and for probabilities a negative value or a row not summing to 1."""
    what = "probabilities" if probabilities else "values"
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HeadOutputError(f"fusion head '{name}': its {what} are not numbers ({exc})") from None
    if not probabilities and out.size == n_rows * n_outputs:
        out = out.reshape(n_rows, n_outputs)  # e.g. (N,) values of one target
    if out.shape != (n_rows, n_outputs):
        raise HeadOutputError(f"fusion head '{name}': returned {what} of shape {out.shape} for {n_rows} clips and "
                              f"{n_outputs} {'classes' if probabilities else 'targets'}")
    bad = ~np.isfinite(out)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise HeadOutputError(f"fusion head '{name}': {int(bad.sum())} of its {what} are NaN or inf (first in row "
                              f"{row}: {out[row].tolist()})")
    if probabilities:
        sums = out.sum(axis=1)
        wrong = np.flatnonzero((out < -1e-6).any(axis=1) | (np.abs(sums - 1.0) > 1e-3))
        if len(wrong):
            row = int(wrong[0])
            raise HeadOutputError(f"fusion head '{name}': {len(wrong)} row(s) of its probabilities are negative or "
                                  f"do not sum to 1 (row {row}: {np.round(out[row], 6).tolist()}, sum "
                                  f"{sums[row]:.6g})")
    return out


class HeadOutputError(ValueError):
    """A fusion head's predictions that cannot be probabilities (or values) of the clips it was given."""


def load_head(cls: type, directory: Path, options: Options | None = None, seed: int = 0) -> Any:
    """The head saved in ``directory``: ``cls.load(directory)``, the one way the core loads a head.

    A head with the pre-SDK ``load(directory, options, seed)`` gets the options and seed its head.json holds,
    else ``options`` (the recipe's; the defaults when None) and ``seed``, with a DeprecationWarning.
    """
    if not legacy_load(cls):
        return cls.load(directory)
    warnings.warn(f"{cls.__module__}.{cls.__qualname__}.load(directory, options, seed) is deprecated and will not "
                  "be called in the next release: define load(directory) or use the FusionHead hooks "
                  "(see docs/plugins.md)", DeprecationWarning, stacklevel=2)
    config = _loose_config(Path(directory))
    if config.get("options") is not None:
        options = saved_options(cls, config)
    saved_seed = config.get("seed")
    seed = saved_seed if isinstance(saved_seed, int) and not isinstance(saved_seed, bool) else seed
    return cls.load(directory, options if options is not None else cls.Options(), seed)


def _loose_config(directory: Path) -> Saved:
    """head.json as far as a pre-SDK head wrote one (it may have written none, or its own keys)."""
    path = directory / CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    return Saved(config if isinstance(config, dict) else {}, path, "entry")


def saved_options(cls: type[Head], config: Saved) -> Options:
    """The options a head was saved with (defaults where head.json has none)."""
    from pydantic import ValidationError

    try:
        return cls.Options.model_validate(config.get("options") or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(options)"
        raise HeadFileError(f"{config.path}: options.{where}: not valid for {cls.name} ({err['msg']})") from None


class FusionHead(Head):
    """A classifier over one or more encoders' features, fitted once per fold.

    ``X`` maps encoder name -> features for the same N clips (same order). ``y`` holds class indices
    into ``classes``; ``groups`` each clip's speaker, so that a head that needs a validation set can
    draw it from other speakers. The base keeps :attr:`present` (the classes of the training fold);
    the head sees only those, as indices 0..k-1 (``_fit``), and returns probabilities over them
    (``_predict_proba``); absent classes get probability 0. A one-class fold predicts that class.
    """

    task: ClassVar[str] = "classification"
    _legacy_hooks: ClassVar[dict[str, str]] = {"_fit": "fit", "_predict_proba": "predict_proba"}

    @abstractmethod
    def _fit(self, X: dict[str, Features], y: np.ndarray, groups: np.ndarray | None) -> None:
        """Fit on ``y`` in 0..k-1 (indices into :attr:`present`, k >= 2)."""

    @abstractmethod
    def _predict_proba(self, X: dict[str, Features]) -> np.ndarray:
        """(N, k) probabilities over the present classes."""

    @property
    def present_names(self) -> list[str]:
        """Names of the classes present in the training fold, in the order of ``_fit``'s indices."""
        return [self.classes[i] for i in self.present]

    def _fitted(self) -> bool:
        return len(self.present) > 1

    def fit(self, X: dict[str, Features], y: np.ndarray, classes: list[str], groups: np.ndarray | None = None) -> None:
        y = np.asarray(y)
        self.classes = list(classes)
        self.present = present_classes(y, len(self.classes))
        self.encoders = encoder_names(X)
        if self._fitted():
            index = np.full(len(self.classes), -1)
            index[self.present] = np.arange(len(self.present))
            self._fit(X, index[y], None if groups is None else np.asarray(groups))

    def predict_proba(self, X: dict[str, Features]) -> np.ndarray:
        """(N, len(classes)) class probabilities."""
        n = self._check_encoders(X)
        out = np.zeros((n, len(self.classes)))
        out[:, self.present] = self._predict_proba(X) if self._fitted() else 1.0
        return out

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "classes": self.classes, "present": self.present.tolist()}

    def _read(self, config: Saved) -> None:
        super()._read(config)
        self.classes = list(config["classes"])
        self.present = np.asarray(config.get("present", range(len(self.classes))), dtype=np.int64)


class RegressionHead(Head):
    """A regressor over one or more encoders' features, fitted once per fold: ``Y`` is (N, T) float
    for the recipe's T targets (``task: {kind: regression, targets: [...]}``)."""

    task: ClassVar[str] = "regression"
    _legacy_hooks: ClassVar[dict[str, str]] = {"_fit": "fit", "_predict": "predict"}

    @abstractmethod
    def _fit(self, X: dict[str, Features], Y: np.ndarray, groups: np.ndarray | None) -> None:
        """Fit on ``Y`` (N, T) float64."""

    @abstractmethod
    def _predict(self, X: dict[str, Features]) -> np.ndarray:
        """(N, T) predictions."""

    def fit(self, X: dict[str, Features], Y: np.ndarray, targets: list[str], groups: np.ndarray | None = None) -> None:
        self.targets = list(targets)
        self.encoders = encoder_names(X)
        Y = np.asarray(Y, dtype=np.float64).reshape(len(X[self.encoders[0]]), len(self.targets))
        self._fit(X, Y, None if groups is None else np.asarray(groups))

    def predict(self, X: dict[str, Features]) -> np.ndarray:
        """(N, len(targets)) predictions."""
        self._check_encoders(X)
        return self._predict(X)

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "task": self.task, "targets": self.targets}

    def _read(self, config: Saved) -> None:
        super()._read(config)
        self.targets = list(config["targets"])
