"""One page comparing several runs: the same metrics side by side, the differences of their resolved recipes."""

from __future__ import annotations

from pathlib import Path

import yaml

from fusionkit.flat import flatten
from fusionkit.metrics import paired_uar_difference, seed_order
from fusionkit.report_html.page import fmt, render
from fusionkit.report_html.reading import ReportError, read_metrics, read_predictions, read_text
from fusionkit.report_html.run_page import fold_keys

COMPARE = """{% extends "base.html" %}
{% block body %}
<h1>Comparison of {{ runs | length }} runs</h1>
<p class="sub">{% for r in runs %}<b>{{ r.label }}</b> = {{ r.folder }}{% if not loop.last %} &middot; {% endif %}
{% endfor %}</p>

<h2 id="metrics">Metrics</h2>
<p class="sub">Mean &plusmn; std over fold scores; the best figure of each row is highlighted (all of them where they
read the same).</p>
<table class="sortable" id="metrics-table"><thead><tr><th>metric</th>{% for r in runs %}<th>{{ r.label }}</th>
{% endfor %}</tr></thead><tbody>
{% for row in metric_rows %}<tr><td>{{ row.name }}</td>{% for cell in row.cells %}
<td class="num{% if cell.best %} diff{% endif %}" data-value="{{ cell.mean if cell.mean is not none else '' }}">
{{ cell.mean | f3 }}{% if cell.std is not none %} &plusmn; {{ cell.std | f3 }}{% endif %}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>

{% if paired %}
<h2 id="paired">Against {{ runs[0].label }} on the same test clips</h2>
<p class="sub">Pooled UAR minus {{ runs[0].label }}'s on the test clips both runs labelled, on the seeds both ran
(a run with more seeds is compared on the shared ones only), with a 95%
interval from 2000 bootstrap resamples of whole test speakers: an interval that holds 0 means these predictions cannot
tell the two runs apart.</p>
<table id="paired-table"><thead><tr><th>run</th><th>UAR difference</th><th>95% interval</th><th>speakers</th>
<th>seeds compared</th></tr></thead><tbody>
{% for p in paired %}<tr><td>{{ p.label }}</td>{% if p.d %}<td class="num">{{ "%+.3f" | format(p.d.diff) }}</td>
<td class="num">[{{ "%+.3f" | format(p.d.ci95[0]) }}, {{ "%+.3f" | format(p.d.ci95[1]) }}]</td>
<td class="num">{{ p.d.groups }}</td><td>{{ p.d.seeds | join(", ") }}</td>{% else %}<td colspan="4">{{ p.why }}</td>
{% endif %}</tr>
{% endfor %}</tbody></table>
{% endif %}

<h2 id="protocol">Protocol</h2>
<table id="protocol-table"><thead><tr><th>field</th>{% for r in runs %}<th>{{ r.label }}</th>{% endfor %}</tr>
</thead><tbody>
{% for row in protocol_rows %}<tr{% if row.differs %} class="diff"{% endif %}><td>{{ row.name }}</td>
{% for v in row["values"] %}<td>{{ v }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>

<h2 id="recipes">Resolved recipes: {{ differing | length }} field(s) differ</h2>
<table id="recipe-diff"><thead><tr><th>field</th>{% for r in runs %}<th>{{ r.label }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in differing %}<tr class="diff"><td>{{ row.name }}</td>{% for v in row["values"] %}<td>{{ v }}</td>
{% endfor %}</tr>
{% else %}<tr><td colspan="{{ runs | length + 1 }}">The resolved recipes are the same.</td></tr>{% endfor %}
</tbody></table>
<details><summary>The {{ same | length }} field(s) all runs share</summary>
<table id="recipe-same"><tbody>{% for row in same %}<tr><td>{{ row.name }}</td><td>{{ row["values"][0] }}</td></tr>
{% endfor %}</tbody></table></details>
{% endblock %}
"""

MISSING = "(not set)"
LOWER_IS_BETTER = ("rmse", "mae")


def _recipe(run_dir: Path) -> dict:
    text = read_text(run_dir / "recipe.yaml")
    if text is None:
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ReportError(f"{run_dir / 'recipe.yaml'}: unreadable YAML ({exc})") from exc
    return data if isinstance(data, dict) else {}


def _metric_rows(metrics: list[dict]) -> list[dict]:
    names: list[str] = []
    for m in metrics:
        for k in [*fold_keys(m), *m["summary"], *(k for k in m if k.endswith("_pooled"))]:
            if k not in names:  # fold_keys are summary keys too: each metric one row
                names.append(k)
    rows = []
    for name in names:
        cells = []
        for m in metrics:
            s = m["summary"].get(name)
            mean = s["mean"] if s else m.get(name) if name.endswith("_pooled") else None
            cells.append({"mean": mean, "std": s["std"] if s else None, "best": False})
        known = [c["mean"] for c in cells if c["mean"] is not None and c["mean"] == c["mean"]]  # not NaN
        if len(known) > 1:
            target = fmt((min if any(name.startswith(p) for p in LOWER_IS_BETTER) else max)(known))
            for c in cells:  # at the precision shown: figures that read the same are tied
                c["best"] = fmt(c["mean"]) == target  # None and NaN read "\u2013", never the target
        rows.append({"name": name, "cells": cells})
    for c_name in sorted({c for m in metrics for c in (m.get("classes") or [])}):
        cells = []
        for m in metrics:
            classes = m.get("classes") or []
            pc = (m.get("pooled") or {}).get("per_class")
            value = pc["recall"][classes.index(c_name)] if pc and c_name in classes else None
            cells.append({"mean": value, "std": None, "best": False})
        rows.append({"name": f"recall {c_name}", "cells": cells})
    return rows


def _protocol_rows(metrics: list[dict]) -> list[dict]:
    fields = {
        "corpus": lambda m: m["protocol"].get("corpus"),
        "test corpus": lambda m: m["protocol"].get("test_corpus") or "",
        "clips": lambda m: m["n_clips"],
        "classes": lambda m: ", ".join(m.get("classes") or m.get("targets") or []),
        "split": lambda m: m["protocol"].get("split_description") or m["protocol"]["split"]["kind"],
        "speaker-independent": lambda m: "yes" if m["protocol"].get("speaker_independent") else "NO",
        "seeds": lambda m: ", ".join(map(str, m["protocol"].get("seeds") or [])),
        "fold scores": lambda m: len(m["folds"]),
        "skipped clips": lambda m: len(m["skipped"]),
    }
    rows = []
    for name, get in fields.items():
        values = [str(get(m)) for m in metrics]
        rows.append({"name": name, "values": values, "differs": len(set(values)) > 1})
    return rows


def recipe_differences(recipes: list[dict]) -> tuple[list[dict], list[dict]]:
    """(fields whose values differ between the recipes, fields they share), each a row of values per recipe."""
    flats = [flatten(r) for r in recipes]
    keys: list[str] = []
    for f in flats:
        keys += [k for k in f if k not in keys]
    differing, same = [], []
    for key in keys:
        values = [str(f[key]) if key in f else MISSING for f in flats]
        (differing if len(set(values)) > 1 else same).append({"name": key, "values": values})
    return differing, same


def compare_html(run_dirs: list[Path]) -> str:
    """The comparison page of the run folders ``run_dirs`` (two or more)."""
    metrics = [read_metrics(d) for d in run_dirs]
    differing, same = recipe_differences([_recipe(d) for d in run_dirs])
    runs = [{"label": f"R{i + 1}", "folder": f"{d.name} ({m['recipe']})"}
            for i, (d, m) in enumerate(zip(run_dirs, metrics))]
    return render({"compare.html": COMPARE}, "compare.html", title=f"fusionkit: {len(runs)} runs compared",
                  runs=runs, metric_rows=_metric_rows(metrics), protocol_rows=_protocol_rows(metrics),
                  differing=differing, same=same, paired=_paired(run_dirs, metrics, runs))


def _paired(run_dirs: list[Path], metrics: list[dict], runs: list[dict]) -> list[dict]:
    """Each later run against the first on the test clips both labelled, on the seeds both ran (classification runs
    only); ``why`` says what kept a pair from being compared."""
    if any(m.get("task") == "regression" for m in metrics):
        return []
    first = read_predictions(run_dirs[0] / "predictions.csv")
    if not first:
        return []
    out = []
    for d, r in zip(run_dirs[1:], runs[1:]):
        other = read_predictions(d / "predictions.csv")
        seeds = [sorted({s for _, s in p}, key=seed_order) for p in (first, other)]
        why = ("no predictions.csv" if not other else
               f"no seed in common ({runs[0]['label']}: {', '.join(seeds[0])}; {r['label']}: {', '.join(seeds[1])})"
               if not set(seeds[0]) & set(seeds[1]) else "not the same test clips")
        out.append({"label": r["label"], "d": paired_uar_difference(other, first), "why": why})
    return out
