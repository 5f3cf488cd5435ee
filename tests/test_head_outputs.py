"""A fusion head's predictions are checked where they are used: probabilities that are not (NaN, negative, rows
not summing to 1, another shape) and a head whose saved state does not give back its predictions are one line
naming the head, not numbers in metrics.json and bundles."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from core_fixtures import fake_distribution, fk_env, small_recipe, write_recipe  # noqa: F401

from fusionkit.sdk.heads import HeadOutputError, checked_outputs

ODD_HEAD = """
from typing import Literal

import numpy as np

from fusionkit.sdk import hookimpl
from fusionkit.sdk.heads import FusionHead, pooled_blocks
from fusionkit.sdk.options import Options


class OddOptions(Options):
    mode: Literal["fine", "nan", "unnormalised", "lossy"] = "fine"


class OddHead(FusionHead):
    name = "odd"
    description = "nearest class mean; misbehaves as asked"
    Options = OddOptions

    def _fit(self, X, y, groups):
        x = np.concatenate(pooled_blocks(X, self.encoders), axis=1)
        self.means = np.stack([x[y == k].mean(axis=0) for k in range(len(self.classes))])

    def _predict_proba(self, X):
        x = np.concatenate(pooled_blocks(X, self.encoders), axis=1)
        d = -((x[:, None, :] - self.means[None]) ** 2).sum(axis=2)
        p = np.exp(d - d.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        if self.options.mode == "nan":
            p[0, 0] = np.nan
        if self.options.mode == "unnormalised":
            p = p * 3
        return p

    def _state(self, directory):
        if self.options.mode == "lossy":
            return {}, {"means": np.zeros_like(self.means)}
        return {}, {"means": self.means}

    def _restore(self, config, arrays, directory):
        self.means = arrays["means"]


@hookimpl
def register_fusions(register):
    register(OddHead)
"""


def test_checked_outputs_names_the_head_and_the_fault():
    good = np.array([[0.25, 0.75], [1.0, 0.0]])
    assert checked_outputs("h", good, 2, 2, probabilities=True) is not None
    for values, message in [(good[:1], r"shape \(1, 2\) for 2 clips and 2 classes"),
                            ([[np.nan, 1.0], [0.5, 0.5]], "1 of its probabilities are NaN or inf"),
                            ([[-0.5, 1.5], [0.5, 0.5]], "negative or do not sum to 1 \\(row 0"),
                            ([[0.5, 0.6], [0.5, 0.5]], "sum 1.1")]:
        with pytest.raises(HeadOutputError, match=f"fusion head 'h': .*{message}"):
            checked_outputs("h", values, 2, 2, probabilities=True)
    assert checked_outputs("r", [[3.0], [-2.0]], 2, 1, probabilities=False).shape == (2, 1)
    assert checked_outputs("r", [3.0, -2.0], 2, 1, probabilities=False).shape == (2, 1)  # one target's (N,) values
    with pytest.raises(HeadOutputError, match=r"shape \(3,\) for 2 clips and 1 targets"):
        checked_outputs("r", [3.0, -2.0, 1.0], 2, 1, probabilities=False)


@pytest.mark.parametrize("mode, message", [
    ("nan", "fusion head 'odd': 1 of its probabilities are NaN or inf"),
    ("unnormalised", "fusion head 'odd': 16 row(s) of its probabilities are negative or do not sum to 1"),
    ("lossy", "fusion head 'odd': loaded back from"),
])
def test_a_run_refuses_what_a_head_gets_wrong(tmp_path, monkeypatch, fk_env, mode, message):
    from fusionkit import registry as plugins
    from fusionkit.cli import main

    site = fake_distribution(tmp_path / "site", "fk-misbehaving-head", {"fusion": {"odd": "fk_misbehaving_head"}},
                             {"fk_misbehaving_head": ODD_HEAD})
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    fine = write_recipe(tmp_path / "fine.yaml", small_recipe(fusion={"plugin": "odd"}))
    ok = CliRunner().invoke(main, ["run", str(fine), "--out", str(tmp_path / "ok")])
    assert ok.exit_code == 0, ok.output
    odd = write_recipe(tmp_path / "odd.yaml", small_recipe(fusion={"plugin": "odd", "options": {"mode": mode}}))
    ran = CliRunner().invoke(main, ["run", str(odd), "--out", str(tmp_path / "out")])
    assert ran.exit_code == 1 and message in ran.stderr, ran.output
    assert not (tmp_path / "out" / "metrics.json").exists()
