"""Nuisance attribute projection (NAP) of speaker directions, chosen inside the training folds.

For each outer speaker fold of a recipe with one pooled encoder: z-score on the training clips, find the directions
along which the training speakers' mean vectors differ (SVD of the centred speaker means), remove the top ``k`` of
them from every vector, fit the ``linear`` head's logistic regression. ``k`` is chosen per outer fold by 4-fold
speaker cross-validation inside the training speakers (highest mean UAR, ties to the smaller ``k``); no test speaker
informs the choice and no statistics of the test speakers are used. Prints per-fold UAR for every ``k`` and the
nested figure.

    FUSIONKIT_CACHE_DIR=... python benchmarks/speaker_projection.py benchmarks/ravdess/whisper-base.yaml \
        --set data.root=../shared/data/ravdess --set 'encoders.0.options.layers=[3, 4, 5]'
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from fusionkit.pipeline.data import normalize
from fusionkit.pipeline.folds import fold_inputs, plan_folds
from fusionkit.pipeline.run import prepare
from fusionkit.recipe import load_recipe
from fusionkit.sdk.heads import Standardizer, macro_recall

KS = (0, 4, 8, 12, 16, 19)


def speaker_directions(z: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """Rows: unit directions of the training speakers' mean vectors, by decreasing spread."""
    means = np.stack([z[speakers == s].mean(axis=0) for s in np.unique(speakers)])
    return np.linalg.svd(means - means.mean(axis=0), full_matrices=False)[2]


def fit_predict(x_tr, y_tr, s_tr, x_te, k: int) -> np.ndarray:
    scaler = Standardizer().fit(x_tr)  # the linear head's z-scores
    z_tr, z_te = scaler.transform(x_tr), scaler.transform(x_te)
    if k:
        u = speaker_directions(z_tr, s_tr)[:k]
        z_tr, z_te = z_tr - z_tr @ u.T @ u, z_te - z_te @ u.T @ u
    model = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(z_tr, y_tr)
    return model.predict_proba(z_te)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()
    recipe = load_recipe(args.recipe, args.sets)
    prep = normalize(recipe, prepare(recipe))
    y = np.array([prep.classes.index(c.label) for c in prep.clips])
    spk = np.array([c.speaker for c in prep.clips])
    (x,) = fold_inputs(prep, np.arange(len(y))).values()
    x = np.asarray(x, dtype=np.float64).reshape(len(y), -1)
    started = time.process_time()
    rows = []
    for i, (_, fold) in enumerate(plan_folds(recipe, prep)):
        tr, te = fold.train, fold.test
        test = {k: macro_recall(y[te], fit_predict(x[tr], y[tr], spk[tr], x[te], k)) for k in KS}
        inner = {k: [] for k in KS}
        for a, b in GroupKFold(4).split(x[tr], y[tr], spk[tr]):
            a, b = tr[a], tr[b]
            for k in KS:
                k_ok = min(k, len(np.unique(spk[a])) - 1)
                inner[k].append(macro_recall(y[b], fit_predict(x[a], y[a], spk[a], x[b], k_ok)))
        chosen = max(KS, key=lambda k: (np.mean(inner[k]), -k))
        rows.append({"fold": i, "test": {k: round(v, 4) for k, v in test.items()}, "chosen_k": chosen,
                     "inner": {k: round(float(np.mean(v)), 4) for k, v in inner.items()},
                     "nested": round(test[chosen], 4)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"mean": {k: round(float(np.mean([r["test"][k] for r in rows])), 4) for k in KS},
                      "nested": round(float(np.mean([r["nested"] for r in rows])), 4),
                      "cpu_s": round(time.process_time() - started, 1)}))


if __name__ == "__main__":
    main()
