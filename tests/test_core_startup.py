"""`fusionkit --help` and `fusionkit plugins list` must not import heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "sentence_transformers", "ctranslate2", "faster_whisper", "opensmile",
         "catboost", "xgboost", "librosa", "numba", "sklearn", "matplotlib", "silero_vad", "tensorflow")

PROBE = """
import json, sys
from fusionkit.cli import main
sys.argv[0] = "fusionkit"
try:
    main({args!r})
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print("@@" + json.dumps({{"code": code, "heavy": heavy}}))
"""


def probe(args: list[str], tmp_path) -> dict:
    env = {"FUSIONKIT_CACHE_DIR": str(tmp_path), "FUSIONKIT_PROGRESS": "0", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)], capture_output=True,
                          text=True, env=env, timeout=60)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("@@"))
    return {**json.loads(line[2:]), "stdout": proc.stdout, "stderr": proc.stderr}


@pytest.mark.parametrize("args", [["--help"], ["plugins", "list"], ["plugins", "list", "--json"], ["--version"],
                                  ["cache", "info"]])
def test_cli_imports_nothing_heavy(args, tmp_path):
    out = probe(args, tmp_path)
    assert out["code"] in (0, None), out["stderr"]
    assert out["heavy"] == [], f"fusionkit {' '.join(args)} imported {out['heavy']}; move those imports into methods"
    assert "warning" not in out["stderr"], out["stderr"]


def test_help_lists_the_core_commands(tmp_path):
    out = probe(["--help"], tmp_path)
    for command in ("run", "validate", "plugins", "cache"):
        assert f"  {command} " in out["stdout"]


def test_every_command_is_attached_and_help_loads_none_of_their_logic(tmp_path):
    code = ("import sys; from fusionkit.cli import main; main(['--help'], 'fusionkit', standalone_mode=False); "
            "print('@@' + ' '.join(m for m in ('fusionkit.bench', 'fusionkit.bundle', 'fusionkit.pipeline.run') "
            "if m in sys.modules))")
    env = {"FUSIONKIT_CACHE_DIR": str(tmp_path), "FUSIONKIT_PROGRESS": "0", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("bench", "export", "predict"):
        assert f"  {command} " in proc.stdout, proc.stdout
    loaded = next(l for l in proc.stdout.splitlines() if l.startswith("@@"))[2:]
    assert loaded == "", f"fusionkit --help imported {loaded}; import it inside the command body"
    assert proc.stderr == ""
