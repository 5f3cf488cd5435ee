"""Start-up time of the ``fusionkit`` command, measured as whole-process runs.

    python benchmarks/startup.py                # 10 runs per command, writes benchmarks/startup/RESULTS.md
    python benchmarks/startup.py --runs 20 --out /tmp/startup.md

Uses hyperfine when it is on PATH, otherwise times subprocesses itself. Each command runs
with a private, empty cache directory and no progress bars. The target: ``--help`` under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
MACHINE = "2-core x86_64 CPU, 24 GiB, no GPU"
TARGET_HELP_S = 1.0


def fusionkit_exe() -> list[str]:
    exe = Path(sys.executable).with_name("fusionkit")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "fusionkit.cli"]


def commands() -> dict[str, list[str]]:
    fk = fusionkit_exe()
    return {
        "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
        "fusionkit --help": [*fk, "--help"],
        "fusionkit --version": [*fk, "--version"],
        "fusionkit plugins list": [*fk, "plugins", "list"],
        "fusionkit validate demo": [*fk, "validate", "demo"],
    }


def time_subprocess(cmd: list[str], runs: int, env: dict) -> list[float]:
    subprocess.run(cmd, env=env, capture_output=True, check=True)  # warm the OS file cache
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - t)
    return out


def time_hyperfine(cmd: list[str], runs: int, env: dict) -> list[float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as fh:
        subprocess.run(["hyperfine", "--warmup", "1", "--runs", str(runs), "--export-json", fh.name, "-N",
                        " ".join(cmd)], env=env, capture_output=True, check=True)
        return json.load(open(fh.name))["results"][0]["times"]


def heaviest_imports(cmd: list[str], env: dict, n: int = 5) -> list[tuple[str, float]]:
    """The slowest top-level imports (cumulative, from -X importtime) of a command."""
    py_cmd = [sys.executable, "-X", "importtime", "-c",
              "import sys; from fusionkit.cli import main; sys.argv[0] = 'fusionkit'; main()", *cmd[1:]]
    err = subprocess.run(py_cmd, env=env, capture_output=True, text=True).stderr
    rows = []
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line.split("|")
            if not name.startswith("  ") and cumulative.strip().isdigit():  # top level only
                rows.append((name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", type=Path, default=HERE / "startup" / "RESULTS.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fk-startup-") as cache:
        env = {**os.environ, "FUSIONKIT_CACHE_DIR": cache, "FUSIONKIT_PROGRESS": "0"}
        tool = "hyperfine" if shutil.which("hyperfine") else "subprocess timing"
        timer = time_hyperfine if tool == "hyperfine" else time_subprocess
        load_before = os.getloadavg()[0]
        results = {}
        for label, cmd in commands().items():
            times = timer(cmd, args.runs, env)
            results[label] = times
            print(f"{label:<38} median {statistics.median(times):.3f} s  "
                  f"(min {min(times):.3f}, max {max(times):.3f}, n={len(times)})", flush=True)
        load_after = os.getloadavg()[0]
        imports = heaviest_imports(commands()["fusionkit plugins list"], env)
    write_results(args.out, results, tool, args.runs, (load_before, load_after), imports)
    help_median = statistics.median(results["fusionkit --help"])
    verdict = "meets" if help_median < TARGET_HELP_S else "MISSES"
    print(f"--help median {help_median:.3f} s {verdict} the {TARGET_HELP_S:.0f} s target; wrote {args.out}")


def write_results(path: Path, results: dict, tool: str, runs: int, load: tuple, imports: list) -> None:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    help_median = statistics.median(results["fusionkit --help"])
    lines = [
        "# fusionkit start-up time",
        "",
        f"Machine: {MACHINE} ({platform.machine()}, Python {platform.python_version()}). Date: {now}.",
        f"Method: whole-process runs, {runs} per command after one warm-up, timed with {tool}; "
        "private empty cache dir, `FUSIONKIT_PROGRESS=0`. "
        f"1-minute load average {load[0]:.1f} before, {load[1]:.1f} after"
        + (f" (above the {os.cpu_count()} cores: the maxima include waiting for a core)."
           if max(load) > (os.cpu_count() or 1) else "."),
        "",
        "| command | median (s) | min (s) | max (s) |",
        "|---|---:|---:|---:|",
        *[f"| `{label}` | {statistics.median(t):.3f} | {min(t):.3f} | {max(t):.3f} |" for label, t in results.items()],
        "",
        f"Target `fusionkit --help` < {TARGET_HELP_S:.0f} s: **{'met' if help_median < TARGET_HELP_S else 'missed'}** "
        f"(median {help_median:.3f} s).",
        "",
        "`--help` imports click and fusionkit's command modules only; `plugins list` also imports every "
        "plugin module (numpy, pydantic) but no torch, transformers, librosa or xgboost "
        "(tests/test_core_startup.py fails if one sneaks in). Slowest top-level imports of `plugins list` "
        "(cumulative, one run, `-X importtime`):",
        "",
        "| module | seconds |",
        "|---|---:|",
        *[f"| `{name}` | {sec:.3f} |" for name, sec in imports],
        "",
        "Reproduce: `.venv/bin/python benchmarks/startup.py` (`--runs N`, `--out FILE`).",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
