"""The ``folders`` dataset: a corpus described by its folder layout (CASIA, URDU, TurEV-DB styles)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from core_fixtures import ROOT, encoder_module, fake_distribution, fk_env  # noqa: F401
from protocol_fakes import write_tone

from fusionkit.cli import main
from fusionkit_plugins.datasets.folders import Folders, FoldersOptions

CASIA_SPEAKERS = ("liuchang", "wangzhe", "zhaoquanyin")
CASIA_EMOTIONS = ("angry", "happy", "neutral", "sad")
CASIA_OPTIONS = {"label_from": {"folder": -1}, "speaker_from": {"folder": 0}}
URDU_PATTERN = r"(?P<speaker>[^/_]+)_[^/_]+_(?P<label>[A-Z])\d+\.wav$"
URDU_OPTIONS = {"label_from": {"field": -1, "regex": r"^([A-Z])\d+$"}, "speaker_from": {"field": 0}}
URDU_LETTERS = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}


def casia_tree(root: Path) -> Path:
    """speaker folder / emotion folder / numbered files, plus a stray WAV, a macOS ._ file and a text file."""
    for s, speaker in enumerate(CASIA_SPEAKERS):
        for e, emotion in enumerate(CASIA_EMOTIONS):
            for n in (201, 202):
                write_tone(root / speaker / emotion / f"{n}.wav", 150 + 40 * e + 7 * s, seconds=0.05)
    write_tone(root / "stray.wav", seconds=0.05)
    (root / "liuchang" / "angry" / "._201.wav").write_bytes(b"\0\5\26\7 not audio")
    (root / "README.txt").write_text("CASIA (a small stand-in)\n")
    return root


def urdu_tree(root: Path) -> Path:
    """Emotion folders holding SM<n>_F<n>_<letter><nnn>.wav; speakers SM1 and SM2; one file not so named."""
    for letter, folder in URDU_LETTERS.items():
        for s in (1, 2):
            for n in (1, 2):
                write_tone(root / folder.capitalize() / f"SM{s}_F{n}_{letter}0{s}{n}.wav", seconds=0.05)
    write_tone(root / "Sad" / "SM3-F1-S01.wav", seconds=0.05)
    return root


def dataset(root: Path, **options) -> Folders:
    return Folders(root, FoldersOptions.model_validate(options))


def recipe_file(folder: Path, root: Path, options: dict, **extra) -> Path:
    recipe = {"name": "casia-folders", "data": {"dataset": "folders", "root": str(root), "options": options},
              "encoders": [{"plugin": "lld"}], "fusion": {"plugin": "linear"},
              "split": {"kind": "speaker-kfold", "folds": 3}, **extra}
    path = folder / "casia.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_casia_layout_speaker_and_emotion_folders(tmp_path):
    found = dataset(casia_tree(tmp_path / "CASIA"), **CASIA_OPTIONS).survey()
    assert len(found.clips) == 24
    clip = next(c for c in found.clips if c.id == "wangzhe/sad/202")
    assert (clip.label, clip.speaker, clip.path.name) == ("sad", "wangzhe", "202.wav")
    assert {c.speaker for c in found.clips} == set(CASIA_SPEAKERS)
    assert {c.label for c in found.clips} == set(CASIA_EMOTIONS)
    assert dict(found.unplaced) == {
        "liuchang/angry/._201.wav": "hidden (a name in its path starts with '.', e.g. a macOS ._ file)",
        "stray.wav": "label: no folder -1 (the file lies directly under root)",
    }
    assert dict(found.other) == {".txt": 1}


def test_unplaced_files_are_reported_by_a_run_of_the_dataset(tmp_path, caplog):
    ds = dataset(casia_tree(tmp_path / "CASIA"), **CASIA_OPTIONS)
    with caplog.at_level("WARNING", logger="fusionkit"):
        clips = ds.clips()
    assert len(clips) == 24 and len(ds.unplaced) == 2
    assert "2 audio file(s) could not be placed" in caplog.text and "stray.wav" in caplog.text


def test_urdu_names_by_fields_or_by_pattern_agree(tmp_path):
    root = urdu_tree(tmp_path / "URDU")
    by_fields = dataset(root, **URDU_OPTIONS).survey()
    by_pattern = dataset(root, pattern=URDU_PATTERN).survey()
    for found in (by_fields, by_pattern):
        assert len(found.clips) == 16
        assert {c.speaker for c in found.clips} == {"SM1", "SM2"}
        assert {c.label for c in found.clips} == set(URDU_LETTERS)
        assert [p for p, _ in found.unplaced] == ["Sad/SM3-F1-S01.wav"]
    triples = [[(c.id, c.label, c.speaker) for c in found.clips] for found in (by_fields, by_pattern)]
    assert triples[0] == triples[1]
    assert dict(by_fields.unplaced)["Sad/SM3-F1-S01.wav"] == "label: regex ^([A-Z])\\d+$ does not match 'SM3-F1-S01'"
    assert dict(by_pattern.unplaced)["Sad/SM3-F1-S01.wav"] == "does not match pattern"


def test_turevdb_layout_emotion_folder_speaker_in_name_and_pattern_extras(tmp_path):
    root = tmp_path / "TurEV"
    for emotion in ("Angry", "Calm", "Happy", "Sad"):
        for speaker in ("1157", "2080"):
            write_tone(root / emotion / f"{speaker}_{emotion.lower()}_elma.wav", seconds=0.05)
    found = dataset(root, label_from={"folder": -1}, speaker_from={"field": 0}).survey()
    assert len(found.clips) == 8 and not found.unplaced
    assert {(c.speaker, c.label) for c in found.clips} >= {("1157", "Angry"), ("2080", "Sad")}
    pattern = r"(?P<label>\w+)/(?P<speaker>\d+)_\w+?_(?P<word>\w+)\.wav$"
    clip = dataset(root, pattern=pattern).survey().clips[0]
    assert (clip.label, clip.speaker, clip.meta) == ("Angry", "1157", {"word": "elma"})


def test_repeated_ids_and_empty_values_are_listed(tmp_path):
    root = tmp_path / "c"
    for rel in ("s1/happy/a.wav", "s1/happy/a.flac", "s2/123/b.wav"):
        write_tone(root / rel, seconds=0.05)
    (root / "s2" / "sad").mkdir()
    (root / "s2" / "sad" / "gone.wav").symlink_to(root / "nowhere.wav")
    (root / "s2" / "sad" / "folder.wav").mkdir()
    found = dataset(root, pattern=r"(?P<speaker>[^/]+)/(?P<label>[a-z]*)[^/]*/(?P<id>[^/.]+)\.").survey()
    assert [c.id for c in found.clips] == ["a"]
    assert dict(found.unplaced) == {"s1/happy/a.wav": "clip id 'a' is already used by s1/happy/a.flac",
                                    "s2/123/b.wav": "empty label",
                                    "s2/sad/gone.wav": "not a readable file (a link to nothing?)"}


def test_pattern_groups_give_meta_sessions_and_partitions(tmp_path):
    root = tmp_path / "c"
    for rel in ("train/s1/happy/a.wav", "test/s2/sad/b.wav"):
        write_tone(root / rel, seconds=0.05)
    ds = dataset(root, pattern=r"(?P<partition>\w+)/(?P<speaker>s(?P<session>\d))/(?P<label>\w+)/", suffixes=["WAV"])
    assert ds.partitions() == {"test/s2/sad/b": "test", "train/s1/happy/a": "train"}
    assert ds.clips()[0].meta == {"partition": "test", "session": "2"}


def run_validate(recipe: Path, *args: str):
    return CliRunner().invoke(main, ["validate", str(recipe), *args])


@pytest.mark.parametrize("options, message", [
    ({"pattern": r"(?P<label>[^/]+)/"}, "data.options.pattern: needs the named group(s) (?P<speaker>...)"),
    ({"pattern": r"(?P<label>[^/]+)/(?P<speaker>"}, "data.options.pattern: not a valid regular expression"),
    ({"label_from": {"folder": -1}}, ("data.options: describe the layout: give pattern (named groups label and "
                                      "speaker), or label_from and speaker_from (speaker_from missing)")),
    ({"pattern": "(?P<label>a)(?P<speaker>b)", "speaker_from": {"folder": 0}},
     "data.options: give pattern or label_from/speaker_from, not both (speaker_from given)"),
    ({**CASIA_OPTIONS, "speaker_from": {"folder": 0, "field": 1}}, "data.options.speaker_from: give folder or field"),
    ({**CASIA_OPTIONS, "label_from": {"sep": "-"}}, "data.options.label_from: give folder, field or regex"),
    ({**CASIA_OPTIONS, "label_from": {"regex": "("}}, "data.options.label_from.regex: not a valid regular"),
    ({**CASIA_OPTIONS, "label_from": {"folders": 1}}, "data.options.label_from.folders: unknown field"),
])
def test_bad_descriptions_are_one_line_each(tmp_path, options, message):
    result = run_validate(recipe_file(tmp_path, tmp_path, options))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output


def test_validate_prints_what_the_layout_gives(tmp_path, monkeypatch):
    root = casia_tree(tmp_path / "CASIA")
    monkeypatch.chdir(tmp_path)
    result = run_validate(recipe_file(tmp_path, root, CASIA_OPTIONS))
    assert result.exit_code == 0, result.output
    text = result.output.replace(str(root), "/data/CASIA")
    assert "data: 24 clips, 4 classes, 3 speakers under /data/CASIA" in text
    assert re.search(r"^\s+liuchang\s+2\s+2\s+2\s+2\s+8$", text, re.MULTILINE), text
    assert "could not place 2 audio file(s):" in text and "  stray.wav: label: no folder -1" in text
    assert "other files (not audio, not read): 1 (.txt 1)" in text


def test_docs_show_the_validate_output_of_the_casia_tree(tmp_path, monkeypatch):
    root = casia_tree(tmp_path / "CASIA")
    monkeypatch.chdir(tmp_path)
    recipe = recipe_file(tmp_path, root, CASIA_OPTIONS)
    output = run_validate(recipe.relative_to(tmp_path)).output.replace(str(root), "/data/CASIA")
    docs = (ROOT / "docs" / "datasets.md").read_text()
    block = re.search(r"```console\n\$ fusionkit validate casia\.yaml\n(.*?)```", docs, re.DOTALL)
    assert block, "docs/datasets.md: no console block for `fusionkit validate casia.yaml`"
    assert block.group(1) == output


def test_validate_labels_map_and_include_are_shown(tmp_path):
    root = urdu_tree(tmp_path / "URDU")
    labels = {"map": URDU_LETTERS, "include": ["angry", "happy", "sad"]}
    recipe = recipe_file(tmp_path, root, URDU_OPTIONS, data={"dataset": "folders", "root": str(root),
                                                             "options": URDU_OPTIONS, "labels": labels},
                         split={"kind": "loso"})  # two speakers
    result = run_validate(recipe)
    assert result.exit_code == 0, result.output
    assert "classes: angry 4, happy 4, neutral 4, sad 4" in result.output
    assert "not in data.labels.include (left out of a run): neutral 4" in result.output
    header = r"^\s+speaker\s+angry\s+happy\s+neutral\s+sad\s+total$"
    assert re.search(header, result.output, re.MULTILINE), result.output


def test_validate_refuses_more_folds_than_the_folders_hold_speakers(tmp_path):
    root = urdu_tree(tmp_path / "URDU")
    result = run_validate(recipe_file(tmp_path, root, URDU_OPTIONS))  # 3 folds
    assert result.exit_code == 2
    assert "split.folds is 3 but the data has only 2 speakers" in result.output


def test_validate_refuses_a_layout_that_places_nothing(tmp_path):
    root = urdu_tree(tmp_path / "URDU")
    result = run_validate(recipe_file(tmp_path, root, {"pattern": r"(?P<speaker>x)(?P<label>y)"}))
    assert result.exit_code == 2
    assert "data.root: no audio file could be placed (17 file(s): e.g. Angry/SM1_F1_A011.wav: does not match " \
           "pattern)" in result.output


def test_a_recipe_runs_through_the_casia_tree(tmp_path, monkeypatch, fk_env):  # noqa: F811
    from fusionkit.pipeline.run import run
    from fusionkit.recipe import load_recipe

    site = fake_distribution(tmp_path / "site", "fk-folders-numpy", {"encoder": {"folders-numpy": "fk_folders_numpy"}},
                             {"fk_folders_numpy": encoder_module("folders-numpy", "FoldersNumpy")})
    monkeypatch.syspath_prepend(str(site))
    root = casia_tree(tmp_path / "CASIA")
    recipe = recipe_file(tmp_path, root, CASIA_OPTIONS, encoders=[{"plugin": "folders-numpy"}])
    metrics = run(load_recipe(recipe), tmp_path / "run")
    assert metrics["n_clips"] == 24 and len(metrics["folds"]) == 3
    assert metrics["classes"] == list(CASIA_EMOTIONS)
    assert sorted(s for f in metrics["folds"] for s in f["test_speakers"]) == list(CASIA_SPEAKERS)
    assert 0.0 <= metrics["uar"] <= 1.0
