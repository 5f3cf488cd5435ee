"""report.html of one run, read from what the run folder already holds (metrics.json, recipe.yaml, the plots)."""

from __future__ import annotations

from pathlib import Path

from fusionkit.report_html.page import png_data_uri, render
from fusionkit.report_html.reading import read_metrics, read_text

RUN = """{% extends "base.html" %}{% from "figure.html" import figure %}
{% block body %}
<h1>{{ m.recipe }}</h1>
<p class="sub">{{ m.get("task", "classification") }} run &middot; {{ m.n_clips }} clips &middot;
{{ m.folds | length }} fold scores &middot; folder {{ folder }}</p>

<h2 id="protocol">Protocol</h2>
<dl class="protocol">
{% for key, value in protocol %}<dt>{{ key }}</dt>
<dd{% if key == "Speaker independence" and not p.speaker_independent %} class="warn"{% endif %}>{{ value }}</dd>
{% endfor %}
</dl>

<h2 id="results">Results</h2>
<table id="headline"><thead><tr><th>metric</th><th>mean</th><th>std</th><th>95% CI</th><th>n</th></tr></thead><tbody>
{% for key, s in m.summary.items() %}
<tr><td>{{ key }}</td><td class="num">{{ s.mean | f3 }}</td><td class="num">{{ s.std | f3 }}</td>
<td class="num">{% if s.n > 1 %}{{ s.ci95[0] | f3 }} to {{ s.ci95[1] | f3 }}{% else %}n/a (one score){% endif %}</td>
<td class="num">{{ s.n }}</td></tr>
{% endfor %}
{% for key in pooled_keys %}{% set boot = m.get(key ~ "_ci95") %}
<tr><td>{{ key }}</td><td class="num">{{ m[key] | f3 }}</td><td></td>
<td class="num">{% if boot %}{{ boot.ci95[0] | f3 }} to {{ boot.ci95[1] | f3 }}{% endif %}</td>
<td class="num">{% if boot %}{{ boot.groups }} speakers{% endif %}</td></tr>
{% endfor %}
</tbody></table>
<p class="sub">Mean, sample std and 95% t-interval over the fold scores (folds &times; seeds)
{%- if m.get("uar_pooled_ci95") %}; uar_pooled's interval comes from resampling whole test speakers
({{ m.uar_pooled_ci95.resamples }} resamples; it covers other test speakers of the same kind, not other training
speakers){% endif %}.</p>
{% if m.get("raw") %}
<h3>Normalised and raw (normalize: none), same folds</h3>
<table><thead><tr><th>metric</th><th>normalised</th><th>raw</th></tr></thead><tbody>
{% for key in fold_keys if key in m.raw %}<tr><td>{{ key }}</td><td class="num">{{ m.summary[key].mean | f3 }}</td>
<td class="num">{{ m.raw[key] | f3 }}</td></tr>{% endfor %}
</tbody></table>
{% endif %}
{% if m.get("seeds") %}
<h2 id="seeds">Per seed</h2>
<table class="sortable" id="seeds-table"><thead><tr><th>seed</th>{% for k in fold_keys %}<th>{{ k }}</th>{% endfor %}
</tr></thead><tbody>
{% for seed, row in m.seeds.per_seed.items() %}<tr><td>{{ seed }}</td>{% for k in fold_keys %}
<td class="num" data-value="{{ row[k] }}">{{ row[k] | f3 }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
<tfoot><tr><th>mean &plusmn; std</th>{% for k in fold_keys %}<th>{{ m.seeds.over_seeds[k].mean | f3 }} &plusmn;
{{ m.seeds.over_seeds[k].std | f3 }}</th>{% endfor %}</tr></tfoot></table>
{% endif %}
{% if classes %}
<h2 id="per-class">Per class (pooled over folds)</h2>
<table class="sortable" id="class-table"><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>
<th>support</th></tr></thead><tbody>
{% for c in classes %}<tr><td>{{ c.name }}</td>
<td class="num" data-value="{{ c.precision }}">{{ c.precision | f3 }}</td>
<td class="num" data-value="{{ c.recall }}">{{ c.recall | f3 }}</td>
<td class="num" data-value="{{ c.f1 }}">{{ c.f1 | f3 }}</td>
<td class="num">{{ c.support }}</td></tr>
{% endfor %}</tbody></table>
<h3>Confusion matrix (rows: true, columns: predicted)</h3>
<div class="scroll"><table id="confusion"><thead><tr><th>true \\ predicted</th>
{% for c in classes %}<th>{{ c.name }}</th>{% endfor %}</tr></thead><tbody>
{% for c in classes %}{% set i = loop.index0 %}<tr><th>{{ c.name }}</th>{% for n in confusion[i] %}
<td class="num{% if loop.index0 == i %} diag{% endif %}">{{ n }}</td>
{% endfor %}</tr>
{% endfor %}</tbody></table></div>
{{ figure(images.confusion, "confusion matrix, all folds pooled") }}
{{ figure(images.recall, "per-class recall (bars pooled, dots one fold each)") }}
{% endif %}
{% if images.scatter %}{{ figure(images.scatter, "predicted against true") }}{% endif %}

<h2 id="per-fold">Per fold</h2>
<div class="scroll"><table class="sortable" id="fold-table"><thead><tr><th>seed</th><th>fold</th><th>test speakers</th>
<th>test clips</th>{% for k in fold_keys %}<th>{{ k }}</th>{% endfor %}</tr></thead><tbody>
{% for f in m.folds %}<tr><td>{{ f.seed }}</td><td>{{ f.fold }}</td><td>{{ f.test_speakers | join(", ") }}</td>
<td class="num">{{ f.test_size }}</td>
{% for k in fold_keys %}<td class="num" data-value="{{ f[k] }}">{{ f[k] | f3 }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table></div>
{{ figure(images.folds, "per-fold scores with the mean and its 95% interval") }}
{% if m.get("per_speaker") %}
<h2 id="per-speaker">Per test speaker</h2>
<p class="sub">All of each speaker's test predictions (every seed); UAR over the classes that speaker has. Weakest
first; click a header to sort.</p>
<div class="scroll"><table class="sortable" id="speaker-table"><thead><tr><th>speaker</th><th>test clips</th>
<th>UAR</th><th>WA</th></tr></thead><tbody>
{% for r in m.per_speaker %}<tr><td>{{ r.speaker }}</td><td class="num">{{ r.clips }}</td>
<td class="num" data-value="{{ r.uar }}">{{ r.uar | f3 }}</td>
<td class="num" data-value="{{ r.wa }}">{{ r.wa | f3 }}</td></tr>{% endfor %}</tbody></table></div>
{% endif %}

<h2 id="skipped">Skipped clips ({{ m.skipped | length }})</h2>
{% if m.skipped %}<table class="sortable" id="skipped-table"><thead><tr><th>clip</th><th>reason</th></tr></thead><tbody>
{% for s in m.skipped %}<tr><td>{{ s.clip }}</td><td>{{ s.reason }}</td></tr>
{% endfor %}</tbody></table>{% else %}<p>None.</p>{% endif %}
{% if m.get("flagged") %}
<h2 id="flagged">Flagged clips ({{ m.flagged | length }})</h2>
<p class="sub">Used as they are, but their audio looks silent or very short.</p>
<table class="sortable" id="flagged-table"><thead><tr><th>clip</th><th>warning</th></tr></thead><tbody>
{% for f in m.flagged %}<tr><td>{{ f.clip }}</td><td>{{ f.warning }}</td></tr>
{% endfor %}</tbody></table>{% endif %}

<h2 id="embeddings">Embeddings and time</h2>
<p>{{ m.embeddings.computed }} computed, {{ m.embeddings.cached }} from the cache
{% if m.embeddings.get("cache_dir") %}({{ m.embeddings.cache_dir }}){% endif %}.
{% if m.get("timing") %}Encoding {{ m.timing.encode_seconds }} s, fitting {{ m.timing.fit_seconds }} s,
total {{ m.timing.total_seconds }} s.{% endif %}</p>

<h2 id="definitions">Metric definitions</h2>
<dl class="protocol">{% for k, v in p.get("metrics", {}).items() %}<dt>{{ k }}</dt><dd>{{ v }}</dd>{% endfor %}</dl>

<h2 id="recipe">Resolved recipe</h2>
<pre>{{ recipe_text }}</pre>
{% endblock %}
"""


def _plugin(spec: dict) -> str:
    opts = ", ".join(f"{k}={v}" for k, v in (spec.get("options") or {}).items())
    return (spec.get("name") or spec.get("plugin", "?")) + (f" ({opts})" if opts else "")


def protocol_rows(m: dict) -> list[tuple[str, str]]:
    """The protocol as (label, text) rows: corpus, classes, split, speaker independence, scoring, seeds, plugins."""
    p = m["protocol"]
    corpus = p["corpus"] + (f" (train) -> {p['test_corpus']} (test)" if p.get("test_corpus") else "")
    rows = [("Corpus", f"{corpus}, {m['n_clips']} clips, {p.get('n_speakers', '?')} speakers")]
    if m.get("task") == "regression":
        rows.append(("Targets", ", ".join(m.get("targets") or [])))
    else:
        counts, test_counts = p.get("class_counts") or {}, p.get("test_class_counts")
        rows.append(("Training classes" if test_counts else "Classes",  # cross-corpus: the training corpus's
                     ", ".join(f"{c} ({counts[c]})" if c in counts else c for c in m["classes"])))
        if test_counts:
            rows.append(("Test classes", ", ".join(f"{c} ({n})" for c, n in test_counts.items())))
        if p.get("label_map"):
            rows.append(("Label mapping", ", ".join(f"{k} -> {v}" for k, v in p["label_map"].items())))
    split = p.get("split_description") or p["split"]["kind"]
    rows.append(("Split", split))
    rows.append(("Speaker independence", "speaker-independent: no speaker on both sides of any fold"
                 if p["speaker_independent"] else
                 f"NOT speaker-independent: {p.get('speaker_overlap', '?')} speaker(s) on both sides"))
    rows.append(("Seeds", ", ".join(map(str, p["seeds"]))))
    if p.get("normalize", "none") != "none":
        rows.append(("Normalisation", f"features z-scored per {p['normalize']}"))
    rows.append(("Encoders", "; ".join(_plugin(e) for e in p["encoders"])))
    rows.append(("Fusion head", _plugin(p["fusion"])))
    rows.append(("Scoring", p["scoring"]))
    return rows


def fold_keys(m: dict) -> list[str]:
    """The per-fold scores shown as columns: UAR, WA, F1s; for regression the CCCs."""
    if m.get("task") == "regression":
        return [k for k in m["summary"] if k == "ccc" or k.startswith("ccc_")]
    return [k for k in ("uar", "wa", "macro_f1", "weighted_f1") if k in m["summary"]]


def run_html(run_dir: Path, metrics: dict | None = None) -> str:
    """The report page of the run folder ``run_dir`` (``metrics``: metrics.json's content, when not yet written)."""
    m = metrics if metrics is not None else read_metrics(run_dir)
    m = {"skipped": [], "embeddings": {"computed": 0, "cached": 0}, **m}
    per_class = (m.get("pooled") or {}).get("per_class") if m.get("task") != "regression" else None
    classes = [{"name": c, **{k: per_class[k][i] for k in ("precision", "recall", "f1", "support")}}
               for i, c in enumerate(m.get("classes") or [])] if per_class else []
    images = {name: png_data_uri(run_dir / f"{name}.png") for name in ("confusion", "recall", "folds", "scatter")}
    return render({"run.html": RUN}, "run.html", title=f"{m['recipe']}: fusionkit run", m=m, p=m["protocol"],
                  folder=run_dir.name, protocol=protocol_rows(m), fold_keys=fold_keys(m),
                  pooled_keys=[k for k in m if k.endswith("_pooled")], classes=classes,
                  confusion=(m.get("pooled") or {}).get("confusion") or [], images=images,
                  recipe_text=read_text(run_dir / "recipe.yaml") or "(recipe.yaml is missing)")
