"""Render bench_heads.py JSON lines as the markdown tables of benchmarks/fusion/RESULTS.md.

    .venv/bin/python benchmarks/fusion/make_results.py results.jsonl [more.jsonl ...] > table.md

A later line for the same run label replaces an earlier one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(paths: list[str]) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["label"]] = row
    return rows


def table(rows: list[dict]) -> str:
    out = ["| run | head | encoders | UAR mean | UAR std | UAR per fold | fit s/fold | model KiB "
           "| reload max abs diff |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        diff = r.get("reload_max_diff", r.get("reload"))
        diff = "n/a" if diff is None else (
            f"{diff:.1e}" if not isinstance(diff, bool) else ("<= 5e-7" if diff else "FAIL"))
        out.append(f"| {r['label']} | {r['head']} | {' + '.join(r['encoders'])} | {r['uar']:.3f} | "
                   f"{r['uar_std']:.3f} | {' '.join(f'{u:.3f}' for u in r['uar_folds'])} | {r['fit_s_per_fold']:.1f} | "
                   f"{r['model_kb']:.0f} | {diff} |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    rows = load(argv)
    by_recipe: dict[str, list[dict]] = {}
    for r in rows.values():
        family = r["label"].split("/")[0].split("[")[0]
        family = family[: -len(r["head"]) - 1] if family.endswith("-" + r["head"]) else family
        by_recipe.setdefault(family, []).append(r)
    for recipe, group in by_recipe.items():
        print(f"\n### {recipe}\n")
        print(table(sorted(group, key=lambda r: (len(r["encoders"]) > 1, -r["uar"]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
