"""The page frame shared by every HTML report: jinja2 environment, CSS, the table-sorting script, embedded images.

Every page is one self-contained file: no network access is needed to open it. Autoescaping is on, so every
string read from a recipe, a clip name or a results file is escaped.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

import jinja2

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;margin:0;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:30px 0 8px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6474;margin:0 0 14px}
table{border-collapse:collapse;margin:8px 0 12px;font-size:13px}
th,td{border:1px solid #dde1e7;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none;white-space:nowrap}
table.sortable th::after{content:" \\2195";color:#9aa3b1}
table.sortable th[aria-sort=ascending]::after{content:" \\2191";color:#1d2330}
table.sortable th[aria-sort=descending]::after{content:" \\2193";color:#1d2330}
tr.best td{background:#e7f5e9;font-weight:600}tr.failed td{color:#a33}
tr.diff td{background:#fff4d6}td.diag{background:#e3eefb;font-weight:600}td.diff{background:#ffe8a3;font-weight:600}
dl.protocol{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;margin:8px 0}
dl.protocol dt{font-weight:600;color:#3c4657}dl.protocol dd{margin:0}
.warn{color:#a33;font-weight:600}
figure{display:inline-block;margin:6px 12px 6px 0;vertical-align:top}
figure img{max-width:min(100%,560px);border:1px solid #dde1e7}figcaption{font-size:12px;color:#5b6474}
pre{background:#f3f5f8;border:1px solid #dde1e7;padding:10px;overflow:auto;font-size:12px}
.scroll{overflow-x:auto}#cells-table td,#fold-table td{white-space:nowrap}
"""

SORT_JS = """
(function () {
  function value(row, col) {
    var cell = row.cells[col];
    var v = cell ? cell.getAttribute("data-value") : "";
    return v === null ? cell.textContent.trim() : v;
  }
  function compare(x, y) {
    var nx = parseFloat(x), ny = parseFloat(y);
    if (!isNaN(nx) && !isNaN(ny) && isFinite(x) && isFinite(y)) { return nx - ny; }
    return x.localeCompare(y, undefined, {numeric: true});
  }
  function sortBy(table, th, col) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) { var r = compare(value(a, col), value(b, col)); return ascending ? r : -r; });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, col) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, th, col); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sortBy(table, th, col); } });
    });
  });
})();
"""

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{{ title }}</title>
<style>{{ css | safe }}</style>
</head><body><main>
{% block body %}{% endblock %}
<p class="sub">Written by fusionkit {{ version }}.</p>
</main>
<script>{{ script | safe }}</script>
</body></html>
"""

FIGURE = """{% macro figure(img, caption) -%}
{% if img %}<figure><img src="{{ img }}" alt="{{ caption }}"><figcaption>{{ caption }}</figcaption></figure>
{%- else %}<p class="sub">({{ caption }}: no image in the folder)</p>{% endif %}
{%- endmacro %}"""


def fmt(value, digits: int = 3) -> str:
    """A number with ``digits`` decimals; empty, missing or not-a-number values as an en dash."""
    if value is None or value == "":
        return "\u2013"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "\u2013"
    return f"{number:.{digits}f}"


def png_data_uri(path: Path) -> str | None:
    """The PNG at ``path`` as a ``data:`` URI (so the page carries it), or None when there is none."""
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def environment(templates: dict[str, str]) -> jinja2.Environment:
    """A jinja2 environment with autoescaping, strict undefined names, the base frame and ``templates``."""
    env = jinja2.Environment(loader=jinja2.DictLoader({"base.html": BASE, "figure.html": FIGURE, **templates}),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters["f3"] = fmt
    return env


def render(templates: dict[str, str], template: str, **context) -> str:
    """Render ``template`` with the frame's CSS, script and version filled in."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("fusionkit")
    except PackageNotFoundError:
        installed = "(not installed)"
    return environment(templates).get_template(template).render(css=CSS, script=SORT_JS, version=installed,
                                                            **context)
