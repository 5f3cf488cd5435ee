"""Careless and hostile recipes: each refused with one line and exit 2; stratified speaker folds as the
default for new recipes; intervals kept inside the metric's range; the protocol records what the split did."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from core_fixtures import fk_env, small_recipe, write_recipe  # noqa: F401
from protocol_fakes import write_tone

from fusionkit.metrics import summarize
from fusionkit.pipeline.splits import make_folds, speaker_overlap
from fusionkit.recipe import Recipe, SplitSpec, load_recipe
from fusionkit.sdk.base import Clip


def check(path: Path, *sets: str) -> tuple[int, list[str]]:
    """``fusionkit validate PATH --set ...``: the exit code and the error lines."""
    from fusionkit.cli import main

    result = CliRunner().invoke(main, ["validate", str(path)] + [a for s in sets for a in ("--set", s)])
    assert not isinstance(result.exception, RecursionError), result.exception
    return result.exit_code, [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def one_error(path: Path, *sets: str) -> str:
    code, lines = check(path, *sets)
    assert code == 2 and len(lines) == 1, (code, lines)
    return lines[0]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("include, words", [(["happy"], "at least 2 classes, got 1 (happy)"),
                                            (["happy", "happy"], "repeats happy"),
                                            ([], "empty")])
def test_include_needs_two_distinct_classes(tmp_path, fk_env, include, words):
    path = write_recipe(tmp_path / "r.yaml", small_recipe(data__labels={"include": include}))
    line = one_error(path)
    assert line.startswith(f"error: {path}: data.labels.include: ") and words in line


@pytest.mark.parametrize("seeds, words", [([0, 0], "repeat 0"), ([3, 1, 3, 1], "repeat 1, 3"), ([], "empty")])
def test_repeated_or_empty_seeds_are_refused(tmp_path, fk_env, seeds, words):
    path = write_recipe(tmp_path / "r.yaml", small_recipe(seeds=seeds))
    line = one_error(path)
    assert line.startswith(f"error: {path}: seeds: ") and words in line


def test_a_repeated_yaml_key_is_named_with_its_line(tmp_path, fk_env):
    path = write_recipe(tmp_path / "r.yaml", small_recipe())
    path.write_text(path.read_text() + "seed: 0\nseed: 1\n")
    lines = path.read_text().splitlines()
    assert one_error(path) == (f"error: {path}:{len(lines)}: key 'seed' repeated (first at line {len(lines) - 1}); "
                               "the last one would win silently")
    nested = tmp_path / "nested.yaml"
    nested.write_text("name: x\ndata: {dataset: synthetic, dataset: ravdess}\n")
    assert "key 'dataset' repeated" in one_error(nested)
    from fusionkit.recipe import safe_load

    # a key brought in by a merge may be overridden: that is what merging is for
    assert safe_load("a: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n")["c"] == {"x": 3, "y": 2}


def test_deep_nesting_gives_one_line_not_a_recursion_error(tmp_path, fk_env):
    path = tmp_path / "deep.yaml"
    path.write_text("name: x\ndata: " + "[" * 600 + "]" * 600 + "\n")
    assert one_error(path) == f"error: {path}:2: nested deeper than 32 levels"
    block = tmp_path / "block.yaml"
    block.write_text("".join("  " * i + f"k{i}:\n" for i in range(40)) + "  " * 40 + "v\n")
    assert "nested deeper than 32 levels" in one_error(block)
    chain = tmp_path / "chain.yaml"  # deep only once the aliases are followed
    chain.write_text("a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 200)))
    assert "nested deeper than 32 levels (through aliases)" in one_error(chain)
    loop = tmp_path / "loop.yaml"
    loop.write_text("a: &x [1, *x]\n")
    assert "alias *x refers to a value that contains it" in one_error(loop)


def test_oversized_recipes_are_refused_quickly(tmp_path, fk_env):
    big = tmp_path / "big.yaml"
    big.write_text("name: x\nseeds: [" + "0," * 100_000 + "0]\n")
    start = time.perf_counter()
    assert one_error(big) == f"error: {big}: larger than 64 kB; a recipe is a few kB"
    many = tmp_path / "many.yaml"
    many.write_text("name: x\nseeds: [" + ",".join(["0"] * 12_000) + "]\n")
    assert "more than 10000 values" in one_error(many)
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")))
    assert "more than 10000 values (aliases expanded)" in one_error(laughs)
    assert time.perf_counter() - start < 20


def test_a_huge_invalid_value_is_not_echoed_whole(tmp_path, fk_env):
    path = write_recipe(tmp_path / "r.yaml", small_recipe(seed="x" * 40_000, split={"kind": "k" * 20_000}))
    code, lines = check(path)
    assert code == 2 and len(lines) == 2
    assert all(len(line) < 400 for line in lines), [len(line) for line in lines]
    assert any("seed: " in line and "(40002 characters)" in line for line in lines)
    code, lines = check(write_recipe(tmp_path / "ok.yaml", small_recipe()), "split.kind=" + "z" * 100_000)
    assert code == 2 and len(lines) == 1 and len(lines[0]) < 500


def test_a_root_too_long_to_look_up_does_not_exist(tmp_path, fk_env):
    path = write_recipe(tmp_path / "r.yaml", small_recipe(data={"dataset": "manifest", "root": "r" * 5000}))
    line = one_error(path)
    assert "data.root: " in line and line.endswith("does not exist") and len(line) < 300


def test_leave_one_speaker_out_suggests_loso(tmp_path, fk_env):
    path = write_recipe(tmp_path / "r.yaml", small_recipe(split={"kind": "leave-one-speaker-out"}))
    assert one_error(path).endswith("got 'leave-one-speaker-out'; did you mean 'loso'?")
    assert one_error(path, "split.kind=stratified").endswith(
        "did you mean 'speaker-stratified'? (from --set split.kind=stratified)")


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/tmp/elsewhere", "..\\up", "C:\\runs", "", "tab\there"])
def test_a_name_cannot_take_outputs_out_of_runs(tmp_path, fk_env, name):
    path = write_recipe(tmp_path / "r.yaml", small_recipe(name=name))
    assert one_error(path).startswith(f"error: {path}: name: ")


@pytest.mark.parametrize("name, folder", [("a/b", "a-b"), ("ravdess/base-l3..5/linear", "ravdess-base-l3..5-linear"),
                                          ("with spaces", "with spaces")])
def test_a_name_with_separators_becomes_one_folder_under_runs(tmp_path, fk_env, name, folder, monkeypatch):
    from fusionkit.pipeline.run import default_run_dir

    monkeypatch.chdir(tmp_path)  # the run folder is made under ./runs
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", small_recipe(name=name)))
    out = default_run_dir(recipe)
    assert out.parent == Path("runs") and out.name.startswith(folder + "-")


# ---------------------------------------------------------------- splits


def clips_of(plan: dict[str, dict[str, int]]) -> list[Clip]:
    """speaker -> {label: clips}."""
    return [Clip(id=f"{s}_{lab}_{k}", path=None, label=lab, speaker=s)
            for s, labels in plan.items() for lab, n in labels.items() for k in range(n)]


def urdu_like(seed: int = 0) -> list[Clip]:
    """29 speakers, 24 of them acting one emotion only, the others all four (as URDU)."""
    rng = np.random.default_rng(seed)
    classes = ["angry", "happy", "neutral", "sad"]
    acted = {s: classes if s >= 24 else [classes[s % 4]] for s in range(29)}
    return clips_of({f"spk{s:02d}": {lab: int(rng.integers(3, 25)) for lab in labels} for s, labels in acted.items()})


def test_new_recipes_default_to_stratified_speaker_folds(fk_env):
    assert SplitSpec().kind == "speaker-stratified" and SplitSpec().shuffle is True
    assert load_recipe("demo").split.kind == "speaker-stratified"
    assert SplitSpec(kind="speaker-kfold").shuffle is False  # named speaker-kfold: today's folds
    raw = {"name": "x", "data": {"dataset": "synthetic"}, "encoders": [{"plugin": "lld"}],
           "fusion": {"plugin": "linear"}}
    assert Recipe.model_validate(raw).split.kind == "speaker-stratified"


def test_speaker_kfold_keeps_its_folds():
    clips = [Clip(id=f"c{i}", path=None, label="ab"[i % 2], speaker=f"spk{i % 11}") for i in range(44)]
    plain = make_folds(clips, SplitSpec(kind="speaker-kfold", folds=4), seed=3)
    shuffled = make_folds(clips, SplitSpec(kind="speaker-kfold", folds=4, shuffle=True), seed=3)
    assert [f.test_speakers for f in plain] == [["spk0", "spk1", "spk2"], ["spk3", "spk4", "spk5"],
                                                ["spk6", "spk7", "spk8"], ["spk9", "spk10"]]
    assert [f.test_speakers for f in shuffled] == [["spk9", "spk7", "spk0"], ["spk2", "spk1", "spk4"],
                                                   ["spk6", "spk10", "spk5"], ["spk3", "spk8"]]


def test_stratified_speaker_folds_balance_classes_where_blocks_do_not():
    clips = urdu_like()
    labels = np.array([c.label for c in clips])
    speakers = np.array([c.speaker for c in clips])
    classes = sorted(set(labels))
    blocks = make_folds(clips, SplitSpec(kind="speaker-kfold", folds=5))
    stratified = make_folds(clips, SplitSpec(kind="speaker-stratified", folds=5), seed=0)
    assert len(stratified) == 5
    assert sorted(np.concatenate([f.test for f in stratified]).tolist()) == list(range(len(clips)))
    for f in stratified:
        assert speaker_overlap(f, speakers) == [] and sorted(set(speakers[f.test])) == f.test_speakers

    def worst_share_gap(folds) -> float:
        """The largest gap between a class's share in a test fold and in the corpus."""
        overall = np.array([np.mean(labels == c) for c in classes])
        return max(np.abs(np.array([np.mean(labels[f.test] == c) for c in classes]) - overall).max() for f in folds)

    assert worst_share_gap(stratified) < worst_share_gap(blocks)
    assert max(len(f.test) for f in stratified) < max(len(f.test) for f in blocks)
    again = make_folds(clips, SplitSpec(kind="speaker-stratified", folds=5), seed=0)
    other = make_folds(clips, SplitSpec(kind="speaker-stratified", folds=5), seed=1)
    assert [f.test_speakers for f in again] == [f.test_speakers for f in stratified]
    assert [f.test_speakers for f in other] != [f.test_speakers for f in stratified]


def test_stratified_folds_refuse_more_folds_than_speakers_and_take_unlabelled_clips():
    clips = clips_of({"a": {"x": 2}, "b": {"y": 2}, "c": {"x": 1, "y": 1}})
    with pytest.raises(ValueError, match="split.folds is 4 but the data has only 3 speakers"):
        make_folds(clips, SplitSpec(kind="speaker-stratified", folds=4))
    unlabelled = [Clip(id=c.id, path=None, label=None, speaker=c.speaker) for c in clips]  # regression
    folds = make_folds(unlabelled, SplitSpec(kind="speaker-stratified", folds=3))
    assert sorted(s for f in folds for s in f.test_speakers) == ["a", "b", "c"]


def test_thin_classes_names_missing_and_rare_training_classes():
    from fusionkit.pipeline.splits import thin_classes

    clips = clips_of({"a": {"x": 6, "y": 2}, "b": {"x": 6, "z": 9}})
    labels = np.array([c.label for c in clips])
    fold_a, fold_b = make_folds(clips, SplitSpec(kind="loso"))
    assert thin_classes(fold_a, labels, ["x", "y", "z"]) == {"y": 0}  # tests on a: trains on b
    assert thin_classes(fold_b, labels, ["x", "y", "z"]) == {"y": 2, "z": 0}


# ---------------------------------------------------------------- intervals


def test_interval_is_clipped_to_the_metric_range():
    from fusionkit.metrics import metric_range

    plain = summarize([1.0, 0.98, 1.0, 0.7])
    assert plain["ci95"][1] > 1.0  # the t-interval alone runs past a recall's range
    clipped = summarize([1.0, 0.98, 1.0, 0.7], metric_range("uar"))
    assert clipped["ci95"][1] == 1.0 and clipped["ci95"][0] == pytest.approx(plain["ci95"][0])
    assert summarize([0.05, 0.0, 0.3], metric_range("macro_f1"))["ci95"][0] == 0.0
    ccc = summarize([-0.3, 0.4, 0.1], metric_range("ccc"))
    assert -1.0 <= ccc["ci95"][0] < 0.0  # CCC may be negative
    assert summarize([-0.95, -0.2, -0.99], metric_range("ccc_arousal"))["ci95"][0] == -1.0
    assert metric_range("rmse_valence") == (0.0, float("inf"))


# ---------------------------------------------------------------- a run's protocol


def tiny_manifest(folder: Path, plan: dict[str, dict[str, int]]) -> Path:
    freq = {"ang": 520.0, "hap": 300.0, "neu": 180.0}
    rows = []
    for s, labels in plan.items():
        for lab, n in labels.items():
            for k in range(n):
                name = f"{s}_{lab}_{k}.wav"
                write_tone(folder / name, freq[lab] * (1 + 0.01 * k), seconds=0.25, noise=0.02, seed=k)
                rows.append({"path": name, "label": lab, "speaker": s})
    with open(folder / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "speaker"])
        writer.writeheader()
        writer.writerows(rows)
    return folder / "manifest.csv"


def test_loso_protocol_counts_its_folds_and_warns_of_thin_training_classes(tmp_path, fk_env, caplog):
    from fusionkit.pipeline.run import run

    manifest = tiny_manifest(tmp_path / "corpus", {"a1": {"ang": 3, "hap": 3}, "a2": {"ang": 3, "hap": 3},
                                                   "a3": {"ang": 3, "hap": 3, "neu": 3}})
    recipe = Recipe.model_validate({
        "name": "thin", "data": {"dataset": "manifest", "root": str(manifest)},
        "encoders": [{"plugin": "lld", "options": {"descriptors": ["mfcc", "rms"], "functionals": ["mean", "std"],
                                                   "trim_db": None, "workers": 1}}],
        "fusion": {"plugin": "linear"}, "split": {"kind": "loso"}, "cache": {"dir": str(tmp_path / "cache")}})
    with caplog.at_level(logging.WARNING, logger="fusionkit"):
        m = run(recipe, tmp_path / "run")
    p = m["protocol"]
    assert p["folds"] == 3 and p["split"]["folds"] == 3 and p["split"]["kind"] == "loso"
    thin = {row["fold"]: row["classes"] for row in p["thin_training_classes"]}
    assert thin == {0: {"neu": 3}, 1: {"neu": 3}, 2: {"neu": 0}} and p["min_training_clips"] == 5
    warned = [r.getMessage() for r in caplog.records if "training side" in r.getMessage()]
    assert len(warned) == 3 and any("neu (none)" in w for w in warned) and any("neu (3)" in w for w in warned)
    assert "independent" in p["interval"]
    for s in m["summary"].values():
        assert 0.0 <= s["ci95"][0] <= s["ci95"][1] <= 1.0
    report = (tmp_path / "run" / "report.md").read_text()
    assert "independent" in report
