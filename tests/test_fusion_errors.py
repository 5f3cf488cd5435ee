"""Fusion heads: bad input gets one clear line naming the encoder, file or field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fusion_fixtures import CLASSES, RELOAD_ATOL, make, split, two_bit_task
from pydantic import ValidationError

from fusionkit.registry import registry
from fusionkit.sdk.heads import HeadFileError, Standardizer, validation_split


def fitted(name="linear"):
    Xtr, ytr, gtr, Xte, _ = split(*two_bit_task(n_speakers=8, per_speaker=8))
    head = make(name)
    head.fit(Xtr, ytr, CLASSES, gtr)
    return head, Xte


@pytest.mark.parametrize("name", ["linear", "late-average", "catboost"])
def test_missing_encoder_is_named(name):
    pytest.importorskip("catboost") if name == "catboost" else None
    head, Xte = fitted(name)
    with pytest.raises(ValueError, match="'b'|\\['b'\\]|b"):
        head.predict_proba({"a": Xte["a"]})


def test_wrong_width_is_named():
    head, Xte = fitted("linear")
    with pytest.raises(ValueError, match="encoder 'b': fitted on 10-dimensional features, got 7"):
        head.predict_proba({"a": Xte["a"], "b": Xte["b"][:, :7]})


def test_neural_head_rejects_other_feature_kind():
    pytest.importorskip("torch")
    head, Xte = fitted("concat-ffn")
    with pytest.raises(ValueError, match="encoder 'a': fitted on pooled features, got sequence"):
        head.predict_proba({"a": [x[None, :] for x in Xte["a"]], "b": Xte["b"]})


def test_load_from_another_heads_folder(tmp_path):
    head, _ = fitted("linear")
    head.save(tmp_path / "m")
    cls = registry().get("fusion", "stacking")
    with pytest.raises(HeadFileError, match=r"head.json: plugin: saved by 'linear', cannot be loaded as 'stacking'"):
        cls.load(tmp_path / "m")


def test_load_damaged_files(tmp_path):
    head, _ = fitted("linear")
    head.save(tmp_path / "m")
    (tmp_path / "m" / "arrays.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(HeadFileError, match="arrays.safetensors: not a readable safetensors file"):
        type(head).load(tmp_path / "m")
    (tmp_path / "m" / "head.json").write_text("{oops")
    with pytest.raises(HeadFileError, match="head.json: not valid JSON"):
        type(head).load(tmp_path / "m")
    with pytest.raises(HeadFileError, match="empty/head.json: missing"):
        type(head).load(tmp_path / "empty")


def test_neural_weights_that_do_not_fit(tmp_path):
    pytest.importorskip("torch")
    head, _ = fitted("concat-ffn")
    head.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "head.json").read_text())
    cfg["options"]["width"] = 16
    (tmp_path / "m" / "head.json").write_text(json.dumps(cfg))
    with pytest.raises(HeadFileError, match="weights do not fit the network described in head.json"):
        type(head).load(tmp_path / "m")


def test_options_are_checked():
    cls = registry().get("fusion", "self-attention")
    with pytest.raises(ValidationError, match="width \\(30\\) must be a multiple of heads \\(4\\)"):
        cls.Options.model_validate({"width": 30})
    late = registry().get("fusion", "late-average")
    with pytest.raises(ValidationError, match="late-fusion head"):
        late.Options.model_validate({"base": "stacking"})
    with pytest.raises(ValidationError, match="base_options.C"):
        late.Options.model_validate({"base": "linear", "base_options": {"C": -1}})
    with pytest.raises(ValidationError, match="unknown fusion plugin 'lineer'; did you mean 'linear'"):
        late.Options.model_validate({"base": "lineer"})
    with pytest.raises(ValidationError):
        registry().get("fusion", "linear").Options.model_validate({"C": 1, "solver": "saga"})


def test_validation_split_holds_out_whole_speakers():
    y = np.tile(np.arange(4), 30)
    groups = np.repeat(np.arange(12), 10)
    tr, va = validation_split(y, groups, 0.25, seed=0)
    assert set(groups[tr]).isdisjoint(groups[va])
    assert len(set(groups[va])) == 3
    assert sorted(np.concatenate([tr, va])) == list(range(120))


def test_standardizer_constant_column():
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    z = Standardizer().fit_transform(x)
    assert np.allclose(z[:, 0], [-1, 1]) and np.allclose(z[:, 1], 0)


@pytest.mark.parametrize("name", ["linear", "xgboost", "catboost", "concat-ffn"])
def test_one_class_training_fold(name, tmp_path):
    pytest.importorskip("torch") if name == "concat-ffn" else None
    pytest.importorskip("catboost") if name == "catboost" else None
    X, y, g = two_bit_task(n_speakers=4, per_speaker=8)
    head = make(name)
    head.fit(X, np.full(len(y), 2), CLASSES, g)
    p = head.predict_proba(X)
    np.testing.assert_allclose(p, np.eye(len(CLASSES))[np.full(len(y), 2)], rtol=0, atol=1e-12)
    head.save(tmp_path / "m")
    np.testing.assert_allclose(type(head).load(tmp_path / "m").predict_proba(X), p, rtol=0, atol=RELOAD_ATOL)
