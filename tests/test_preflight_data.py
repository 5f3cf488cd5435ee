"""What a recipe cannot do with its corpus fails before anything is encoded, and validate reports the same; clips
no fold uses are passed over and listed, not encoded."""

from __future__ import annotations

import json

from click.testing import CliRunner
from core_fixtures import fk_env, small_recipe, write_recipe  # noqa: F401


def invoke(*args: str):
    from fusionkit.cli import main

    return CliRunner().invoke(main, list(args))


def encoded_entries(cache) -> list:
    return [p for p in cache.glob("*/*") if p.parent.name.startswith("lld")] if cache.exists() else []


def test_a_split_the_corpus_cannot_give_fails_before_encoding(tmp_path, fk_env):
    for change, message in [({"split__folds": 9}, "split.folds is 9 but the data has only 4 speakers"),
                            ({"split__kind": "session"}, "split.kind 'session': 32 clips have no session"),
                            ({"normalize": "speaker", "encoders": [{"plugin": "lld", "options": {"pooling": "none"}}]},
                             "normalize: speaker needs pooled features; lld gives frame sequences")]:
        recipe = write_recipe(tmp_path / "r.yaml", small_recipe(**change))
        checked = invoke("validate", str(recipe))
        assert checked.exit_code == 2 and message in checked.stderr, checked.output
        ran = invoke("run", str(recipe), "--out", str(tmp_path / "out"))
        assert ran.exit_code == 2 and message in ran.stderr, ran.output
        assert not encoded_entries(fk_env)  # refused before the first clip was encoded
    fine = write_recipe(tmp_path / "ok.yaml", small_recipe())
    checked = invoke("validate", str(fine))
    assert checked.exit_code == 0 and "valid" in checked.output


def test_clips_a_split_file_leaves_out_are_listed_and_not_encoded(tmp_path, fk_env):
    from fusionkit.pipeline.data import select
    from fusionkit.recipe import load_recipe

    recipe = write_recipe(tmp_path / "r.yaml", small_recipe())
    clips = select(load_recipe(str(recipe))).train
    by_speaker = {}
    for clip in clips:
        by_speaker.setdefault(clip.speaker, []).append(clip.id)
    speakers = sorted(by_speaker)
    listed = {cid: i % 2 for i, s in enumerate(speakers[:3]) for cid in by_speaker[s]}  # the 4th speaker unlisted
    split = tmp_path / "folds.csv"
    split.write_text("".join(f"{cid},{fold}\n" for cid, fold in listed.items()))
    write_recipe(recipe, small_recipe(split={"kind": "file", "file": str(split)}))
    ran = invoke("run", str(recipe), "--out", str(tmp_path / "out"))
    assert ran.exit_code == 0, ran.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    left = {row["clip"]: row["reason"] for row in metrics["skipped"]}
    assert set(left) == set(by_speaker[speakers[3]])
    assert all(reason.startswith("not listed in split.file") for reason in left.values())
    assert metrics["embeddings"]["computed"] == len(listed) and metrics["n_clips"] == len(listed)
