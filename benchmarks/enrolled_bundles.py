"""Speaker normalisation applied by exported bundles, fold by fold.

For a run trained with ``normalize: speaker``: each fold is exported as a bundle, and each of that fold's test
speakers is enrolled from their own clips (unlabelled audio) and labelled through the bundle, exactly as a user
would with ``fusionkit predict BUNDLE FILES --enrol-self``. Prints per-fold UAR of the run and of the bundles.

    python benchmarks/enrolled_bundles.py RUN_DIR [--out bundles-dir]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import fusionkit
from fusionkit.bundle.export import export
from fusionkit.pipeline.data import load_dataset
from fusionkit.recipe import load_recipe


def uar(true: list[str], pred: list[str]) -> float:
    classes = sorted(set(true))
    t, p = np.array(true), np.array(pred)
    return float(np.mean([(p[t == c] == c).mean() for c in classes]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="where the fold bundles go (default: a temporary folder)")
    args = ap.parse_args()
    recipe = load_recipe(args.run / "recipe.yaml")
    if recipe.normalize != "speaker":
        raise SystemExit(f"{args.run}: trained with normalize: {recipe.normalize}, not speaker")
    paths = {c.id: c.path for c in load_dataset(recipe).clips()}
    if recipe.test_data is not None:  # cross-corpus: the test corpus's clips (ids as the run gave them)
        paths.update({c.id: c.path for c in load_dataset(recipe, recipe.test_data).clips()})
    rows = list(csv.DictReader(open(args.run / "predictions.csv", newline="", encoding="utf-8")))
    folds: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        folds[int(r["fold"])].append(r)
    out = args.out or Path(tempfile.mkdtemp(prefix="enrolled-"))
    table, same, total, worst = [], 0, 0, 0.0
    for fold, items in sorted(folds.items()):
        t0 = time.perf_counter()
        bundle_dir = export(args.run, out / f"fold{fold}", str(fold))
        bundle = fusionkit.load(bundle_dir)
        true, pred = [], []
        by_speaker: dict[str, list[dict]] = defaultdict(list)
        for r in items:
            by_speaker[r["speaker"]].append(r)
        for _speaker, mine in sorted(by_speaker.items()):
            files = [paths[r["clip_id"]] for r in mine]
            norm = bundle.enrol(files)
            for r, f in zip(mine, files):
                got = bundle.predict(f, enrol=norm)
                true.append(r["true"])
                pred.append(got["label"])
                same += got["label"] == r["predicted"]
                total += 1
                worst = max(worst, max(abs(got["probabilities"][c] - float(r[f"p_{c}"])) for c in bundle.classes))
        run_uar = uar([r["true"] for r in items], [r["predicted"] for r in items])
        table.append({"fold": fold, "speakers": sorted(by_speaker), "clips": len(items), "run_uar": round(run_uar, 4),
                      "bundle_uar": round(uar(true, pred), 4), "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(table[-1]), flush=True)
    print(json.dumps({"run_uar_mean": round(float(np.mean([t["run_uar"] for t in table])), 4),
                      "bundle_uar_mean": round(float(np.mean([t["bundle_uar"] for t in table])), 4),
                      "same_label": f"{same}/{total}", "max_probability_difference": round(worst, 7)}))


if __name__ == "__main__":
    main()
