"""A plugin whose own code fails is named in the one error line, by run and by validate, never a traceback; what a
dataset plugin gives is checked (string labels, a speaker for speaker-independent splits)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from core_fixtures import fake_distribution, fk_env, small_recipe, write_recipe  # noqa: F401

FAULTY = """
from typing import Literal

import numpy as np

from fusionkit.sdk import hookimpl
from fusionkit.sdk.base import Clip, Encoder, Options
from fusionkit_plugins.datasets.synthetic import Synthetic, SyntheticOptions
from fusionkit_plugins.xgboost_head import XGBoostHead


class FaultyOptions(Options):
    mode: Literal["init", "load"] = "init"


class Faulty(Encoder):
    name = "faulty"
    Options = FaultyOptions

    def __init__(self, options):
        super().__init__(options)
        if options.mode == "init":
            raise RuntimeError("boom in __init__")

    def load(self):
        raise RuntimeError("boom in load")

    def encode_batch(self, inputs):
        return [{"features": np.zeros(2, dtype=np.float32)} for _ in inputs]


class OddCorpusOptions(SyntheticOptions):
    mode: Literal["clips", "int_labels", "no_speaker"] = "clips"


class OddCorpus(Synthetic):
    name = "odd-corpus"
    Options = OddCorpusOptions

    def clips(self):
        clips = super().clips()
        if self.options.mode == "clips":
            raise RuntimeError("dataset boom")
        for i, c in enumerate(clips):
            if self.options.mode == "int_labels":
                c.label = i % 2
            else:
                c.speaker = None
        return clips


class Unmakeable(XGBoostHead):
    name = "unmakeable"

    def __init__(self, options, seed=0):
        raise RuntimeError("head boom in __init__")


@hookimpl
def register_encoders(register):
    register(Faulty)


@hookimpl
def register_datasets(register):
    register(OddCorpus)


@hookimpl
def register_fusions(register):
    register(Unmakeable)
"""

SYNTH = {"speakers": 4, "clips_per_class": 2}


@pytest.fixture
def faulty(tmp_path, monkeypatch, fk_env):
    from fusionkit import registry as plugins

    site = fake_distribution(tmp_path / "site", "fk-faulty",
                             {k: {"faulty": "fk_faulty"} for k in ("encoder", "dataset", "fusion")},
                             {"fk_faulty": FAULTY})
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    return tmp_path


@pytest.mark.parametrize("change, message, code", [
    ({"encoders": [{"plugin": "faulty"}]}, "encoder 'faulty': RuntimeError: boom in __init__", 1),
    ({"encoders": [{"plugin": "faulty", "options": {"mode": "load"}}]}, "encoder 'faulty': RuntimeError: boom in load",
     1),
    ({"data": {"dataset": "odd-corpus", "options": SYNTH}}, "dataset 'odd-corpus': RuntimeError: dataset boom", 1),
    ({"data": {"dataset": "odd-corpus", "options": {**SYNTH, "mode": "int_labels"}}},
     "dataset 'odd-corpus': clip ", 1),
    ({"data": {"dataset": "odd-corpus", "options": {**SYNTH, "mode": "no_speaker"}}},
     "dataset 'odd-corpus': 32 clip(s) have no speaker", 2),
    ({"fusion": {"plugin": "unmakeable"}}, "fusion head 'unmakeable': RuntimeError: head boom in __init__", 1),
])
def test_a_failing_plugin_is_named_in_one_line(faulty, change, message, code):
    from fusionkit.cli import main

    recipe = write_recipe(faulty / "r.yaml", small_recipe(**change))
    ran = CliRunner().invoke(main, ["run", str(recipe), "--out", str(faulty / "out")])
    assert ran.exit_code == code and message in ran.stderr, ran.output
    assert "Traceback" not in ran.output and "unexpected" not in ran.stderr
    if "load" not in message:  # validate makes every plugin but loads no model
        checked = CliRunner().invoke(main, ["validate", str(recipe)])
        said = message.replace("encoder 'faulty'", "encoders.0 (faulty)")  # validate says where in the recipe
        assert checked.exit_code == 2 and said in checked.stderr, checked.output
        assert "Traceback" not in checked.output
