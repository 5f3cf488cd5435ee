"""Recipes: every problem on its own line with file and dotted path, overrides, path resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from core_fixtures import fk_env, small_recipe, write_recipe  # noqa: F401


def validate(path: Path, *sets: str):
    from fusionkit.cli import main

    args = ["validate", str(path)] + [a for s in sets for a in ("--set", s)]
    return CliRunner().invoke(main, args)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def test_misspelled_plugin_and_bad_numbers_each_get_a_line(tmp_path, fk_env):
    recipe = small_recipe()
    recipe["fusion"] = {"plugin": "xgbost"}
    recipe["split"]["folds"] = "four"
    path = write_recipe(tmp_path / "bad.yaml", recipe)
    result = validate(path)
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 2, result.stderr
    plugin_line = next(l for l in lines if "fusion.plugin" in l)
    assert plugin_line.startswith(f"error: {path}: fusion.plugin: unknown fusion plugin 'xgbost'")
    assert "did you mean 'xgboost'" in plugin_line
    folds_line = next(l for l in lines if "split.folds" in l)
    assert folds_line.startswith(f"error: {path}: split.folds: ") and "'four'" in folds_line and "integer" in folds_line
    assert "Traceback" not in result.output


def test_bad_plugin_option_and_bad_folds(tmp_path, fk_env):
    path = write_recipe(tmp_path / "bad.yaml", small_recipe(fusion__options={"n_estimators": "many"},
                                                             split__folds="four"))
    result = validate(path)
    assert result.exit_code == 2
    lines = error_lines(result)
    assert len(lines) == 2, result.stderr
    assert any(f"{path}: fusion.options.n_estimators: " in l and "'many'" in l for l in lines)
    assert any(f"{path}: split.folds: " in l and "'four'" in l for l in lines)


def test_unknown_and_missing_fields(tmp_path, fk_env):
    recipe = small_recipe()
    recipe["encoderz"] = recipe.pop("encoders")
    recipe["encoderz"][0]["options"]["n_mfc"] = 13
    recipe["split"]["fold"] = 3
    path = write_recipe(tmp_path / "r.yaml", recipe)
    lines = error_lines(validate(path))
    assert f"error: {path}: encoders: required field is missing" in lines
    assert f"error: {path}: encoderz: unknown field" in lines
    assert f"error: {path}: split.fold: unknown field" in lines
    # plugin options are checked against the plugin's own model
    path = write_recipe(tmp_path / "r2.yaml", small_recipe(encoders=[{"plugin": "lld", "options": {"n_mfc": 13}}]))
    assert error_lines(validate(path)) == [f"error: {path}: encoders.0.options.n_mfc: unknown field"]


def test_bad_yaml_names_the_line(tmp_path, fk_env):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ndata:\n  dataset: synthetic\n  root: [unclosed\nencoders: []\n")
    result = validate(path)
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert line.startswith(f"error: {path}:") and "not valid YAML" in line
    assert int(line.split(f"{path}:")[1].split(":")[0]) in (4, 5)
    path.write_text("- just\n- a list\n")
    assert error_lines(validate(path)) == [f"error: {path}: a recipe is a YAML mapping, got list"]


def test_unknown_recipe_reference(fk_env):
    result = validate(Path("no-such-recipe"))
    assert result.exit_code == 2
    assert "no such recipe file, and not a built-in recipe (" in result.stderr and "demo" in result.stderr


def test_set_overrides(tmp_path, fk_env, monkeypatch):
    from fusionkit.recipe import load_recipe

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    path = write_recipe(tmp_path / "r.yaml", small_recipe())
    monkeypatch.chdir(tmp_path)
    r = load_recipe(path, ["seed=3", "encoders.0.options.n_mfcc=13", "fusion.options.learning_rate=0.1",
                           "data.root=corpus", "split.kind=loso", "name=with spaces"])
    assert r.seed == 3 and isinstance(r.seed, int)
    assert r.encoders[0].options["n_mfcc"] == 13
    assert r.fusion.options["learning_rate"] == pytest.approx(0.1)
    assert r.data.root == corpus.resolve()  # relative to the working directory, made absolute
    assert r.split.kind == "loso" and r.name == "with spaces"
    # appending an encoder at the end of the list
    r = load_recipe(path, ["encoders.1.plugin=lld", "encoders.1.name=lld-small", "encoders.1.options.n_mfcc=5"])
    assert [e.key for e in r.encoders] == ["lld", "lld-small"] and r.encoders[1].options == {"n_mfcc": 5}


def test_bad_set_overrides(tmp_path, fk_env):
    path = write_recipe(tmp_path / "r.yaml", small_recipe())
    result = validate(path, "encoders.5.options.n_mfcc=13")
    assert result.exit_code == 2
    assert error_lines(result) == ["error: --set encoders.5.options.n_mfcc=13: no such place in the recipe "
                                   "(encoders has 1 item)"]
    assert error_lines(validate(path, "seed")) == ["error: --set seed: expected key.path=value"]
    assert error_lines(validate(path, "=1")) == ["error: --set =1: expected key.path=value"]
    lines = error_lines(validate(path, "split.folds=four"))
    assert len(lines) == 1 and "split.folds" in lines[0] and "'four'" in lines[0]
    lines = error_lines(validate(path, "encoders.0.options.n_mfcc=1000"))
    assert len(lines) == 1 and "encoders.0.options.n_mfcc" in lines[0] and "128" in lines[0]


def test_paths_resolve_against_the_recipe_folder(tmp_path, fk_env, monkeypatch):
    from fusionkit.recipe import load_recipe

    (tmp_path / "recipes").mkdir()
    (tmp_path / "corpus").mkdir()
    path = write_recipe(tmp_path / "recipes" / "r.yaml",
                        small_recipe(data__root="../corpus", cache={"dir": "../cache"}))
    monkeypatch.chdir("/")
    r = load_recipe(path)
    assert r.data.root == (tmp_path / "corpus").resolve()
    assert r.cache.dir == (tmp_path / "cache").resolve()
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write_recipe(tmp_path / "r2.yaml", small_recipe(data__root="~/corpus"))
    assert load_recipe(path).data.root == tmp_path / "corpus"


def test_wrong_data_root_is_one_clear_line(tmp_path, fk_env):
    path = write_recipe(tmp_path / "r.yaml", small_recipe(data={"dataset": "ravdess", "root": str(tmp_path / "nope")}))
    assert error_lines(validate(path)) == [f"error: {path}: data.root: {tmp_path / 'nope'} does not exist"]
    path = write_recipe(tmp_path / "r2.yaml", small_recipe(data={"dataset": "ravdess"}))
    (line,) = error_lines(validate(path))
    assert "data.root: the ravdess dataset needs the corpus folder (--set data.root=PATH)" in line
    result = validate(path, f"data.root={tmp_path}")  # the root is taken; the corpus is then read: nothing there
    assert result.exit_code == 2 and "data: dataset 'ravdess' at" in result.output
    assert "yielded no labelled clips" in result.output


def test_valid_recipe_and_builtin_demo(tmp_path, fk_env):
    path = write_recipe(tmp_path / "r.yaml", small_recipe())
    result = validate(path)
    assert result.exit_code == 0 and "valid" in result.output
    result = validate(Path("demo"))
    assert result.exit_code == 0, result.output


def test_dump_round_trips(tmp_path, fk_env):
    from fusionkit.recipe import dump, load_recipe

    r = load_recipe(write_recipe(tmp_path / "r.yaml", small_recipe(seeds=[1, 2])))
    again = tmp_path / "again.yaml"
    again.write_text(dump(r))
    assert load_recipe(again) == r
    assert yaml.safe_load(dump(r))["seeds"] == [1, 2]


def test_messages_for_choices_duplicates_and_paths_together(tmp_path, fk_env):
    recipe = small_recipe(split__kind="kfold", data={"dataset": "ravdess"})
    recipe["encoders"].append({"plugin": "lld"})
    path = write_recipe(tmp_path / "r.yaml", recipe)
    lines = error_lines(validate(path))
    assert any("split.kind: input should be 'speaker-kfold'" in l and "got 'kfold'; did you mean 'speaker-kfold'?" in l
               for l in lines), lines
    assert f"error: {path}: encoders: encoder names must be unique; give each a 'name:' (lld repeated)" in lines
    # a missing corpus folder is reported in the same pass as the typo in a plugin name
    recipe = small_recipe(data={"dataset": "ravdess", "root": str(tmp_path / "nope")}, fusion={"plugin": "xgbost"})
    path = write_recipe(tmp_path / "r2.yaml", recipe)
    lines = error_lines(validate(path))
    assert len(lines) == 2, lines
    assert "did you mean 'xgboost'" in lines[0] and lines[1].endswith(f"data.root: {tmp_path / 'nope'} does not exist")
    path = write_recipe(tmp_path / "r3.yaml", small_recipe(fusion="xgboost"))
    assert error_lines(validate(path)) == [f"error: {path}: fusion: input should be a valid dictionary, got 'xgboost'"]


def test_problems_caused_by_set_say_so(tmp_path, fk_env):
    path = write_recipe(tmp_path / "r.yaml", small_recipe(fusion__options={"max_depth": "deep"}))
    result = validate(path, "split.folds=four", "fusion.options.n_estimators=5", "encoders.0.options.n_mfc=3")
    lines = error_lines(result)
    assert len(lines) == 3, lines
    assert any("split.folds" in l and l.endswith("(from --set split.folds=four)") for l in lines)
    assert any("encoders.0.options.n_mfc: unknown field (from --set encoders.0.options.n_mfc=3)" in l for l in lines)
    (depth,) = [l for l in lines if "max_depth" in l]
    assert "--set" not in depth  # that one is the file's own doing


def test_text_section_is_checked_against_the_encoders(tmp_path, fk_env):
    recipe = small_recipe()
    recipe["text"] = {"source": "asr", "options": {"beam_sise": 3, "beam_size": 0}}
    lines = error_lines(validate(write_recipe(tmp_path / "asr.yaml", recipe)))
    assert len(lines) == 2 and "text.options.beam_sise: unknown field" in " ".join(lines), lines
    assert "text.options.beam_size: Input should be greater than or equal to 1" in " ".join(lines)
    recipe["text"] = {"source": "dataset", "options": {"beam_size": 3}}
    lines = error_lines(validate(write_recipe(tmp_path / "opts.yaml", recipe)))
    assert len(lines) == 1 and "text.options: decoding options apply to text.source: asr" in lines[0], lines
    recipe["text"] = {"source": "none"}
    recipe["encoders"].append({"plugin": "sentence-transformers"})
    result = validate(write_recipe(tmp_path / "none.yaml", recipe))
    lines = error_lines(result)
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert "encoders.1: 'sentence-transformers' encodes text but text.source is none" in lines[0]


def test_a_model_reference_that_does_not_resolve_is_one_plain_line(tmp_path, fk_env):
    """Not reported as an unexpected error: the line names the reference and the reason, exit 1."""
    from fusionkit.cli import main

    recipe = small_recipe(encoders=[{"plugin": "hf-text", "options": {"model": "pkg:no-such-distribution"}}])
    path = write_recipe(tmp_path / "r.yaml", recipe)
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert error_lines(result) == [f"error: {path}: pkg:no-such-distribution: distribution not installed "
                                   f"(pip install no-such-distribution)"], result.stderr
