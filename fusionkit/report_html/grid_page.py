"""report.html of a benchmark grid: every cell in a sortable table, the UAR heatmap, the best cell per dataset."""

from __future__ import annotations

from pathlib import Path

from fusionkit.report_html.page import png_data_uri, render
from fusionkit.report_html.reading import read_grid_rows, read_json, read_text

GRID = """{% extends "base.html" %}{% from "figure.html" import figure %}
{% block body %}
<h1>{{ name }}</h1>
<p class="sub">benchmark grid &middot; {{ rows | length }} cells, {{ done }} done, {{ failed }} failed
{% if source %}&middot; grid {{ source }}{% endif %}{% if overrides %} &middot; overrides {{ overrides | join(" ") }}
{% endif %}</p>

<h2 id="best">Best cell per dataset (by UAR)</h2>
<table id="best-table"><thead><tr><th>dataset</th><th>encoders</th><th>head</th><th>seeds</th><th>UAR</th>
<th>&plusmn; std</th><th>WA</th><th>macro F1</th></tr></thead><tbody>
{% for r in best %}<tr class="best"><td>{{ r.dataset }}</td><td>{{ r.encoders }}</td><td>{{ r.head }}</td>
<td>{{ r.seeds }}</td><td class="num">{{ r.uar | f3 }}</td><td class="num">{{ r.uar_std | f3 }}</td>
<td class="num">{{ r.wa | f3 }}</td><td class="num">{{ r.macro_f1 | f3 }}</td></tr>
{% else %}<tr><td colspan="8">No finished cell.</td></tr>{% endfor %}
</tbody></table>

{{ figure(heatmap, "UAR per encoder set and fusion head (best boxed)") }}

<h2 id="cells">All cells</h2>
<p class="sub">Click a column header to sort. UAR, WA, F1: mean over the protocol's folds and seeds; &plusmn; std over
them. vs best: pooled UAR minus the best cell's on the same test clips, with a 95% interval from resampling whole
test speakers (an interval that holds 0: not shown to be worse).</p>
<div class="scroll"><table class="sortable" id="cells-table"><thead><tr><th>dataset</th><th>encoders</th><th>head</th>
<th>seeds</th><th>status</th><th>folds</th><th>UAR</th><th>&plusmn; std</th><th>vs best [95% CI]</th><th>WA</th>
<th>macro F1</th>
<th>weighted F1</th><th>clips</th><th>encode s</th><th>fit s</th><th>peak MB</th><th>report</th></tr></thead><tbody>
{% for r in rows %}<tr class="{{ 'best' if r.best else ('failed' if r.status != 'done' else '') }}">
<td>{{ r.dataset }}</td><td>{{ r.encoders }}</td><td>{{ r.head }}</td><td>{{ r.seeds }}</td>
<td>{% if r.status == "done" %}done{% else %}{{ r.status }}: {{ r.error }}{% endif %}</td>
<td class="num">{{ r.folds }}</td>
{% for k in ("uar", "uar_std") %}
<td class="num" data-value="{{ r[k] if r[k] is not none else '' }}">{{ r[k] | f3 }}</td>{% endfor %}
<td class="num" data-value="{{ r.vs_best if r.vs_best is not none else '' }}">{% if r.vs_best is not none %}
{{ "%+.3f" | format(r.vs_best) }} [{{ "%+.3f" | format(r.vs_best_low) }}, {{ "%+.3f" | format(r.vs_best_high) }}]
{% endif %}</td>
{% for k in ("wa", "macro_f1", "weighted_f1") %}
<td class="num" data-value="{{ r[k] if r[k] is not none else '' }}">{{ r[k] | f3 }}</td>{% endfor %}
<td class="num">{{ r.n_clips }}</td><td class="num">{{ r.encode_s | f3(1) }}</td>
<td class="num">{{ r.fit_s | f3(1) }}</td>
<td class="num">{{ r.peak_mb | f3(0) }}</td>
<td>{% if r.link %}<a href="{{ r.link }}">cell</a>{% endif %}</td></tr>
{% endfor %}</tbody></table></div>
{% endblock %}
"""


def _best(rows: list[dict]) -> list[dict]:
    best: dict[str, dict] = {}
    for r in rows:
        if r["status"] == "done" and r["uar"] is not None and (
                r["dataset"] not in best or r["uar"] > best[r["dataset"]]["uar"]):
            best[r["dataset"]] = r
    return [best[d] for d in sorted(best)]


def grid_html(grid_dir: Path) -> str:
    """The report page of the grid folder ``grid_dir`` (results.csv, uar_heatmap.png, grid.json when there)."""
    rows = read_grid_rows(grid_dir)
    meta = read_json(grid_dir / "grid.json") if (grid_dir / "grid.json").is_file() else {}
    best = _best(rows)
    for r in rows:
        r["best"] = any(r is b for b in best)
        cell_report = grid_dir / "cells" / str(r["cell"]) / "report.html"
        r["link"] = f"cells/{r['cell']}/report.html" if cell_report.is_file() else None
    rows.sort(key=lambda r: (r["dataset"], -(r["uar"] if r["status"] == "done" and r["uar"] is not None else -1)))
    done = sum(r["status"] == "done" for r in rows)
    return render({"grid.html": GRID}, "grid.html", title=f"{meta.get('name') or grid_dir.name}: fusionkit grid",
                  name=meta.get("name") or grid_dir.name, source=meta.get("grid"), overrides=meta.get("overrides"),
                  rows=rows, best=best, done=done, failed=len(rows) - done,
                  heatmap=png_data_uri(grid_dir / "uar_heatmap.png"),
                  results_md=read_text(grid_dir / "results.md"))
